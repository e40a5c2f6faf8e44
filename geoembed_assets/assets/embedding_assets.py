"""The embedding pipeline: raw tiles -> geohash chips -> complexity scores -> VAE checkpoints -> embeddings."""


import dagster as dg
import pandas as pd

from geoembed_assets.assets import checks, pictures
from geoembed_assets.assets.config import ChipsConfig, VAEConfig
from geoembed_assets.assets.config_validation import validate_run_config
from geoembed_assets.core import landcover, plots, workflow
from geoembed_assets.core import storage_report as sr
from geoembed_assets.core.previews import markdown_image, rate_distortion_png
from geoembed_assets.core.quality import quality_by_cover
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
    validate_run_config(context.run_config)  # every step's settings, before any work
    if storage.remote:
        storage.sync_landing()  # deliveries may be uploaded to the store's landing/ folder
    found = workflow.landing_report(storage.landing_dir, region, month, config.precision)
    scenes, rejected, duplicates = found.scenes, found.rejected, found.duplicates
    for entry, error in rejected.items():
        context.log.warning(f"rejected landing entry {entry}: {error}")
    if not scenes:  # names every delivery: rejected ones with their error, others with the partition they belong to
        raise dg.Failure(found.no_scene_message(storage.landing_dir, region, month))
    first = scenes[0]
    context.add_output_metadata(
        {
            "scenes": _md_table(pd.DataFrame([s.to_metadata() for s in scenes]).drop(columns=["footprint_wkt"])),
            "sensor": first.sensor,
            "acquired": first.datetime.isoformat(),
            "crs": first.crs,
            "bands": dg.MetadataValue.json({b.name: b.resolution_m for b in first.bands}),
            "cloud_cover": first.cloud_cover if first.cloud_cover is not None else "unknown",
            "duplicate_deliveries": dg.MetadataValue.json(duplicates),
            "rejected_entries": dg.MetadataValue.json(rejected),
            **pictures.scene_pictures(scenes, config.precision),
        }
    )
    return storage.portable_scenes(scenes)  # band files in the scratch's landing/ named by their store URL


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
    index_file = storage.chips_dir / region / f"index_{month}.parquet"
    storage.fetch(index_file)  # the partition's previous chip set, whose chips a new set replaces
    index = workflow.chip_partition(
        storage.local_scenes(raw_tiles), region, month, storage.chips_dir, config.precision, config.cell_size_px,
        config.min_coverage, stored_path=storage.store.to_store, local_path=storage.store.to_local,
    )  # fmt: skip
    local_index = storage.localize(index)
    storage.commit(*local_index["path"], index_file)
    storage.remove(*index.attrs.get("removed", []))  # the partition's previous chips this set replaced
    for warning in index.attrs.get("warnings", []):  # skipped cells (coverage, constant, saturated), negatives
        context.log.warning(warning)
    yield dg.Output(
        index,
        metadata={
            "cells": index["geohash"].nunique(),
            "chips": len(index),
            "chip_bytes": int(index["bytes"].sum()),
            "mean_coverage": float(index["coverage"].mean()),
            "skipped_cells": dg.MetadataValue.json(index.attrs.get("skipped", [])),
            "index": _md_table(index[["geohash", "scene_id", "coverage", "bytes", "path"]]),
            **pictures.chip_pictures(local_index),
        },
    )
    yield checks.coverage_in_range(index, config.min_coverage)


@dg.asset(
    partitions_def=scene_partitions,
    group_name="embeddings",
    kinds={"scikitlearn"},
    description="Complexity of each chip: gzip ratio, linear and kernel PCA components at 95 % variance.",
)
def complexity_scores(
    context: dg.AssetExecutionContext, config: VAEConfig, storage: GeoembedStorage, geohash_chips: pd.DataFrame
) -> pd.DataFrame:
    scores = workflow.score_partition(storage.localize(geohash_chips), config.training_config().patch_size, log=context.log.info)
    context.add_output_metadata({"scores": _md_table(scores)})
    return scores


