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
    description="Held-out reconstruction MSE (reflectance) of every cell's VAE is below the bound.",
)  # fmt: skip
DIMENSION_CHECK = dg.AssetCheckSpec(
    "embedding_dimension_matches", asset="embeddings", blocking=True,
    description="Every embedding is a float32 list as long as the latent size of the checkpoint that made it.",
)  # fmt: skip


def coverage_in_range(chips: pd.DataFrame, min_coverage: float) -> dg.AssetCheckResult:
    cov = chips["coverage"]
    ok = bool(((cov >= 0) & (cov <= 1)).all() and (cov >= min_coverage).all())
    return dg.AssetCheckResult(
        check_name=COVERAGE_CHECK.name, passed=ok, metadata={"min": float(cov.min()), "max": float(cov.max())}
    )


def holdout_mse_below_bound(checkpoints: pd.DataFrame, bound: float) -> dg.AssetCheckResult:
    worst = checkpoints.sort_values("holdout_mse", ascending=False).iloc[0]
    return dg.AssetCheckResult(
        check_name=MSE_CHECK.name,
        passed=bool(checkpoints["holdout_mse"].max() <= bound),
        metadata={"bound": bound, "worst_cell": str(worst["geohash"]), "worst_mse": float(worst["holdout_mse"])},
    )


def embedding_dimension_matches(path: Path, checkpoints: pd.DataFrame) -> dg.AssetCheckResult:
    """Every row's embedding is float32 and as long as the latent size of the checkpoint that made it."""
    field = pq.read_schema(path).field("embedding")
    frame = pq.read_table(path, columns=["checkpoint_id", "embedding"]).to_pandas()
    expected = frame["checkpoint_id"].map(dict(zip(checkpoints["checkpoint_id"], checkpoints["latent_dim"].astype(int))))
    lengths = frame["embedding"].map(len)
    bad = int((lengths != expected).sum())
    return dg.AssetCheckResult(
        check_name=DIMENSION_CHECK.name,
        passed=bad == 0 and str(field.type.value_type) == "float",
        metadata={"column_type": str(field.type), "rows": len(frame), "mismatched_rows": bad,
                  "latent_dims": sorted({int(d) for d in checkpoints["latent_dim"]})},
    )  # fmt: skip
