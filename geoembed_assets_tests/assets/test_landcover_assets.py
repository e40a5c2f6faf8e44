"""landcover_proportions and landcover_clusters materialized by Dagster on the real default scene (tiny chips)."""

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from geoembed_assets.assets import embedding_assets, landcover_assets
from geoembed_assets.partitions import partition_key, register_keys
from geoembed_assets.resources import GeoembedStorage
from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR
from geoembed_assets_tests.core.test_landcover import SLOVENIA_LC

KEY = partition_key("dqd", "2016-01-01")
ASSETS = [embedding_assets.raw_tiles, embedding_assets.geohash_chips, *dg.load_assets_from_modules([landcover_assets])]


def run(data_dir: Path, instance: dg.DagsterInstance, landcover: dict | None = None, raise_on_error: bool = True):
    return dg.materialize(
        ASSETS,
        partition_key=KEY,
        instance=instance,
        raise_on_error=raise_on_error,
        run_config={
            "ops": {
                "raw_tiles": {"config": {"cell_size_px": 32}},
                "geohash_chips": {"config": {"cell_size_px": 32, "min_coverage": 0.9}},
                "landcover_proportions": {"config": landcover or {}},
                "landcover_clusters": {"config": {"k_min": 2, "k_max": 4}},
            }
        },
        resources={"storage": GeoembedStorage(data_dir=str(data_dir))},
    )


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dg.DagsterInstance]:
    data_dir = tmp_path_factory.mktemp("landcover") / "data"
    (data_dir / "landing").mkdir(parents=True)
    shutil.copy(DEFAULT_DESCRIPTOR, data_dir / "landing" / DEFAULT_DESCRIPTOR.name)
    instance = dg.DagsterInstance.ephemeral()
    register_keys(instance, [partition_key("dqd", "2016-01-01")])
    return data_dir, instance


def test_proportions_and_clusters_materialize(landed) -> None:
    data_dir, instance = landed
    result = run(data_dir, instance)
    assert result.success
    chips = result.output_for_node("geohash_chips")
    props = result.output_for_node("landcover_proportions")
    assert set(props["geohash"]) == set(chips["geohash"]) and props["source"].eq("spectral").all()
    on_disk = pd.read_parquet(data_dir / "landcover" / "proportions" / "dqd" / "2016-01-01.parquet")
    pd.testing.assert_frame_equal(on_disk, props)
    clusters = result.output_for_node("landcover_clusters")
    assert set(clusters["geohash"]) == set(chips["geohash"]) and "cluster" in clusters
    meta = result.asset_materializations_for_node("landcover_clusters")[0].metadata
    assert meta["k"].value == clusters["cluster"].nunique() and meta["k_chosen_by"].value == "silhouette"
    assert "silhouette" in meta["silhouette_scores"].value and "|   2 |" in meta["silhouette_scores"].value and "data:image/png;base64," in meta["figure"].value
    latest = pd.read_parquet(data_dir / "landcover" / "clusters_latest.parquet")
    assert latest["cluster"].tolist() == clusters["cluster"].tolist()
    assert not list(data_dir.rglob("*.tmp"))  # atomic writes leave no temporaries
    # open-water cells of the default scene (north-east, Chesapeake Bay side) are one cluster apart from land
    label = clusters.set_index("geohash")["cluster"]
    water = props.set_index("geohash")["water"]
    assert not set(label[water > 0.9]) & set(label[water < 0.1])


def test_class_raster_outside_allowed_roots_is_refused(landed, tmp_path: Path, monkeypatch) -> None:
    data_dir, instance = landed
    monkeypatch.delenv(landcover_assets.ROOTS_ENV, raising=False)
    outside = tmp_path / "elsewhere.tif"
    outside.write_bytes(b"")
    result = run(data_dir, instance, {"class_raster": str(outside)}, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "outside the allowed roots" in failure.step_failure_data.error.message


@pytest.mark.skipif(not SLOVENIA_LC.exists(), reason="shared eo-learn Slovenia data not present")
def test_class_raster_inside_a_configured_root_not_covering_the_cells(landed, monkeypatch) -> None:
    """An allowed raster that does not reach the cells: every cell falls back to spectral classes."""
    data_dir, instance = landed
    monkeypatch.setenv(landcover_assets.ROOTS_ENV, str(SLOVENIA_LC.parent))
    result = run(data_dir, instance, {"class_raster": str(SLOVENIA_LC), "nodata_classes": [0]})
    assert result.success and result.output_for_node("landcover_proportions")["source"].eq("spectral").all()
