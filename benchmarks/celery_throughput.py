"""Partitions per minute of `embed_scenes_celery` with 1 and with 2 Celery workers (each on both queues).

Starts its own PostgreSQL (instance: deploy/dagster.yaml) and redis-server on localhost, delivers the default
scene under N months, and runs all N partitions at once. Workloads:

- `tiny`: the tests' run config (networks of a few hundred weights): measures Dagster/Celery overhead per step;
- `train` (default): the default VAE (300 steps, 10 refinement steps per cell, warm start off so every partition
  trains its own model) on 160-px chips: steps long enough that a second worker has work to take.

The `gpu` pool (training and encoding steps) gets one slot per worker: each worker stands for a GPU host.

Each worker runs one task at a time with one torch thread, so N workers can use N cores:

    .venv/bin/python benchmarks/celery_throughput.py --partitions 4 --workers 1 2 --workload train
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import dagster as dg

from geoembed_assets_tests.ops import servers
from geoembed_assets_tests.ops.celery_runs import REPO, deliver_months, prepare_instance, run_partitions, tiny_celery_run_config
from geoembed_assets_tests.ops.conftest import tiny_run_config


CELL_PX = 160  # `train` workload: chips of 160 x 160 px


def run_config(workload: str) -> dict:
    config = tiny_run_config()
    if workload == "train":
        ops = dict(config["ops"])
        ops["raw_tiles"] = {"config": {"cell_size_px": CELL_PX}}
        ops["geohash_chips"] = {"config": {"cell_size_px": CELL_PX, "min_coverage": 0.9}}
        ops["vae_checkpoints"] = {"config": {"warm_start": False}}
        ops["embeddings"] = {"config": {}}
        ops["complexity_scores"] = {"config": {}}
        config = {**config, "ops": ops}
    return config


def measure(n_workers: int, n_partitions: int, pg: servers.Postgres, redis: str, root: Path, workload: str) -> float:
    home, data_dir = root / f"home{n_workers}", root / f"data{n_workers}"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {**pg.env(), "DAGSTER_HOME": str(home), "GEOEMBED_DATA_DIR": str(data_dir),
           "DAGSTER_CELERY_BROKER_URL": f"{redis}/0", "DAGSTER_CELERY_BACKEND_URL": f"{redis}/1"}  # fmt: skip
    os.environ.update(env)
    keys = deliver_months(data_dir / "landing", list(range(1, n_partitions + 1)))
    with dg.DagsterInstance.get() as instance:
        prepare_instance(instance, gpu_slots=n_workers)  # one `gpu` pool slot per worker (each stands for a GPU host)
    config = REPO / "deploy" / "celery.yaml"
    logs = [root / f"w{n_workers}-{i}.log" for i in range(n_workers)]
    workers = [servers.celery_worker(f"w{i}", ["dagster", "gpu"], config, env, log, REPO) for i, log in enumerate(logs)]
    try:
        servers.wait_until(lambda: all(servers.celery_worker_ready(w, log) for w, log in zip(workers, logs)), 180, "workers")
        codes, seconds = run_partitions(keys, tiny_celery_run_config(run_config(workload), root / f"run{n_workers}.yaml"), env, root)
    finally:
        for w in workers:
            servers.stop(w)
    assert codes == [0] * n_partitions, codes
    rate = 60 * n_partitions / seconds
    print(f"{workload}: {n_workers} worker(s): {n_partitions} partitions in {seconds:.0f} s = {rate:.2f} partitions/min", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--keep", action="store_true", help="keep the logs and data folder (printed)")
    parser.add_argument("--workload", choices=["tiny", "train"], default="train")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="geoembed-celery-bench-"))
    rates = {}
    with servers.postgres_server() as pg, servers.redis_server(root) as redis:
        for n in args.workers:
            rates[n] = measure(n, args.partitions, pg, redis, root, args.workload)
    base = rates[args.workers[0]]
    for n, rate in rates.items():
        print(f"{args.workload}: {n} worker(s) / {args.workers[0]}: {rate / base:.2f}x partitions per minute")
    if args.keep:
        print(f"logs and data: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
