"""Scale-out on dagster-celery: a local redis-server, two workers (CPU queue, GPU queue), several partitions at once.

The instance is deploy/dagster.yaml on the session's PostgreSQL server, shared by the runs and the workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from geoembed_assets_tests.ops import servers
from geoembed_assets_tests.ops.celery_runs import REPO, deliver_months, prepare_instance, run_partitions, tiny_celery_run_config
from geoembed_assets_tests.ops.conftest import tiny_run_config

GPU_STEPS = {"vae_checkpoints", "embeddings"}
CPU_STEPS = {"raw_tiles", "geohash_chips", "complexity_scores", "landcover_proportions", "landcover_clusters",
             "embedding_size_calibration", "embedding_size_predictions"}


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    servers.require_module("dagster_celery")
    with servers.redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def test_two_workers_run_several_partitions_with_gpu_steps_on_the_gpu_queue(
    redis: str, postgres, postgres_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    keys = deliver_months(data_dir / "landing", [1, 2, 3])
    env = {"GEOEMBED_DATA_DIR": str(data_dir), "DAGSTER_CELERY_BROKER_URL": f"{redis}/0", "DAGSTER_CELERY_BACKEND_URL": f"{redis}/1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with dg.DagsterInstance.get() as instance:
        prepare_instance(instance)
    config = REPO / "deploy" / "celery.yaml"
    logs = {"cpu": tmp_path / "worker-cpu.log", "gpu": tmp_path / "worker-gpu.log"}
    workers = [servers.celery_worker("cpu", ["dagster"], config, env, logs["cpu"], REPO),
               servers.celery_worker("gpu", ["gpu"], config, env, logs["gpu"], REPO)]  # fmt: skip
    try:
        servers.wait_until(lambda: all(servers.celery_worker_ready(w, log) for w, log in zip(workers, logs.values())), 120, "the Celery workers")
        codes, seconds = run_partitions(keys, tiny_celery_run_config(tiny_run_config(), tmp_path / "run.yaml"), env, tmp_path)
    finally:
        for w in workers:
            servers.stop(w)
    print(f"{len(keys)} partitions on 2 Celery workers: {seconds:.0f} s, {60 * len(keys) / seconds:.2f} partitions/min")
    assert codes == [0] * len(keys), [(tmp_path / f"run{i}.log").read_text()[-3000:] for i in range(len(keys))]

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_run_records(dg.RunsFilter(job_name="embed_scenes_celery"))
        assert sorted(r.dagster_run.tags["dagster/partition"] for r in runs) == keys
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        # the runs overlapped: several partitions in flight at once
        assert max(r.start_time for r in runs) < min(r.end_time for r in runs)
        assert instance.get_materialized_partitions(dg.AssetKey("embeddings")) == set(keys)
    # every step ran as a Celery task; the GPU steps only on the worker of the `gpu` queue
    received = {name: log.read_text(errors="replace").count("] received") for name, log in logs.items()}
    assert received == {"cpu": len(CPU_STEPS) * len(keys), "gpu": len(GPU_STEPS) * len(keys)}
    for key in keys:
        month = key.split("|")[0]
        assert len(pd.read_parquet(data_dir / "embeddings" / "dqd" / f"{month}.parquet")) > 0
