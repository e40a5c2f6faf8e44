"""The embedding pipeline: raw tiles -> geohash chips -> complexity scores -> VAE checkpoints -> embeddings."""


import dagster as dg
import pandas as pd

from geoembed_assets.assets import checks
from geoembed_assets.assets.config import ChipsConfig, VAEConfig
from geoembed_assets.core import workflow
from geoembed_assets.core.scene import Scene
from geoembed_assets.partitions import scene_partitions
from geoembed_assets.resources import GeoembedStorage, QualityThresholds, TorchDevice

# Assets that run networks go to the "gpu" pool and ask Kubernetes for a GPU when run by the k8s executor.
GPU_TAGS = {
    "dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}},
    "geoembed/accelerator": "cuda",
    "dagster-celery/queue": "gpu",  # the Celery executor ignores pools: GPU steps go to workers on the `gpu` queue
}


def _keys(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["region"], keys["month"]


def _md_table(frame: pd.DataFrame, limit: int = 40) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(limit).to_markdown(index=False, floatfmt=".5g"))


@dg.asset(
    partitions_def=scene_partitions,
    group_name="ingest",
    kinds={"raster", "python"},
    description="Scenes registered from the landing folder that were acquired in the month and touch the region.",
)
def raw_tiles(context: dg.AssetExecutionContext, config: ChipsConfig, storage: GeoembedStorage) -> list[Scene]:
    region, month = _keys(context)
    scenes, rejected, duplicates = workflow.find_scenes(storage.landing_dir, region, month, config.precision)
    for entry, error in rejected.items():
        context.log.warning(f"rejected landing entry {entry}: {error}")
    if not scenes:
        detail = "".join(f"\n- {e}: {err}" for e, err in rejected.items())
        raise dg.Failure(f"no readable scene in {storage.landing_dir} for region {region}, month {month}{detail}")
    first = scenes[0]
    context.add_output_metadata(
        {
            "scenes": _md_table(pd.DataFrame([s.to_metadata() for s in scenes]).drop(columns=["footprint_wkt"])),
            "sensor": first.sensor,
            "acquired": first.datetime.isoformat(),
            "crs": first.crs,
            "footprint_wkt": first.footprint_wkt,
            "bands": dg.MetadataValue.json({b.name: b.resolution_m for b in first.bands}),
            "cloud_cover": first.cloud_cover if first.cloud_cover is not None else "unknown",
            "duplicate_deliveries": dg.MetadataValue.json(duplicates),
            "rejected_entries": dg.MetadataValue.json(rejected),
        }
    )
    return scenes


@dg.asset(
    partitions_def=scene_partitions,
    group_name="chips",
    kinds={"geotiff", "parquet"},
    check_specs=[checks.COVERAGE_CHECK],
    description="Each scene cut along geohash cells, all bands aligned on one EPSG:4326 grid per cell "
    "(ZSTD GeoTIFF chips plus a chip index).",
)
def geohash_chips(
    context: dg.AssetExecutionContext, config: ChipsConfig, storage: GeoembedStorage, raw_tiles: list[Scene]
):
    region, month = _keys(context)
    index = workflow.chip_partition(
        raw_tiles, region, month, storage.chips_dir, config.precision, config.cell_size_px, config.min_coverage
    )
    yield dg.Output(
        index,
        metadata={
            "cells": index["geohash"].nunique(),
            "chips": len(index),
            "chip_bytes": int(index["bytes"].sum()),
            "mean_coverage": float(index["coverage"].mean()),
            "index": _md_table(index[["geohash", "scene_id", "coverage", "bytes", "path"]]),
        },
    )
    yield checks.coverage_in_range(index, config.min_coverage)


@dg.asset(
    partitions_def=scene_partitions,
    group_name="embeddings",
    kinds={"scikitlearn"},
    description="Complexity of each chip: gzip ratio, linear and kernel PCA components at 95 % variance.",
)
def complexity_scores(context: dg.AssetExecutionContext, config: VAEConfig, geohash_chips: pd.DataFrame) -> pd.DataFrame:
    scores = workflow.score_partition(geohash_chips, config.patch_size)
    context.add_output_metadata({"scores": _md_table(scores)})
    return scores


@dg.asset(
    partitions_def=scene_partitions,
    group_name="embeddings",
    kinds={"pytorch"},
    check_specs=[checks.MSE_CHECK],
    deps=[dg.AssetKey("embedding_size_predictions")],  # read from disk when present (config switch), else latent_dim
    pool="gpu",
    op_tags=GPU_TAGS,
    description="One convolutional VAE per cell (reconstruction + KL + NDVI loss, early stopping), saved as a "
    "state_dict with its config; scored on patches held out from training.",
)
def vae_checkpoints(
    context: dg.AssetExecutionContext,
    config: VAEConfig,
    storage: GeoembedStorage,
    torch_device: TorchDevice,
    thresholds: QualityThresholds,
    geohash_chips: pd.DataFrame,
):
    device = torch_device.device()
    region, month = _keys(context)
    sizes = None
    if config.latent_dim_from_predictions:
        sizes = workflow.read_size_predictions(storage.size_predictions_path(region, month), config.mode)
        context.log.info(f"embedding sizes from predictions: {sizes}" if sizes else "no size predictions: latent_dim")
    checkpoints = workflow.train_partition(
        geohash_chips, storage.checkpoints_dir, config.training_config(), device, warm_start=config.warm_start,
        mode=config.mode, latent_dims=sizes,
    )  # fmt: skip
    yield dg.Output(
        checkpoints,
        metadata={
            "device": device,
            "cells": len(checkpoints),
            "mode": config.mode,
            "latent_dims": dg.MetadataValue.json(sorted({int(d) for d in checkpoints["latent_dim"]})),
            "mean_holdout_mse": float(checkpoints["holdout_mse"].mean()),
            "max_holdout_mse": float(checkpoints["holdout_mse"].max()),
            "checkpoints": _md_table(checkpoints.drop(columns=["path"])),
        },
    )
    yield checks.holdout_mse_below_bound(checkpoints, thresholds.max_holdout_mse)


@dg.asset(
    partitions_def=scene_partitions,
    group_name="embeddings",
    kinds={"pytorch", "parquet"},
    check_specs=[checks.DIMENSION_CHECK],
    pool="gpu",
    op_tags=GPU_TAGS,
    description="GeoParquet of latent means: one row per patch of a cell and acquisition, naming the checkpoint "
    "that made it and its reconstruction MSE.",
)
def embeddings(
    context: dg.AssetExecutionContext,
    config: VAEConfig,
    storage: GeoembedStorage,
    geohash_chips: pd.DataFrame,
    vae_checkpoints: pd.DataFrame,
):
    region, month = _keys(context)
    path, frame = workflow.embed_partition(
        geohash_chips, vae_checkpoints, region, month, storage.embeddings_dir, mode=config.mode
    )
    yield dg.Output(
        path,
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "rows": len(frame),
            "embedding_dim": max(len(e) for e in frame["embedding"]),
            "embedding_dims": dg.MetadataValue.json(sorted({len(e) for e in frame["embedding"]})),
            "mode": config.mode,
            "embedding_bytes": path.stat().st_size,
            "mean_recon_mse": float(frame["recon_mse"].mean()),
        },
    )
    yield checks.embedding_dimension_matches(path, vae_checkpoints)
