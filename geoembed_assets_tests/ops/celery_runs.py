"""Launch partitions of `embed_scenes_celery` as separate `dagster job execute` processes (as a deployment would)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR

REPO = Path(__file__).resolve().parents[2]


def deliver_months(landing: Path, months: list[int]) -> list[str]:
    """The default scene delivered once per month of 2016 (same pixels, other dates): one partition each."""
    landing.mkdir(parents=True, exist_ok=True)
    keys = []
    for m in months:
        meta = json.loads(DEFAULT_DESCRIPTOR.read_text())
        meta["datetime"] = f"2016-{m:02d}-12T00:00:00Z"
        (landing / f"s2-18SVG-2016{m:02d}.scene.json").write_text(json.dumps(meta))
        keys.append(f"2016-{m:02d}-01|dqd")
    return keys


def prepare_instance(instance, gpu_slots: int = 1) -> None:
    """Register the region and create the `gpu` pool's limit once, before runs start: concurrent first runs on a
    fresh PostgreSQL instance otherwise race to insert the pool's default limit (a unique-key violation).
    `gpu_slots`: how many training/encoding steps may run at once (one per GPU worker of the deployment)."""
    from geoembed_assets.partitions import partition_key, register_keys

    register_keys(instance, [partition_key("dqd", f"2016-{m:02d}-01") for m in range(1, 13)])
    instance.event_log_storage.set_concurrency_slots("gpu", gpu_slots)


def partition_tags(key: str) -> dict[str, str]:
    """Run tags of a region x month partition (the dimension tags make the key a MultiPartitionKey again)."""
    month, region = key.split("|")
    return {"dagster/partition": key, "dagster/partition/month": month, "dagster/partition/region": region}


def run_partitions(keys: list[str], run_config: Path, env: dict[str, str], log_dir: Path) -> tuple[list[int], float]:
    """Start one run per partition at once; returns their exit codes and the wall time until all ended."""
    dagster = Path(sys.executable).with_name("dagster")
    t0 = time.monotonic()
    processes = []
    for i, key in enumerate(keys):
        args = [str(dagster), "job", "execute", "-m", "geoembed_assets.deploy_definitions", "-j", "embed_scenes_celery",
                "-c", str(REPO / "deploy" / "celery.yaml"), "-c", str(run_config),
                "--tags", json.dumps(partition_tags(key))]  # fmt: skip
        processes.append(subprocess.Popen(args, cwd=REPO, env={**os.environ, **env}, stdout=open(log_dir / f"run{i}.log", "wb"), stderr=subprocess.STDOUT))
    codes = [p.wait(timeout=900) for p in processes]
    return codes, time.monotonic() - t0


def tiny_celery_run_config(tiny: dict, dest: Path) -> Path:
    import yaml

    config = {**tiny, "resources": {"torch_device": {"config": {"prefer": "cpu", "cpu_threads": 1}},
                                    "thresholds": {"config": {"max_rmse": 0.5, "max_ndvi_mae": 1.0}}}}  # fmt: skip
    dest.write_text(yaml.safe_dump(config))
    return dest


