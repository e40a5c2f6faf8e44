"""The command line as a user types it: register the landed scene, then `dagster asset materialize` one partition."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def test_register_then_dagster_asset_materialize(landing: Path, tmp_path: Path) -> None:
    data_dir = landing.parent
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "GEOEMBED_DATA_DIR": str(data_dir)}
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    registered = subprocess.run(
        [sys.executable, "-m", "geoembed_assets.cli", "register"], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    assert registered.stdout.split() == ["2016-01-01|dqd"]

    config = {"ops": {name: {"config": {"cell_size_px": 64, "min_coverage": 0.9}} for name in ("raw_tiles", "geohash_chips")}}
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "geoembed_assets.definitions",
            "--select", "raw_tiles,geohash_chips", "--partition", "2016-01-01|dqd", "--config-json", json.dumps(config),
        ],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr + done.stdout
    index = pd.read_parquet(data_dir / "chips" / "dqd" / "index_2016-01-01.parquet")
    assert index["geohash"].nunique() >= 12 and (index["coverage"] >= 0.9).all()
