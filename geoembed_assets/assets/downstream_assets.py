"""Models trained on embeddings (issue 12), each beside its raw-pixel twin: the missing-date ConvLSTM and the
embedding GAN. Thin wrappers over `core/models/`; not part of the `embed_scenes` job (materialize them on their own).

The series is a multi-date delivery folder (default: the shared WorldCereal monthly sample; `dataset: slovenia`:
the eo-learn Slovenia NDVI stack, one descriptor per date written under `<data_dir>/landing/series/slovenia`, cloud
probability masked) read through the pipeline's ingest at a fine geohash precision; its shared VAE is an ordinary
checkpoint, so the catalog lists it and the downstream models' Items link `derived_from` it.
"""


import os
from pathlib import Path

import dagster as dg
import pandas as pd

from geoembed_assets.core.checkpoints import checkpoint_path
from geoembed_assets.core.models.downstream import run_gan, run_timeseries, split_for, store_series_vae
from geoembed_assets.core.models.gan import GANConfig
from geoembed_assets.core.models.series import DATASETS, SLOVENIA_DIR, WORLDCEREAL_DIR, CellSeries, load_series, load_slovenia, worldcereal_paths
from geoembed_assets.core.models.store import models_dir
from geoembed_assets.core.models.timeseries import SeriesConfig
from geoembed_assets.core.previews import markdown_image
from geoembed_assets.core.training import TrainingConfig
from geoembed_assets.resources import GeoembedStorage, TorchDevice

ROOTS_ENV = "GEOEMBED_SERIES_ROOTS"  # os.pathsep-separated folders a series may be read from, besides the data dir


class SeriesSource(dg.Config):
    dataset: str = "worldcereal"  # "worldcereal" (a folder of S2L2A_*.tif) or "slovenia" (the eo-learn NDVI stack)
    series_dir: str = ""  # the dataset's folder; "" = the shared sample
    precision: int = 7  # geohash precision of the cells (7: ~100 m x 150 m, fits the sample's 1 km)
    size_px: int = 16
    max_cells: int = 0  # 0: every fully covered cell
    vae_steps: int = 600
    window: int = 2
    after: list[int] = [0, 1]  # following dates the ConvLSTMs see: one pair of models per value (0: forecast)
    hidden: int = 32
    series_epochs: int = 0  # 0: the dataset's default (60 WorldCereal, 20 Slovenia)
    gan_epochs: int = 40
    holdout_dates: list[str] = []  # [] = the dataset's default test dates
    test_fraction: float = 0.3
    seed: int = 0


def _series(config: SeriesSource, data_dir: str | Path) -> CellSeries:
    if config.dataset not in DATASETS:
        raise dg.Failure(f"dataset must be one of {sorted(DATASETS)}, got {config.dataset!r}")
    default = WORLDCEREAL_DIR if config.dataset == "worldcereal" else SLOVENIA_DIR
    folder = Path(config.series_dir).expanduser().resolve() if config.series_dir else default.resolve()
    roots = [Path(data_dir).resolve(), WORLDCEREAL_DIR.resolve(), SLOVENIA_DIR.resolve()]
    roots += [Path(r).resolve() for r in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if r]
    if not any(folder.is_relative_to(r) for r in roots):
        raise dg.Failure(f"series folder {folder} is outside the allowed roots {[str(r) for r in roots]} (set ${ROOTS_ENV})")
    if config.dataset == "slovenia":
        if not (folder / "timestamps.json").is_file():
            raise dg.Failure(f"series folder {folder} holds no timestamps.json (eo-learn Slovenia sample)")
        landing = Path(data_dir) / "landing" / "series" / "slovenia"
        return load_slovenia(landing, config.precision, config.size_px, config.max_cells or None, directory=folder)
    paths = worldcereal_paths(folder)
    if not paths:
        raise dg.Failure(f"series folder {folder} holds no S2L2A_*.tif")
    return load_series(paths, config.precision, config.size_px, config.max_cells or None)


def _series_config(config: SeriesSource, after: int = 0) -> SeriesConfig:
    spec = DATASETS.get(config.dataset, DATASETS["worldcereal"])
    return SeriesConfig(window=config.window, after=after, hidden=config.hidden, epochs=config.series_epochs or spec["epochs"],
                        seed=config.seed, holdout_dates=tuple(config.holdout_dates or spec["holdout"]),
                        test_fraction=config.test_fraction)  # fmt: skip


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


@dg.asset(
    group_name="downstream",
    kinds={"pytorch"},
    description="The shared spatial VAE of a multi-date series (trained with train_cell_vae on every chip except the "
    "test cells' held-back dates), stored as a checkpoint: the frozen decoder of both downstream models.",
)
def series_decoder(context: dg.AssetExecutionContext, config: SeriesSource, storage: GeoembedStorage, torch_device: TorchDevice) -> str:
    series = _series(config, storage.local_dir)
    train_cells, _, heldout = split_for(series, _series_config(config))
    vae_config = TrainingConfig(patch_size=config.size_px, max_steps=config.vae_steps, max_epochs=400, seed=config.seed)
    checkpoint_id = store_series_vae(storage.local_dir, series, train_cells, heldout, vae_config, torch_device.device())
    storage.commit(checkpoint_path(storage.checkpoints_dir, checkpoint_id))
    context.add_output_metadata({"checkpoint_id": checkpoint_id, "cells": len(series.geohashes),
                                 "dates_with_data": int(series.has_data.sum()), "dates": len(series.dates)})  # fmt: skip
    return checkpoint_id


