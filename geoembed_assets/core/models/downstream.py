"""Train, score and store both downstream families on one cell series (what the Dagster assets run).

The shared spatial VAE of the series is stored as an ordinary checkpoint (`checkpoints/<owner>/<id>.pt`, the VAE
Item of the catalog); the ConvLSTMs and GAN generators are stored under `models/<family>/` with meta naming that
checkpoint, so their MLM Items link `derived_from` the decoder they need.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from geoembed_assets.core.checkpoints import load_checkpoint, save_checkpoint
from geoembed_assets.core.models.gan import GANComparison, GANConfig, run_gan_experiment
from geoembed_assets.core.models.series import CellSeries
from geoembed_assets.core.models.store import save_model
from geoembed_assets.core.models.timeseries import (
    SeriesConfig,
    SeriesResult,
    encode_series,
    run_series_experiment,
    split_cells,
    train_series_vae,
)
from geoembed_assets.core.training import TrainingConfig


def store_series_vae(data_dir: str | Path, series: CellSeries, train_cells: np.ndarray, heldout: list[int],
                     config: TrainingConfig, device: str = "cpu") -> str:  # fmt: skip
    """Train the series' shared VAE and save it as a checkpoint owned by the cells' common geohash prefix; its id."""
    result = train_series_vae(series, train_cells, heldout, config, device)
    owner = os.path.commonprefix(list(series.geohashes)) or series.geohashes[0][0]
    dated = [d for d, ok in zip(series.dates, series.has_data) if ok]
    meta = dict(
        geohash=owner, owner=owner, cells=sorted(series.geohashes), sensor=series.sensor, bands=list(series.bands),
        scene_ids=[s for s, ok in zip(series.scene_ids, series.has_data) if ok],
        start_datetime=min(dated).isoformat(), end_datetime=max(dated).isoformat(), parent=None, version=1,
        training=asdict(config), epochs=result.epochs, train_mse=result.train_mse, holdout_mse=result.holdout_mse,
        n_train=result.n_train, n_holdout=result.n_holdout, history=result.history, device=device,
    )  # fmt: skip
    checkpoint_id, _ = save_checkpoint(Path(data_dir) / "checkpoints", result.model, result.normalizer, meta)
    return checkpoint_id


def _common_meta(series: CellSeries, cells: list[str], decoder: str | None, device: str) -> dict[str, Any]:
    dated = [d for d, ok in zip(series.dates, series.has_data) if ok]
    return dict(
        cells=sorted(cells), sensor=series.sensor, bands=list(series.bands), size_px=int(series.cube.shape[-1]),
        scene_ids=[s for s, ok in zip(series.scene_ids, series.has_data) if ok], decoder=decoder,
        start_datetime=min(dated).isoformat(), end_datetime=max(dated).isoformat(), device=device,
    )  # fmt: skip


def run_timeseries(data_dir: str | Path, series: CellSeries, checkpoint_id: str, config: SeriesConfig,
                   train_cells: np.ndarray, test_cells: np.ndarray, device: str = "cpu") -> tuple[SeriesResult, dict[str, str]]:  # fmt: skip
    """Both ConvLSTMs trained and scored with the stored VAE; stored; returns the result and {variant: model id}."""
    from geoembed_assets.core.checkpoints import checkpoint_path

    ckpt = load_checkpoint(checkpoint_path(Path(data_dir) / "checkpoints", checkpoint_id))
    result = run_series_experiment(series, ckpt.model, ckpt.normalizer, config, train_cells, test_cells, device)
    cells = [series.geohashes[i] for i in train_cells]
    training = {k: v for k, v in asdict(config).items() if not isinstance(v, tuple)}
    training["holdout_dates"] = ",".join(config.holdout_dates)
    ids = {}
    for variant in ("embeddings", "raw"):
        model = result.extra["models"][variant]
        meta = _common_meta(series, cells, checkpoint_id if variant == "embeddings" else None, device)
        meta.update(
            arch={"channels": int(result.shapes[variant][1]), "hidden": config.hidden, "kernel": config.kernel,
                  "window": config.window, "after": config.after, "time_channel": True},
            training=training, epochs=result.epochs[variant], latent_shape=result.shapes["embeddings"][1:],
            latent_mean=np.ravel(result.extra["z_mean"]).tolist(), latent_std=np.ravel(result.extra["z_std"]).tolist(),
            norm_mean=ckpt.normalizer.mean.tolist(), norm_std=ckpt.normalizer.std.tolist(),
            scores={k: {m: float(v) for m, v in e.items()} for k, e in result.errors.items()},
            cost=result.costs[variant].to_dict(), test_cells=[series.geohashes[i] for i in test_cells], units=series.units,
        )  # fmt: skip
        if variant == "raw":
            meta.pop("decoder")
        ids[variant], _ = save_model(data_dir, "timeseries", variant, model, meta["arch"], meta)
    return result, ids


def run_gan(data_dir: str | Path, series: CellSeries, checkpoint_id: str, config: GANConfig,
            device: str = "cpu") -> tuple[GANComparison, dict[str, str]]:  # fmt: skip
    """Both GANs trained on every valid chip of the series and scored; generators stored; {variant: model id}."""
    from geoembed_assets.core.checkpoints import checkpoint_path

    ckpt = load_checkpoint(checkpoint_path(Path(data_dir) / "checkpoints", checkpoint_id))
    chips, latents, cells = gan_inputs(series, ckpt.model, ckpt.normalizer)
    out = run_gan_experiment(chips, latents, ckpt.model, ckpt.normalizer, series.bands, series.sensor, config, device,
                             cells=cells, cell_names=list(series.geohashes))  # fmt: skip
    ids = {}
    for variant in ("embeddings", "raw"):
        generator = out.results[variant].generator
        if variant == "embeddings":
            generator = generator.latent  # the decoder is the checkpoint's
            arch = {"noise_dim": config.noise_dim, "latent_shape": list(latents.shape[1:]), "width": config.latent_width}
        else:
            arch = {"noise_dim": config.noise_dim, "bands": len(series.bands), "size": int(chips.shape[-1]), "width": config.width}
        meta = _common_meta(series, list(series.geohashes), checkpoint_id if variant == "embeddings" else None, device)
        meta.update(
            arch=arch, training=asdict(config), epochs=out.results[variant].epochs, latent_shape=list(latents.shape[1:]),
            scores={"bce_real_via_raw_discriminator": out.bce[variant], "bce_ratio_embeddings_over_raw": out.bce_ratio,
                    "band_mean_distance": out.band_distance[variant]["mean"], "band_std_distance": out.band_distance[variant]["std"],
                    "bce_ratio_per_band": {r["band"]: r["ratio"] for r in out.per_band}, "bce_ratio_per_cell": out.cell_summary()},
            cost=out.costs[variant].to_dict(),
        )  # fmt: skip
        if variant == "raw":
            meta.pop("decoder")
        ids[variant], _ = save_model(data_dir, "gan", variant, generator, arch, meta)
    return out, ids


def gan_inputs(series: CellSeries, model, normalizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The GANs' real chips (every fully valid chip of a date with data: cloud-masked ones are left out), their
    stored latent grids, and the index of each chip's cell."""
    usable = series.has_data
    latents = encode_series(model, normalizer, series.cube, usable)
    cells, dates = np.meshgrid(np.arange(len(series.geohashes)), np.flatnonzero(usable), indexing="ij")
    cells, dates = cells.ravel(), dates.ravel()
    chips = series.cube[cells, dates]
    full = ~np.isnan(chips).any(axis=(1, 2, 3))
    return chips[full], latents[cells[full], dates[full]], cells[full]


def split_for(series: CellSeries, config: SeriesConfig) -> tuple[np.ndarray, np.ndarray, list[int]]:
    train_cells, test_cells = split_cells(len(series.geohashes), config.test_fraction, config.seed)
    return train_cells, test_cells, [series.date_index(d) for d in config.holdout_dates]
