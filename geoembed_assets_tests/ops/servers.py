"""Real servers on localhost for the operations tests: PostgreSQL, Redis, `dagster dev`.

Each starts once per test session (see conftest.py). A missing binary or package skips the test on a developer
machine but fails it in CI (CI=true), where `.ci/run` installs everything.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def require(what: str, present: bool) -> None:
    """Skip when `what` is missing, except in CI where a missing server is a failure."""
    if present:
        return
    message = f"{what} is not installed (.ci/run installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_binary(name: str, *extra_dirs: str) -> str:
    found = shutil.which(name) or next((p for d in extra_dirs for p in sorted(glob.glob(os.path.join(d, name)))), None)
    require(f"binary {name!r}", found is not None)
    return str(found)


def require_module(name: str) -> None:
    require(f"Python package {name!r}", importlib.util.find_spec(name) is not None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if condition():
                return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate one process we started (its own process group), then kill it if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait(5)


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    db_name: str
    bindir: str

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db_name,
        }

    def query(self, sql: str) -> str:
        out = subprocess.run(
            [os.path.join(self.bindir, "psql"), "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", self.db_name,
             "-At", "-c", sql],
            check=True, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": self.password},
        )  # fmt: skip
        return out.stdout.strip()


def _as_postgres_user() -> tuple[list[str], int | None, int | None]:
    """initdb refuses to run as root: run the server as the `postgres` system user then."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        require("system user 'postgres' (Debian package postgresql)", False)
    return [], pw.pw_uid, pw.pw_gid


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A throw-away PostgreSQL cluster in a temporary folder on a free localhost port (password auth)."""
    initdb = require_binary("initdb", "/usr/lib/postgresql/*/bin")
    bindir = os.path.dirname(os.path.realpath(initdb))
    if not os.path.exists(os.path.join(bindir, "pg_ctl")):
        bindir = os.path.dirname(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1])
    _, uid, gid = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="geoembed-pg-"))
    data, pwfile = root / "data", root / "pw"
    password, user, port = "geoembed-test", "dagster", free_port()
    pwfile.write_text(password + "\n")
    if uid is not None:
        os.chown(root, uid, gid)
        os.chown(pwfile, uid, gid)

    def demote() -> None:
        if uid is not None:
            os.setgid(gid)
            os.setuid(uid)

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, preexec_fn=demote, cwd=root)

    run(os.path.join(bindir, "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}", "-A", "scram-sha-256",
        "-E", "UTF8", "--no-sync")  # fmt: skip
    server = subprocess.Popen(
        [os.path.join(bindir, "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(root),
         "-c", "fsync=off", "-c", "max_connections=200"],
        preexec_fn=lambda: (os.setpgrp(), demote()), stdout=subprocess.DEVNULL, stderr=open(root / "postgres.log", "wb"),
    )  # fmt: skip
    pg = Postgres("127.0.0.1", port, user, password, "dagster", bindir)
    try:
        isready = [os.path.join(bindir, "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]
        wait_until(lambda: subprocess.run(isready, capture_output=True).returncode == 0, 30, "PostgreSQL to accept connections")
        subprocess.run(
            [os.path.join(bindir, "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, pg.db_name],
            check=True, capture_output=True, env={**os.environ, "PGPASSWORD": password},
        )  # fmt: skip
        yield pg
    finally:
        stop(server)
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class DagsterDev:
    """`dagster dev` (webserver + daemon) serving the project's definitions."""

    url: str
    home: Path
    data_dir: Path
    process: subprocess.Popen

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
        import requests

        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]


