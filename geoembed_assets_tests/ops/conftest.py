"""Session-wide servers for the operations tests (each starts once per test session)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from geoembed_assets_tests.ops import servers

REPO = Path(__file__).resolve().parents[2]
TINY_RUN_CONFIG = Path(__file__).with_name("tiny_run_config.yaml")


def tiny_run_config() -> dict:
    return yaml.safe_load(TINY_RUN_CONFIG.read_text())


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto in server mode on localhost (a real S3 API over HTTP), with throw-away credentials in the environment."""
    servers.require_module("s3fs")
    with pytest.MonkeyPatch.context() as mp:
        for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            mp.setenv(var, value)
        with servers.moto_s3_server(tmp_path_factory.mktemp("moto")) as endpoint:
            yield endpoint


@pytest.fixture(scope="session")
def postgres() -> Iterator[servers.Postgres]:
    servers.require_module("dagster_postgres")
    with servers.postgres_server() as pg:
        yield pg


@pytest.fixture
def postgres_home(postgres: servers.Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME holding the deployment's dagster.yaml, pointed at the session's PostgreSQL server."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    for key, value in postgres.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home
