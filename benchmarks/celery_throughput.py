"""Partitions per minute of `embed_scenes_celery` with 1 and with 2 Celery workers (each on both queues).

Starts its own PostgreSQL (instance: deploy/dagster.yaml) and redis-server on localhost, delivers the default
scene under N months, and runs all N partitions at once with the tests' tiny run config:

    .venv/bin/python benchmarks/celery_throughput.py --partitions 4 --workers 1 2
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


def measure(n_workers: int, n_partitions: int, pg: servers.Postgres, redis: str, root: Path) -> float:
    home, data_dir = root / f"home{n_workers}", root / f"data{n_workers}"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {**pg.env(), "DAGSTER_HOME": str(home), "GEOEMBED_DATA_DIR": str(data_dir),
           "DAGSTER_CELERY_BROKER_URL": f"{redis}/0", "DAGSTER_CELERY_BACKEND_URL": f"{redis}/1"}  # fmt: skip
    os.environ.update(env)
    keys = deliver_months(data_dir / "landing", list(range(1, n_partitions + 1)))
    with dg.DagsterInstance.get() as instance:
        prepare_instance(instance)
    config = REPO / "deploy" / "celery.yaml"
    logs = [root / f"w{n_workers}-{i}.log" for i in range(n_workers)]
    workers = [servers.celery_worker(f"w{i}", ["dagster", "gpu"], config, env, log, REPO) for i, log in enumerate(logs)]
    try:
        servers.wait_until(lambda: all(servers.celery_worker_ready(w, log) for w, log in zip(workers, logs)), 180, "workers")
        codes, seconds = run_partitions(keys, tiny_celery_run_config(tiny_run_config(), root / "run.yaml"), env, root)
    finally:
        for w in workers:
            servers.stop(w)
    assert codes == [0] * n_partitions, codes
    rate = 60 * n_partitions / seconds
    print(f"{n_workers} worker(s): {n_partitions} partitions in {seconds:.0f} s = {rate:.2f} partitions/min", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="geoembed-celery-bench-"))
    with servers.postgres_server() as pg, servers.redis_server(root) as redis:
        for n in args.workers:
            measure(n, args.partitions, pg, redis, root)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
