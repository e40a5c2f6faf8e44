"""Embedding-size calibration and per-cell size predictions (paper section 3.3, Tables 1-2, Figure 4)."""

import base64

import dagster as dg
import numpy as np
import pandas as pd

from geoembed_assets.core import size_prediction as sp
from geoembed_assets.core import workflow
from geoembed_assets.partitions import scene_partitions
from geoembed_assets.resources import GeoembedStorage, TorchDevice


class SizeConfig(dg.Config):
    """Calibration and prediction settings; the defaults are tiny, the paper's are sizes 2..128, 100 cells, patience 50."""

    sizes: list[int] = [2, 4, 8]
    n_cells: int = 4
    max_epochs: int = 10
    patience: int = 5
    base_channels: int = 16
    architecture: str = "spatial"  # sizes are latent channels (spatial) or vector lengths (flat)
    modes: list[str] = ["multi"]
    single_bands: list[str] | None = ["B08"]  # None: every band (the paper)
    ndvi_weight: float = 0.1
    ndvi_ablation: bool = True
    seed: int = 0
    error_bound: float = sp.ERROR_BOUND  # MSE a predicted size must meet: the quality target (paper: 0.002)
    candidate_sizes: list[int] = list(sp.CANDIDATE_SIZES)

    def calibration(self) -> sp.CalibrationConfig:
        return sp.CalibrationConfig(
            sizes=tuple(self.sizes), n_cells=self.n_cells, max_epochs=self.max_epochs, patience=self.patience,
            base_channels=self.base_channels, modes=tuple(self.modes), architecture=self.architecture,
            patch_size=48 if self.architecture == "spatial" else 32,
            single_bands=None if self.single_bands is None else tuple(self.single_bands),
            index_weights={"ndvi": self.ndvi_weight} if self.ndvi_weight else {},
            ndvi_ablation=self.ndvi_ablation, seed=self.seed,
        )  # fmt: skip


def _md(frame: pd.DataFrame, index: bool = False) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=index, floatfmt=".4g"))


def cell_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Complexity scores per cell (mean over its chips)."""
    return scores.groupby("geohash", as_index=False)[list(sp.SCORES)].mean()


@dg.asset(
    partitions_def=scene_partitions,
    group_name="embeddings",
    kinds={"pytorch", "scikitlearn"},
    pool="gpu",
    description="VAEs of several embedding sizes on a seeded sample of cells stratified by complexity (best "
    "held-out MSE per cell, mode and size), fitted against each complexity score by linear, polynomial and "
    "exponential models; R^2 tables, the chosen (function, score) pair per mode, a Figure-4-like plot and the "
    "NDVI-term ablation.",
)
def embedding_size_calibration(
    context: dg.AssetExecutionContext,
    config: SizeConfig,
    storage: GeoembedStorage,
    torch_device: TorchDevice,
    geohash_chips: pd.DataFrame,
    complexity_scores: pd.DataFrame,
) -> dict:
    calibration = config.calibration()
    runs = sp.run_calibration(
        storage.localize(geohash_chips), calibration, torch_device.device(), cell_scores(complexity_scores), log=context.log.info
    )
    points = sp.calibration_points(runs, complexity_scores, ndvi_weight=config.ndvi_weight)
    models, metadata = {}, {}
    for mode in calibration.modes:
        fitted = sp.fit_all(points[points["mode"] == mode])
        best = sp.choose_best(fitted, cell_scores(complexity_scores), tuple(config.candidate_sizes))
        best = sp.with_fallback(best, points[points["mode"] == mode], config.error_bound, tuple(config.candidate_sizes))
        models[mode] = best
        if best.fallback_size is not None:
            context.log.warning(
                f"{mode}-band size fit has R^2 {best.skill:.3f} <= {sp.MIN_R2}: no better than a constant, not used; "
                f"every cell gets the measured fallback size {best.fallback_size}"
            )
            metadata[f"fallback_{mode}_band"] = (
                f"fit not used (R^2 {best.skill:.3f} <= {sp.MIN_R2}); measured fallback size {best.fallback_size}: the "
                "smallest calibrated size at which every sampled cell met the error bound"
            )
        metadata[f"r2_{mode}_band"] = _md(sp.r2_table(fitted).reset_index())
        metadata[f"r2_{mode}_band_leave_one_cell_out"] = _md(sp.r2_table(fitted, cross_validated=True).reset_index())
        metadata[f"chosen_{mode}_band"] = f"{best.function} on {best.score} (R^2 {best.r2:.3f}, LOO R^2 {best.cv_r2:.3f})"
        metadata[f"loo_r2_{mode}_band"] = float(best.cv_r2) if np.isfinite(best.cv_r2) else float("nan")
    ablation = sp.ndvi_ablation(runs)
    example = cell_scores(complexity_scores).iloc[0]
    png = sp.loss_curve_png(
        models, {m: float(example[models[m].score]) for m in models}, f"predicted loss, cell {example['geohash']}",
        config.error_bound, tuple(config.candidate_sizes), points=points,
    )  # fmt: skip
    metadata.update(
        {
            "cells": dg.MetadataValue.json(sorted(runs["geohash"].unique().tolist())),
            "points": _md(points),
            "ndvi_term_ablation": _md(ablation) if len(ablation) else "no ablation run",
            "figure_4": dg.MetadataValue.md(f"![predicted loss](data:image/png;base64,{base64.b64encode(png).decode()})"),
        }
    )
    context.add_output_metadata(metadata)
    return {"runs": runs, "points": points, "models": {m: model.to_dict() for m, model in models.items()}}


@dg.asset(
    partitions_def=scene_partitions,
    group_name="embeddings",
    kinds={"python"},
    description="Each cell's embedding size: the smallest candidate size whose loss, predicted from the cell's "
    "complexity by the calibrated model, meets the error bound (per mode); vae_checkpoints reads them from disk.",
)
def embedding_size_predictions(
    context: dg.AssetExecutionContext,
    config: SizeConfig,
    storage: GeoembedStorage,
    embedding_size_calibration: dict,
    complexity_scores: pd.DataFrame,
) -> pd.DataFrame:
    models = {m: sp.SizeModel(**{**p, "coef": tuple(p["coef"])}) for m, p in embedding_size_calibration["models"].items()}
    predictions = sp.predict_cell_sizes(models, cell_scores(complexity_scores), tuple(config.candidate_sizes), config.error_bound)
    keys = context.partition_key.keys_by_dimension
    path = storage.size_predictions_path(keys["region"], keys["month"])
    workflow.write_size_predictions(predictions, path)
    storage.commit(path)
    context.add_output_metadata(
        {
            "error_bound": config.error_bound,
            "path": dg.MetadataValue.path(storage.url(path)),
            "predictions": _md(predictions),
            "size_counts": dg.MetadataValue.json(
                {m: {str(k): int(v) for k, v in g["latent_dim"].value_counts().sort_index().items()} for m, g in predictions.groupby("mode")}
            ),
            "mean_size": float(np.mean(predictions["latent_dim"])),
        }
    )
    return predictions
