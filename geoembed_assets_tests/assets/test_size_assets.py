"""Size calibration -> size predictions -> VAE checkpoints -> embeddings (-> storage report) materialized by Dagster.

The upstream chips and scores are stand-in assets of the same keys serving real 128 px chips of two cells of the
default scene, so the test trains only tiny networks.
"""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from geoembed_assets.assets import embedding_assets, report_assets, size_assets
from geoembed_assets.core import workflow
from geoembed_assets.partitions import partition_key, register_keys, scene_partitions
from geoembed_assets.resources import GeoembedStorage, QualityThresholds, TorchDevice
from geoembed_assets_tests.small_chips import shared_small_chips

KEY = partition_key("dqd", "2016-01-01")
SIZE_CONFIG = {"sizes": [2, 8], "n_cells": 2, "max_epochs": 2, "base_channels": 8, "modes": ["multi"], "candidate_sizes": [2, 8]}
VAE_CONFIG = {"latent_dim": 16, "base_channels": 8, "max_epochs": 2, "scope": "cell", "refine_steps": 0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def stand_ins(scene, chips: pd.DataFrame) -> list:
    @dg.asset(partitions_def=scene_partitions, name="raw_tiles")
    def raw_tiles() -> list:
        return [scene]

    @dg.asset(partitions_def=scene_partitions, name="geohash_chips")
    def geohash_chips() -> pd.DataFrame:
        return chips

    @dg.asset(partitions_def=scene_partitions, name="complexity_scores")
    def complexity_scores() -> pd.DataFrame:
        return workflow.score_partition(chips, 32)

    return [raw_tiles, geohash_chips, complexity_scores]


def materialize(scene, chips, data_dir: Path, vae_config: dict, extra: tuple = ()) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    register_keys(instance, [KEY])
    by_name = {a.key.to_user_string(): a for a in dg.load_assets_from_modules([embedding_assets])}
    assets = [size_assets.embedding_size_calibration, size_assets.embedding_size_predictions,
              by_name["vae_checkpoints"], by_name["embeddings"], *extra]  # fmt: skip
    ops = {
        "embedding_size_calibration": {"config": SIZE_CONFIG},
        "embedding_size_predictions": {"config": SIZE_CONFIG},
        "vae_checkpoints": {"config": vae_config},
        "embeddings": {"config": vae_config},
    }
    if extra:
        ops["storage_report"] = {"config": {"n_cells": 1, "rates": [[2, 2]], "max_steps": 2, "refine_steps": 0,
                                            "base_channels": 8, "jp2_qualities": [1.0]}}  # fmt: skip
    return dg.materialize(
        [*stand_ins(scene, chips), *assets],
        partition_key=KEY,
        instance=instance,
        run_config={"ops": ops},
        resources={
            "storage": GeoembedStorage(data_dir=str(data_dir)),
            "torch_device": TorchDevice(prefer="cpu"),
            "thresholds": QualityThresholds(max_rmse=1.0, max_ndvi_mae=2.0),
        },
    )


@pytest.fixture(scope="module")
def run(s2_scene, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("sizes") / "data"
    chips = shared_small_chips(s2_scene)
    return data_dir, materialize(s2_scene, chips, data_dir, VAE_CONFIG, extra=(report_assets.storage_report,))


def test_calibration_metadata(run) -> None:
    _, result = run
    assert result.success
    meta = result.asset_materializations_for_node("embedding_size_calibration")[0].metadata
    table = meta["r2_multi_band"].value
    assert "exponential" in table and "gzip_ratio" in table and "kernel_pca_components" in table
    assert meta["chosen_multi_band"].value.split(" on ")[0] in {"linear", "polynomial", "exponential"}
    assert meta["figure_4"].value.startswith("![predicted loss](data:image/png;base64,")
    assert "loo_r2_multi_band" in meta  # two cells: no leave-one-out, the in-sample R^2 decides
    model = calibration_model(result)
    assert ("fallback_multi_band" in meta) == (model.fallback_size is not None) == (not model.informative)
    assert "holdout_ndvi_mae@ndvi_w=0" in meta["ndvi_term_ablation"].value
    calibration = result.output_for_node("embedding_size_calibration")
    runs = calibration["runs"]
    assert runs["geohash"].nunique() == 2 and set(runs["size"]) == {2, 8}


def calibration_model(result):
    from geoembed_assets.core import size_prediction as sp

    p = result.output_for_node("embedding_size_calibration")["models"]["multi"]
    return sp.SizeModel(**{**p, "coef": tuple(p["coef"])})


def test_checkpoints_use_predicted_sizes_and_check_passes(run) -> None:
    data_dir, result = run
    predictions = result.output_for_node("embedding_size_predictions")
    assert set(predictions["latent_dim"]) <= {2, 8} and len(predictions) == 2
    assert (data_dir / "size_predictions" / "dqd" / "2016-01-01.parquet").exists()
    ckpts = result.output_for_node("vae_checkpoints")
    predicted = dict(zip(predictions["geohash"], predictions["latent_dim"]))
    assert all(predicted[g] == d for g, d in zip(ckpts["geohash"], ckpts["latent_dim"]))
    frame = pd.read_parquet(result.output_for_node("embeddings"))
    sizes = dict(zip(ckpts["checkpoint_id"], ckpts["latent_dim"]))
    assert (frame["latent_channels"] == frame["checkpoint_id"].map(sizes)).all()
    assert (frame["embedding"].map(len) == frame["latent_channels"] * 32 * 32).all()
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"holdout_mse_below_bound": True, "embedding_dimension_matches": True, "quality_target_met": True}


def test_storage_report_asset(run) -> None:
    _, result = run
    comparison = result.output_for_node("storage_report")
    assert {"embeddings (spatial VAE)", "pipeline embeddings"} <= set(comparison["method"])
    assert set(comparison["cover"]) <= {"land", "water"} and (comparison["baseline_mse"] > 0).all()
    meta = result.asset_materializations_for_node("storage_report")[0].metadata
    assert "raw scene as delivered" in meta["storage"].value and "mse" in meta["comparison"].value
    assert meta["rate_distortion_plot"].value.startswith("![rate-distortion](data:image/png;base64,")


def test_switch_off_predictions_uses_latent_dim(s2_scene, tmp_path: Path) -> None:
    chips = shared_small_chips(s2_scene)
    result = materialize(s2_scene, chips, tmp_path / "data", {**VAE_CONFIG, "latent_dim_from_predictions": False})
    assert result.output_for_node("vae_checkpoints")["latent_dim"].eq(16).all()
    shared = materialize(s2_scene, chips, tmp_path / "shared", {**VAE_CONFIG, "scope": "partition"})
    assert shared.output_for_node("vae_checkpoints")["checkpoint_id"].nunique() == 1  # sizes apply per cell only
    assert result.output_for_node("vae_checkpoints")["latent_dim"].eq(16).all()