@dg.asset(
    partitions_def=scene_partitions,
    group_name="embeddings",
    kinds={"pytorch"},
    check_specs=[checks.MSE_CHECK],
    # read from disk when present: predicted sizes (scope "cell") and land-cover clusters (which model to start from)
    deps=[dg.AssetKey("embedding_size_predictions"), dg.AssetKey("landcover_clusters")],
    pool="gpu",
    op_tags=GPU_TAGS,
    description="Convolutional VAEs (spatial latent grid by default; the paper's flat VAE selectable): one model "
    "shared by the region's cells, reused while it meets the quality target on new scenes and retrained from its "
    "current version when it does not; reconstruction + KL + NDVI loss; state_dict + config, scored on held-out "
    "patches.",
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
    training = config.training_config()
    chips = storage.localize(geohash_chips)
    clusters_file = landcover.clusters_path(storage.local_dir, region, month)
    storage.fetch(storage.size_predictions_path(region, month), clusters_file)  # optional inputs, when on the store
    storage.fetch_tree("checkpoints")  # the region's current model and the donors a new region may start from
    sizes = None
    if config.scope == "cell" and config.latent_dim_from_predictions:
        sizes = workflow.read_size_predictions(storage.size_predictions_path(region, month), config.mode)
        context.log.info(f"embedding sizes from predictions: {sizes}" if sizes else "no size predictions: latent_dim")
    target = thresholds.target()
    clusters = pd.read_parquet(clusters_file) if clusters_file.exists() else None
    checkpoints = workflow.train_partition(
        chips, storage.checkpoints_dir, training, device, warm_start=config.warm_start, mode=config.mode,
        latent_dims=sizes, scope=config.scope, region=region, max_mse=target.max_mse, progress=context.log.info,
        clusters=clusters, retrain=config.retrain,
    )  # fmt: skip
    models = checkpoints.drop_duplicates("checkpoint_id")
    storage.commit(*models["path"])  # new versions; reused ones are unchanged and not uploaded again
    yield dg.Output(
        storage.portable(checkpoints),  # paths any worker resolves (store URLs when data_dir is one)
        metadata={
            "device": device,
            "cells": int(checkpoints["geohash"].nunique()),
            "models": len(models),
            "actions": dg.MetadataValue.json(models["action"].value_counts().to_dict()),
            "started_from": dg.MetadataValue.json(dict(zip(models["checkpoint_id"], models["start"] + models["donor"].map(lambda d: f" ({d})" if isinstance(d, str) else "")))),
            "epochs": dg.MetadataValue.json(dict(zip(models["checkpoint_id"], models["epochs"].astype(int)))),
            "architecture": config.architecture,
            "scope": config.scope,
            "mode": config.mode,
            "latent_dims": dg.MetadataValue.json(sorted({int(d) for d in checkpoints["latent_dim"]})),
            "checkpoint_bytes": int(models["checkpoint_bytes"].sum()),
            "mean_holdout_mse": float(models["holdout_mse"].mean()),
            "max_holdout_mse": float(models["holdout_mse"].max()),
            "stopped_at_epoch_cap": dg.MetadataValue.json(
                models.loc[models["epochs"] >= models["max_epochs"], "checkpoint_id"].tolist()
            ),
            "checkpoints": _md_table(models.drop(columns=["path", "geohash"])),
            **pictures.checkpoint_pictures(checkpoints, config.training_config().max_epochs),
        },
    )
    yield checks.holdout_mse_below_bound(models, target.max_mse)


@dg.asset(
    partitions_def=scene_partitions,
    group_name="embeddings",
    kinds={"pytorch", "parquet"},
    check_specs=[checks.DIMENSION_CHECK, checks.QUALITY_CHECK],
    pool="gpu",
    op_tags=GPU_TAGS,
    description="GeoParquet, one row per cell and acquisition: the int8 latent grid with its per-channel scales, "
    "the validity mask, reconstruction RMSE and NDVI error, land/water cover and the checkpoint that decodes it. "
    "Shows land and water cells beside their reconstructions.",
)
def embeddings(
    context: dg.AssetExecutionContext,
    config: VAEConfig,
    storage: GeoembedStorage,
    thresholds: QualityThresholds,
    geohash_chips: pd.DataFrame,
    vae_checkpoints: pd.DataFrame,
):
    region, month = _keys(context)
    geohash_chips, vae_checkpoints = storage.localize(geohash_chips), storage.localize(vae_checkpoints)  # fetched
    path, frame = workflow.embed_partition(
        geohash_chips, vae_checkpoints, region, month, storage.embeddings_dir, mode=config.mode,
        refine_steps=config.refine_steps if config.architecture == "spatial" else 0, progress=context.log.info,
    )  # fmt: skip
    nbytes = path.stat().st_size
    chip_raw = workflow.raw_chip_bytes(geohash_chips)
    ckpt_bytes = int(vae_checkpoints.drop_duplicates("checkpoint_id")["checkpoint_bytes"].sum())
    target = thresholds.target()
    storage.commit(path)
    metadata = {
        "path": dg.MetadataValue.path(storage.url(path)),
        "rows": len(frame),
        "embedding_bytes": nbytes,
        "bytes_per_cell": nbytes / max(len(frame), 1),
        "ratio_vs_uint16_chips": chip_raw / nbytes,
        "ratio_vs_uint16_chips_with_checkpoints": chip_raw / (nbytes + ckpt_bytes),
        "mode": config.mode,
        "mean_recon_mse": float(frame["recon_mse"].mean()),
        "mean_land_mse": float(frame.loc[frame["cover"] == "land", "recon_mse"].mean()) if (frame["cover"] == "land").any() else 0.0,
        "quality_target": f"land cells: RMSE <= {target.max_rmse} (MSE {target.max_mse:.2e}, PSNR "
        f"{target.psnr_db():.1f} dB), NDVI MAE <= {target.max_ndvi_mae}",
        "quality_by_cover": _md_table(quality_by_cover(frame)),
        "cells": _md_table(frame[["geohash", "cover", "water_fraction", "valid_fraction", "recon_rmse", "ndvi_mae",
                                  "checkpoint_id"]], limit=100),  # fmt: skip
    }
    if config.mode == "multi":
        rmse = dict(zip(frame["geohash"], frame["recon_rmse"].astype(float)))
        metadata.update(pictures._picture(
            "rmse_map", lambda: plots.cell_map(rmse, "reconstruction RMSE (reflectance)", "RMSE", cmap="magma_r"),
            "cells coloured by reconstruction RMSE",
        ))  # fmt: skip
        shown = workflow.preview_decodes(geohash_chips, frame, storage.checkpoints_dir)  # read and decoded once
        metadata["reconstructions"] = dg.MetadataValue.md(workflow.reconstruction_preview(shown))
        curve = sr.quick_rate_distortion(shown, nbytes / max(len(frame), 1))
        metadata["rate_distortion"] = dg.MetadataValue.md(
            markdown_image(rate_distortion_png(sr.curve(curve), f"{region} {month}: shown cells"), "rate-distortion")
            + "\n\nPipeline embeddings as stored against block averaging and JPEG2000 on the cells shown above; "
            "the full curve (several embedding rates, every cell) is the `storage_report` asset."
        )
    yield dg.Output(storage.stored(path), metadata=metadata)
    yield checks.embedding_dimension_matches(path, vae_checkpoints)
    yield checks.quality_target_met(frame, target)