@dg.asset(
    group_name="downstream",
    kinds={"pytorch"},
    description="Missing-date ConvLSTM on embeddings (decoded by the frozen series decoder) and its raw twin, scored "
    "on held-back dates of unseen cells against persistence and linear interpolation (per-pixel MSE/MAE, no data "
    "and clouds masked), once per `after` setting (0: previous dates only; 1: also the following date); training "
    "time, epochs and peak memory of both.",
)
def timeseries_models(
    context: dg.AssetExecutionContext, config: SeriesSource, storage: GeoembedStorage, torch_device: TorchDevice, series_decoder: str
) -> dict:
    series = _series(config, storage.local_dir)
    storage.fetch(checkpoint_path(storage.checkpoints_dir, series_decoder))
    rows, costs, summary = [], [], {"units": series.units, "model_ids": {}}
    n_train, n_test, test_dates = {}, {}, []
    for after in config.after:
        s_cfg = _series_config(config, after)
        train_cells, test_cells, _ = split_for(series, s_cfg)
        result, ids = run_timeseries(storage.local_dir, series, series_decoder, s_cfg, train_cells, test_cells, torch_device.device())
        rows += [{"after": after, "method": k, **v} for k, v in result.errors.items()]
        costs += [{"after": after, "model": k, "epochs": result.epochs[k], **v.to_dict()} for k, v in result.costs.items()]
        e, r, err = result.costs["embeddings"], result.costs["raw"], result.errors
        summary[f"after_{after}"] = {
            "test_mse": {k: v["mse"] for k, v in err.items()}, "test_mae": {k: v["mae"] for k, v in err.items()},
            "mse_ratio_embeddings_over_raw": _ratio(err["embeddings"]["mse"], err["raw"]["mse"]),
            "cpu_time_ratio_raw_over_embeddings": _ratio(r.cpu_seconds, e.cpu_seconds),
            "peak_rss_ratio_raw_over_embeddings": _ratio(r.peak_rss_mb, e.peak_rss_mb),
            "beats_persistence": err["embeddings"]["mse"] < err["persistence"]["mse"],
            "beats_linear": "linear" in err and err["embeddings"]["mse"] < err["linear"]["mse"],
            "within_1_5x_raw": err["embeddings"]["mse"] <= 1.5 * err["raw"]["mse"],
        }  # fmt: skip
        summary["model_ids"][f"after_{after}"] = ids
        n_train[after], n_test[after], test_dates = result.n_train, result.n_test, result.test_dates
    storage.commit(models_dir(storage.local_dir, "timeseries"))
    context.add_output_metadata({
        "errors": dg.MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3e")),
        "costs": dg.MetadataValue.md(pd.DataFrame(costs).to_markdown(index=False, floatfmt=".3g")),
        "summary": dg.MetadataValue.json(summary), "units": series.units,
        "n_train_windows": dg.MetadataValue.json(n_train), "n_test": dg.MetadataValue.json(n_test),
        "test_dates": dg.MetadataValue.json(test_dates),
    })  # fmt: skip
    return summary


@dg.asset(
    group_name="downstream",
    kinds={"pytorch"},
    description="Embedding GAN (latent-grid generator + frozen series decoder) and its raw DCGAN twin with the same "
    "discriminator architecture: BCE of both generators' images through the raw discriminator (overall, per band, per "
    "cell), per-band mean/std "
    "distances to the real chips, a grid of generated vs real images, training time, epochs and peak memory.",
)
def embedding_gan(
    context: dg.AssetExecutionContext, config: SeriesSource, storage: GeoembedStorage, torch_device: TorchDevice, series_decoder: str
) -> dict:
    series = _series(config, storage.local_dir)
    g_cfg = GANConfig(epochs=config.gan_epochs, seed=config.seed)
    storage.fetch(checkpoint_path(storage.checkpoints_dir, series_decoder))
    out, ids = run_gan(storage.local_dir, series, series_decoder, g_cfg, torch_device.device())
    storage.commit(models_dir(storage.local_dir, "gan"))
    bands = pd.DataFrame({"band": series.bands, **{f"{m} |mean|": d["mean"] for m, d in out.band_distance.items()},
                          **{f"{m} |std|": d["std"] for m, d in out.band_distance.items()}})  # fmt: skip
    e, r = out.costs["embeddings"], out.costs["raw"]
    summary = {
        "bce": out.bce, "bce_ratio_embeddings_over_raw": out.bce_ratio, "bce_real_chips": out.bce_real_chips,
        "bce_ratio_per_band": {r["band"]: r["ratio"] for r in out.per_band}, "bce_per_cell": out.cell_summary(),
        "cpu_time_ratio_raw_over_embeddings": _ratio(r.cpu_seconds, e.cpu_seconds),
        "peak_rss_ratio_raw_over_embeddings": _ratio(r.peak_rss_mb, e.peak_rss_mb), "model_ids": ids,
    }  # fmt: skip
    costs = pd.DataFrame([{"model": k, "epochs": out.results[k].epochs, **v.to_dict()} for k, v in out.costs.items()])
    context.add_output_metadata({
        "summary": dg.MetadataValue.json(summary),
        "band_distance": dg.MetadataValue.md(bands.to_markdown(index=False, floatfmt=".4f")),
        "costs": dg.MetadataValue.md(costs.to_markdown(index=False, floatfmt=".3g")),
        "samples": dg.MetadataValue.md(markdown_image(out.png, "real (top), embedding GAN, raw DCGAN")),
        "bce_per_band": dg.MetadataValue.md(pd.DataFrame(out.per_band).to_markdown(index=False, floatfmt=".3f")),
        "bce_per_cell": dg.MetadataValue.md(pd.DataFrame(out.per_cell).to_markdown(index=False, floatfmt=".3f")),
        "bce_per_cell_summary": dg.MetadataValue.json(out.cell_summary()),
        "n_real_chips": out.n_real,
    })  # fmt: skip
    return summary


__all__ = ["series_decoder", "timeseries_models", "embedding_gan"]
