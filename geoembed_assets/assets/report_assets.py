"""Storage and rate-distortion report of a scene partition (paper Table 3, measured at equal bytes).

Not part of the `embed_scenes` job: it trains VAEs of several sizes on sampled cells (minutes), so it is
materialized on demand (launchpad, or `benchmarks/storage_report.py` for the same tables on the command line).
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from geoembed_assets.core import storage_report as sr
from geoembed_assets.core.scene import Scene
from geoembed_assets.partitions import scene_partitions
from geoembed_assets.resources import GeoembedStorage, TorchDevice


class StorageReportConfig(dg.Config):
    n_cells: int = 3
    min_coverage: float = 0.99
    multi_sizes: list[int] = list(sr.ReportConfig.multi_sizes)
    single_sizes: list[int] = list(sr.ReportConfig.single_sizes)
    max_epochs: int = sr.ReportConfig.max_epochs
    patience: int = sr.ReportConfig.patience
    base_channels: int = sr.ReportConfig.base_channels
    ndvi_weight: float = sr.ReportConfig.ndvi_weight
    jp2_qualities: list[float] = list(sr.ReportConfig.jp2_qualities)
    seed: int = 0

    def report_config(self) -> sr.ReportConfig:
        return sr.ReportConfig(
            n_cells=self.n_cells, min_coverage=self.min_coverage, multi_sizes=tuple(self.multi_sizes),
            single_sizes=tuple(self.single_sizes), max_epochs=self.max_epochs, patience=self.patience,
            base_channels=self.base_channels, ndvi_weight=self.ndvi_weight, jp2_qualities=tuple(self.jp2_qualities),
            seed=self.seed,
        )  # fmt: skip


@dg.asset(
    partitions_def=scene_partitions,
    group_name="reports",
    kinds={"pytorch", "raster"},
    pool="gpu",
    description="Bytes of the raw scene, chips, embeddings and checkpoints (ratios to raw, with and without "
    "checkpoints), and a rate-distortion table: embeddings at several sizes against block averaging and JPEG2000 "
    "at equal bytes and lossless GeoTIFF, by MSE and NDVI error on each chip's grid.",
)
def storage_report(
    context: dg.AssetExecutionContext,
    config: StorageReportConfig,
    storage: GeoembedStorage,
    torch_device: TorchDevice,
    raw_tiles: list[Scene],
    geohash_chips: pd.DataFrame,
    vae_checkpoints: pd.DataFrame,
    embeddings: Path,
) -> pd.DataFrame:
    month = Path(embeddings).stem.split("-single")[0]
    files = {"multi-band": Path(embeddings).with_name(f"{month}.parquet"),
             "single-band": Path(embeddings).with_name(f"{month}-single.parquet")}  # fmt: skip
    report = sr.build_report(
        geohash_chips, sr.raw_scene_files(raw_tiles), files, storage.checkpoints_dir, config.report_config(),
        vae_checkpoints, torch_device.device(),
    )  # fmt: skip
    fmt = dict(index=False, floatfmt=".4g")
    context.add_output_metadata(
        {
            "storage": dg.MetadataValue.md(report.storage.to_markdown(**fmt)),
            "rate_distortion": dg.MetadataValue.md(report.summary.to_markdown(**fmt)),
            "verdicts": dg.MetadataValue.md(report.verdicts.to_markdown(index=False, floatfmt=".3g")),
            "notes": dg.MetadataValue.md("\n\n".join(report.notes)),
        }
    )
    return report.summary
