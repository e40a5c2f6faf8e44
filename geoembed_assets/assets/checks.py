"""Blocking asset checks, evaluated inside the asset on the partition just produced (so they are partition-aware)."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

COVERAGE_CHECK = dg.AssetCheckSpec(
    "coverage_in_range", asset="geohash_chips", blocking=True,
    description="Coverage of every chip is in [0, 1] and meets the configured minimum.",
)  # fmt: skip
MSE_CHECK = dg.AssetCheckSpec(
    "holdout_mse_below_bound", asset="vae_checkpoints", blocking=True,
    description="Held-out reconstruction MSE (reflectance) of every model is below the quality target's MSE.",
)  # fmt: skip
DIMENSION_CHECK = dg.AssetCheckSpec(
    "embedding_dimension_matches", asset="embeddings", blocking=True,
    description="Every embedding is an int8 latent grid whose channels match the checkpoint that made it.",
)  # fmt: skip
QUALITY_CHECK = dg.AssetCheckSpec(
    "quality_target_met", asset="embeddings", blocking=False,
    description="Every land cell decodes within the quality target (reflectance RMSE and NDVI MAE).",
)  # fmt: skip


def coverage_in_range(chips: pd.DataFrame, min_coverage: float) -> dg.AssetCheckResult:
    cov = chips["coverage"]
    ok = bool(((cov >= 0) & (cov <= 1)).all() and (cov >= min_coverage).all())
    return dg.AssetCheckResult(
        check_name=COVERAGE_CHECK.name, passed=ok, metadata={"min": float(cov.min()), "max": float(cov.max())}
    )


def holdout_mse_below_bound(checkpoints: pd.DataFrame, bound: float) -> dg.AssetCheckResult:
    worst = checkpoints.sort_values("holdout_mse", ascending=False).iloc[0]  # one row per model
    return dg.AssetCheckResult(
        check_name=MSE_CHECK.name,
        passed=bool(checkpoints["holdout_mse"].max() <= bound),
        metadata={"bound": bound, "worst_cell": str(worst["geohash"]), "worst_mse": float(worst["holdout_mse"])},
    )


def embedding_dimension_matches(path: Path, checkpoints: pd.DataFrame) -> dg.AssetCheckResult:
    """Every row's embedding is int8, holds channels x height x width values, and its channels are the latent
    size of the checkpoint that made it."""
    field = pq.read_schema(path).field("embedding")
    frame = pq.read_table(path, columns=["checkpoint_id", "embedding", "latent_channels", "latent_height", "latent_width"]).to_pandas()
    expected = frame["checkpoint_id"].map(dict(zip(checkpoints["checkpoint_id"], checkpoints["latent_dim"].astype(int))))
    lengths = frame["embedding"].map(len)
    shape_size = frame["latent_channels"].astype(int) * frame["latent_height"].astype(int) * frame["latent_width"].astype(int)
    bad = int(((lengths != shape_size) | (frame["latent_channels"] != expected)).sum())
    return dg.AssetCheckResult(
        check_name=DIMENSION_CHECK.name,
        passed=bad == 0 and str(field.type.value_type) == "int8",
        metadata={"column_type": str(field.type), "rows": len(frame), "mismatched_rows": bad,
                  "latent_dims": sorted({int(d) for d in checkpoints["latent_dim"]})},
    )  # fmt: skip


def quality_target_met(rows: pd.DataFrame, target) -> dg.AssetCheckResult:
    failing = target.failing_cells(rows)
    return dg.AssetCheckResult(
        check_name=QUALITY_CHECK.name,
        passed=failing.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "max_rmse": target.max_rmse, "max_ndvi_mae": target.max_ndvi_mae,
            "land_cells": int((rows["cover"] == "land").sum()),
            "failing_cells": dg.MetadataValue.json(failing["geohash"].tolist()),
            "worst_land_rmse": float(rows.loc[rows["cover"] == "land", "recon_rmse"].max()) if (rows["cover"] == "land").any() else 0.0,
        },
    )  # fmt: skip
