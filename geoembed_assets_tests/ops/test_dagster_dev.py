"""End to end through the real stack: `dagster dev` (webserver + daemon), the landing sensor, GraphQL, Chromium.

One `dagster dev` serves the module: the sensor is switched on through GraphQL, the default scene is delivered into
the landing folder, the daemon launches the sensor's run (tiny run config via $GEOEMBED_RUN_CONFIG) and the
test reads the outcome back through GraphQL and, rendered, through headless Chromium.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
import yaml

from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR
from geoembed_assets_tests.ops import servers
from geoembed_assets_tests.ops.conftest import REPO, tiny_run_config

KEY = "2016-01-01|dqd"
PARTITIONED = ["raw_tiles", "geohash_chips", "complexity_scores", "embedding_size_calibration",
               "embedding_size_predictions", "vae_checkpoints", "embeddings"]  # fmt: skip
SENSOR = {"repositoryLocationName": "geoembed_assets.definitions", "repositoryName": "__repository__", "sensorName": "landing_sensor"}
START_SENSOR = """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
  __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }"""
SENSOR_RUNS = """{ runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "landing_sensor"}]}) {
  ... on Runs { results { runId status tags { key value } } } } }"""
MATERIALIZATIONS = """query($k: AssetKeyInput!, $p: [String!]) { assetOrError(assetKey: $k) {
  ... on Asset { assetMaterializations(partitions: $p) { partition runId } } } }"""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.DagsterDev]:
    root = tmp_path_factory.mktemp("dagster_dev")
    run_config = tiny_run_config()
    run_config["execution"] = {"config": {"in_process": {}}}  # one process per run: no per-step interpreter start-up
    run_config["resources"] = {"torch_device": {"config": {"prefer": "cpu", "cpu_threads": 1}},
                               "thresholds": {"config": {"max_rmse": 0.5, "max_ndvi_mae": 1.0}}}  # fmt: skip
    (root / "run_config.yaml").write_text(yaml.safe_dump(run_config))
    with servers.dagster_dev(root, {"GEOEMBED_RUN_CONFIG": str(root / "run_config.yaml")}, REPO) as server:
        yield server


@pytest.fixture(scope="module")
def sensor_runs(dev: servers.DagsterDev) -> list[dict]:
    """Switch the sensor on, deliver the default scene, wait (bounded) for its runs to finish."""
    started = dev.graphql(START_SENSOR, {"s": SENSOR})["startSensor"]
    assert started["__typename"] == "Sensor" and started["sensorState"]["status"] == "RUNNING", started
    shutil.copy(DEFAULT_DESCRIPTOR, dev.data_dir / "landing" / DEFAULT_DESCRIPTOR.name)

    def finished() -> bool:
        runs = dev.graphql(SENSOR_RUNS)["runsOrError"]["results"]
        return bool(runs) and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)

    t0 = time.monotonic()
    servers.wait_until(finished, 300, "the landing sensor's runs to finish", interval=3)
    print(f"sensor runs finished {time.monotonic() - t0:.0f} s after the delivery")
    return dev.graphql(SENSOR_RUNS)["runsOrError"]["results"]


def test_sensor_runs_succeed_and_partitions_are_materialized(dev: servers.DagsterDev, sensor_runs: list[dict]) -> None:
    assert len(sensor_runs) == 1, sensor_runs
    run = sensor_runs[0]
    assert run["status"] == "SUCCESS", (dev.home.parent / "dagster-dev.log").read_text()[-4000:]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/partition"] == KEY and tags["dagster/run_key"].endswith(f":{KEY}")
    for asset in PARTITIONED:
        events = dev.graphql(MATERIALIZATIONS, {"k": {"path": [asset]}, "p": [KEY]})["assetOrError"]["assetMaterializations"]
        assert [(e["partition"], e["runId"]) for e in events] == [(KEY, run["runId"])], asset
    frame = pd.read_parquet(dev.data_dir / "embeddings" / "dqd" / "2016-01-01.parquet")
    assert frame["geohash"].str.startswith("dqd").all() and frame["geohash"].nunique() >= 12
    assert set(frame["checkpoint_id"]) == {p.stem for p in (dev.data_dir / "checkpoints").rglob("*.pt")}


def dump_dom(url: str, tmp_path: Path) -> str:
    """The DOM of `url` after its scripts ran, from headless Chromium (Debian's `chromium`)."""
    chromium = servers.require_binary("chromium") if shutil.which("chromium") else servers.require_binary("chromium-browser")
    args = [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1600,1000",
            "--virtual-time-budget=30000", "--dump-dom", url]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def visible_text(html: str) -> str:
    import re

    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)))


def test_asset_graph_and_asset_page_render_in_chromium(dev: servers.DagsterDev, sensor_runs: list[dict], tmp_path: Path) -> None:
    # the lineage graph: one box per group (collapsed groups add their asset count)
    graph = visible_text(dump_dom(f"{dev.url}/asset-groups", tmp_path))
    assert "Global asset lineage" in graph, graph[:2000]
    for group in ("ingest", "chips", "embeddings", "landcover", "catalog", "reports"):
        assert re.search(rf"\b{group}\b", graph), graph[:2000]
    # the catalog lists every asset with its description
    catalog = visible_text(dump_dom(f"{dev.url}/assets", tmp_path))
    for asset in [*PARTITIONED, "mlm_stac_items", "storage_report"]:
        assert asset in catalog, asset
    # the asset's partitions page: the sensor's partition is materialized, with the run's metadata
    page = visible_text(dump_dom(f"{dev.url}/assets/embeddings?view=partitions&partition={quote(KEY)}", tmp_path))
    assert "Materialized (1)" in page and "Failed (0)" in page, page[:3000]
    assert sensor_runs[0]["runId"][:8] in page, page[:3000]
    for key in ("rows", "bytes_per_cell", "mean_recon_mse", "embedding_bytes"):
        assert key in page, page[:3000]