@contextlib.contextmanager
def dagster_dev(root: Path, env: dict[str, str], repo: Path) -> Iterator[DagsterDev]:
    """Starts `dagster dev -m geoembed_assets.definitions` on a free port with DAGSTER_HOME and data under `root`."""
    dagster = Path(sys.executable).with_name("dagster")
    require("the dagster CLI", dagster.exists())
    home, data_dir = root / "dagster_home", root / "data"
    home.mkdir(parents=True, exist_ok=True)
    (data_dir / "landing").mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    full_env = {**os.environ, "DAGSTER_HOME": str(home), "GEOEMBED_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", **env}
    log = open(root / "dagster-dev.log", "wb")
    process = subprocess.Popen(
        [str(dagster), "dev", "-m", "geoembed_assets.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=repo, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    server = DagsterDev(f"http://127.0.0.1:{port}", home, data_dir, process)
    try:
        def loaded() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {process.returncode}, see {root / 'dagster-dev.log'}")
            data = server.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }")
            entries = data["workspaceOrError"]["locationEntries"]
            return any(e["name"] == "geoembed_assets.definitions" and e["loadStatus"] == "LOADED" for e in entries)

        wait_until(loaded, 180, "dagster dev to serve the code location", interval=2)
        yield server
    finally:
        stop(process, timeout=30)
        log.close()


@contextlib.contextmanager
def listening(command: list[str], port: int, what: str, log: Path | None = None, scheme: str = "http",
              timeout: float = 30) -> Iterator[str]:
    """Start `command` (its own process group, output to `log` or discarded), wait until it listens on `port`,
    yield `scheme://127.0.0.1:port`, stop it afterwards."""
    out = open(log, "wb") if log else subprocess.DEVNULL
    try:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log:
            out.close()  # the child holds its own copy
    try:
        wait_until(lambda: port_open(port), timeout, what)
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        stop(process)


@contextlib.contextmanager
def http_file_server(folder: Path) -> Iterator[str]:
    """A real HTTP server (python -m http.server, its own process) serving `folder`; yields its base URL."""
    port = free_port()
    with listening([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
                   port, "the HTTP file server") as url:  # fmt: skip
        yield url


@contextlib.contextmanager
def rustac_serve(hrefs: list[Path]) -> Iterator[str]:
    """`rustac serve` (pip package rustac, in-memory backend): a STAC API serving the given collections/items."""
    rustac = Path(sys.executable).with_name("rustac")
    require("the rustac CLI (pip install rustac)", rustac.exists())
    port = free_port()
    with listening([str(rustac), "serve", "--addr", f"127.0.0.1:{port}", *map(str, hrefs)], port, "rustac serve",
                   log=hrefs[0].parent / "rustac.log") as url:  # fmt: skip
        yield url


@contextlib.contextmanager
def redis_server(root: Path) -> Iterator[str]:
    """redis-server (Debian package redis-server) on a free localhost port, no persistence; yields its URL."""
    binary = require_binary("redis-server")
    port = free_port()
    with listening([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                    str(root)], port, "redis-server", log=root / "redis.log", scheme="redis") as url:  # fmt: skip
        yield url


def celery_worker(name: str, queues: list[str], config_yaml: Path, env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """One dagster-celery worker (one task at a time) listening on `queues`."""
    cli = Path(sys.executable).with_name("dagster-celery")
    require("the dagster-celery CLI (pip install -e '.[deploy]')", cli.exists())
    queue_args = ["-q", ",".join(queues)]  # one comma-separated -Q: celery keeps only the last of several -Q
    return subprocess.Popen(
        [str(cli), "worker", "start", "-A", "dagster_celery.app", "-y", str(config_yaml), "-n", name, *queue_args,
         "-l", "INFO", "--", "--concurrency=1", "--pool=prefork"],
        cwd=cwd, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
        # the CLI execs `celery` from PATH: the one next to this interpreter
        env={**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{cli.parent}{os.pathsep}{os.environ.get('PATH', '')}", **env},
        start_new_session=True,
    )  # fmt: skip


def celery_worker_ready(worker: subprocess.Popen, log: Path) -> bool:
    if worker.poll() is not None:
        raise RuntimeError(f"Celery worker exited with {worker.returncode}: {log.read_text(errors='replace')[-2000:]}")
    return log.exists() and " ready." in log.read_text(errors="replace")


@contextlib.contextmanager
def moto_s3_server(root: Path) -> Iterator[str]:
    """moto in server mode (`moto_server`, pip package moto[server]): an S3 API on a free localhost port."""
    binary = Path(sys.executable).with_name("moto_server")
    require("moto_server (pip install 'moto[server]')", binary.exists())
    port = free_port()
    with listening([str(binary), "-H", "127.0.0.1", "-p", str(port)], port, "moto_server", log=root / "moto.log",
                   timeout=60) as url:  # fmt: skip
        yield url
