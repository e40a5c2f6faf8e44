"""The `geoembed` console command as a user runs it: quiet progress output, a summary with and without checkpoint
bytes, a bad delivery skipped, outputs Dagster stores as the real files with pictures in their metadata, the
search table and its JSON, offline validation, and the README's DuckDB query."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GEOEMBED = BIN / "geoembed"
KEY = "2016-01-01|dqd"


def geoembed(*args: str, env: dict, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(GEOEMBED), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """One `geoembed run` on the default scene (64 px cells, 8 epochs) with a broken delivery beside it."""
    from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR

    root = tmp_path_factory.mktemp("console")
    landing = root / "data" / "landing"
    (landing / "broken-delivery").mkdir(parents=True)
    (landing / DEFAULT_DESCRIPTOR.name).write_text(DEFAULT_DESCRIPTOR.read_text())
    (landing / "broken-delivery" / "scene.json").write_text('{"sensor": "sentinel-2"}')
    home = root / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "GEOEMBED_DATA_DIR": str(root / "data"), "OMP_NUM_THREADS": "1"}
    done = geoembed("run", "--cell-size-px", "64", "--min-coverage", "0.9", "--max-epochs", "8", "--max-rmse", "1",
                    env=env)  # fmt: skip
    return {"root": root, "data": root / "data", "home": home, "env": env, "run": done}


def test_run_prints_a_few_progress_lines_and_both_ratios(demo) -> None:
    done = demo["run"]
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert 10 <= len(lines) <= 60, done.stderr  # a few lines per step, not Dagster's DEBUG flood
    assert not any("DEBUG" in line or "LOADED_INPUT" in line or "HANDLED_OUTPUT" in line for line in lines)
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines if not line.startswith(" "))
    assert any("skipping bad delivery" in line and "broken-delivery" in line for line in lines)
    assert f"partition 1/1 {KEY}" in done.stderr
    for step in ("raw_tiles", "geohash_chips", "complexity_scores", "vae_checkpoints", "embeddings"):
        assert re.search(rf"{step}: done in \d+\.\d s", done.stderr), step
    progress = [line for line in lines if re.search(r"(scoring|embedding) \d+/\d+ chips \(\d+%\)", line)]
    assert progress and all("/s" in p or "s per chip" in p for p in progress)
    assert re.search(r"embedding (\d+)/\1 chips \(100%\).*done in", done.stderr)
    assert "without checkpoints" in done.stdout and "counting the checkpoints needed to decode" in done.stdout
    ratios = re.search(r"= ([\d.]+)x without checkpoints, ([\d.]+)x counting", done.stdout)
    assert ratios and float(ratios.group(1)) > float(ratios.group(2)) > 0


def test_register_prints_the_partition_keys_also_with_verbose(demo) -> None:
    done = geoembed("register", "-v", env=demo["env"])
    assert done.returncode == 0 and done.stdout.split() == [KEY]


def test_only_bad_deliveries_exit_non_zero(tmp_path) -> None:
    landing = tmp_path / "data" / "landing" / "broken"
    landing.mkdir(parents=True)
    (landing / "scene.json").write_text("{}")
    (tmp_path / "home").mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "GEOEMBED_DATA_DIR": str(tmp_path / "data")}
    done = geoembed("run", env=env)
    assert done.returncode == 1
    assert "skipping bad delivery" in done.stderr and "no readable scene" in done.stderr


def _materialization(home: Path, asset: str) -> dict:
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        assert event is not None, asset
        return event.asset_materialization.metadata


def test_outputs_are_the_real_files_with_pictures(demo) -> None:
    data, home = demo["data"], demo["home"]
    meta = _materialization(home, "embeddings")
    geoparquet = data / "embeddings" / "dqd" / "2016-01-01.parquet"
    assert Path(meta["path"].value).resolve() == geoparquet.resolve()
    assert not list((data / "dagster").rglob("*.pkl")) or all("raw_tiles" in str(p) or "calibration" in str(p)
                                                                for p in (data / "dagster").rglob("*.pkl"))
    pointer = data / "dagster" / "embeddings" / "2016-01-01" / "dqd.json"
    assert Path(json.loads(pointer.read_text())["path"]).resolve() == geoparquet.resolve()
    chips_meta = _materialization(home, "geohash_chips")
    stored = Path(chips_meta["path"].value)
    assert stored.suffix == ".parquet" and len(pd.read_parquet(stored)) == chips_meta["chips"].value
    assert chips_meta["coverage_map"].value.startswith("![cells coloured by coverage](data:image/png;base64,iVBOR")
    assert _materialization(home, "raw_tiles")["footprint_map"].value.startswith("![scene footprint](data:image/png")
    ckpt_meta = _materialization(home, "vae_checkpoints")
    for name in ("loss_curves", "holdout_mse_map"):
        assert "data:image/png;base64,iVBOR" in ckpt_meta[name].value
    checkpoints = pd.read_parquet(ckpt_meta["path"].value)
    assert ckpt_meta["cells_at_epoch_cap"].value == checkpoints.loc[checkpoints["epochs"] >= 8, "geohash"].nunique()


def test_search_table_json_and_no_match(demo) -> None:
    env = demo["env"]
    table = geoembed("search", "--bbox", "-75.70", "37.62", "-75.66", "37.66", "--bands", "B04", "B08", env=env)
    assert table.returncode == 0, table.stderr
    header, rule, *rows = table.stdout.splitlines()
    assert header.split() == ["id", "cell", "period", "bands", "asset", "path"]
    assert set(rule.replace(" ", "")) == {"-"}
    listed = [r for r in rows if r.startswith("dqd")]
    assert listed and rows[-1] == f"{len(listed)} model{'s' if len(listed) > 1 else ''} matched"
    first = listed[0].split()
    assert first[1] == first[0].split("-")[0] and first[2] == "2016-01-12" and first[3] == "B01"
    assert first[-1].endswith(".pt") and (REPO / first[-1]).resolve().exists()
    as_json = json.loads(geoembed("search", "--json", "--bbox", "-75.70", "37.62", "-75.66", "37.66", env=env).stdout)
    assert [m["id"] for m in as_json] == [r.split()[0] for r in listed]
    assert as_json[0]["bands"][:4] == ["B01", "B02", "B03", "B04"] and as_json[0]["cell"] == first[1]
    none = geoembed("search", "--start", "2030-01-01", env=env)
    assert none.returncode == 0 and none.stdout.startswith("no model in") and "start=2030-01-01" in none.stdout
    assert json.loads(geoembed("search", "--json", "--start", "2030-01-01", env=env).stdout) == []


def test_model_items_have_all_bands_and_a_thumbnail_and_validate_offline(demo) -> None:
    catalog = demo["data"] / "catalog"
    item_path = next((catalog / "vae").rglob("dqd*.json"))
    item = json.loads(item_path.read_text())
    bands = item["assets"]["model"]["eo:bands"]
    assert len(bands) == 13 and all("common_name" in b and "center_wavelength" in b for b in bands)
    assert {b["name"]: b["center_wavelength"] for b in bands}["B8A"] == 0.865
    thumb = item["assets"]["thumbnail"]
    assert thumb["type"] == "image/png" and "thumbnail" in thumb["roles"]
    assert (item_path.parent / thumb["href"]).resolve().read_bytes().startswith(b"\x89PNG")
    done = geoembed("validate", env=demo["env"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "0 problems" in done.stdout


def test_readme_duckdb_query_runs_as_written(demo) -> None:
    readme = (REPO / "README.md").read_text()
    queries = re.findall(r'^\.venv/bin/duckdb -c "(.+)"$', readme, flags=re.M)
    assert len(queries) >= 2
    for query in queries:
        done = subprocess.run([str(BIN / "duckdb"), "-csv", "-c", query], cwd=demo["root"], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "dqd" in done.stdout or ("land" in done.stdout and "water" in done.stdout)
    typed = subprocess.run([str(BIN / "duckdb"), "-csv", "-noheader", "-c", queries[1]], cwd=demo["root"],
                           capture_output=True, text=True).stdout.splitlines()  # fmt: skip
    assert re.fullmatch(r"dqd\w\w,TINYINT\[\d*\],\d+", typed[0]), typed
