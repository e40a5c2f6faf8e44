"""The downstream assets materialize for real (tiny settings) on the WorldCereal series; not in embed_scenes."""

from pathlib import Path

import dagster as dg

from geoembed_assets.assets import downstream_assets
from geoembed_assets.core.models.store import model_files
from geoembed_assets.definitions import defs
from geoembed_assets.resources import GeoembedStorage, TorchDevice

TINY = {"max_cells": 6, "vae_steps": 10, "series_epochs": 2, "gan_epochs": 1, "hidden": 8, "test_fraction": 0.34}


def test_downstream_assets_materialize(tmp_path: Path, one_torch_thread) -> None:
    config = dg.RunConfig({name: downstream_assets.SeriesSource(**TINY) for name in ("series_decoder", "timeseries_models", "embedding_gan")})
    result = dg.materialize(
        [downstream_assets.series_decoder, downstream_assets.timeseries_models, downstream_assets.embedding_gan],
        resources={"storage": GeoembedStorage(data_dir=str(tmp_path)), "torch_device": TorchDevice(prefer="cpu")},
        run_config=config,
    )
    assert result.success
    summary = result.output_for_node("timeseries_models")
    for after in (0, 1):  # both settings: previous dates only, and with the following date
        latent_baselines = {"latent_persistence"} | ({"latent_linear"} if after else set())  # the latent grids' baselines, decoded
        assert set(summary[f"after_{after}"]["test_mse"]) == {"embeddings", "raw", "persistence", "linear", "vae_reconstruction"} | latent_baselines
    assert summary["units"] == "reflectance"
    ts_meta = result.asset_materializations_for_node("timeseries_models")[0].metadata
    assert "after" in ts_meta["errors"].value and "persistence" in ts_meta["errors"].value
    gan = result.output_for_node("embedding_gan")
    assert gan["bce_ratio_embeddings_over_raw"] > 0 and len(gan["bce_ratio_per_band"]) == 9
    meta = result.asset_materializations_for_node("embedding_gan")[0].metadata
    assert meta["samples"].value.startswith("![real (top)")
    assert "ratio" in meta["bce_per_band"].value and "cell" in meta["bce_per_cell"].value
    assert meta["bce_per_cell_summary"].value["cells"] == 6
    assert len(model_files(tmp_path, "timeseries")) == 4 and len(model_files(tmp_path, "gan")) == 2


def test_timeseries_on_slovenia(tmp_path: Path, one_torch_thread) -> None:
    """The Slovenia NDVI stack through the ingest (descriptors under the data dir's landing), gap filling only."""
    from geoembed_assets.core.models.series import SLOVENIA_DIR

    if not SLOVENIA_DIR.exists():
        import pytest

        pytest.skip("shared eo-learn Slovenia data not present")
    tiny = {**TINY, "dataset": "slovenia", "after": [1], "holdout_dates": ["2017-07-20", "2017-10-13"]}
    config = dg.RunConfig({name: downstream_assets.SeriesSource(**tiny) for name in ("series_decoder", "timeseries_models")})
    result = dg.materialize(
        [downstream_assets.series_decoder, downstream_assets.timeseries_models],
        resources={"storage": GeoembedStorage(data_dir=str(tmp_path)), "torch_device": TorchDevice(prefer="cpu")},
        run_config=config,
    )
    assert result.success
    summary = result.output_for_node("timeseries_models")
    assert summary["units"] == "NDVI" and set(summary) >= {"after_1"}
    assert len(list((tmp_path / "landing" / "series" / "slovenia").glob("*.scene.json"))) == 68
    assert len(model_files(tmp_path, "timeseries")) == 2


def test_not_in_default_job() -> None:
    job = defs.get_job_def("embed_scenes")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert not keys & {"series_decoder", "timeseries_models", "embedding_gan"}
    assert {"series_decoder", "timeseries_models", "embedding_gan"} <= {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
