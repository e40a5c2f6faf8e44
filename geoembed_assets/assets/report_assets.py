"""Storage and rate-distortion report of a scene partition (paper Table 3, measured at equal bytes).

Not part of the `embed_scenes` job: it trains VAEs of several sizes on sampled cells (minutes), so it is
materialized on demand (launchpad, or `benchmarks/storage_report.py` for the same tables on the command line).
"""

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from geoembed_assets.core import storage_report as sr
from geoembed_assets.core.previews import markdown_image
from geoembed_assets.core.scene import Scene
from geoembed_assets.partitions import scene_partitions
from geoembed_assets.resources import GeoembedStorage, TorchDevice


class StorageReportConfig(dg.Config):
    n_cells: int = 0  # 0: every well-covered cell
    min_coverage: float = 0.99
    rates: list[list[int]] = [list(r) for r in sr.RATE_SETTINGS]  # (depth, latent channels) per rate setting
    max_steps: int = sr.ReportConfig.max_steps
    base_channels: int = sr.ReportConfig.base_channels
    refine_steps: int = sr.ReportConfig.refine_steps
    ndvi_weight: float = sr.ReportConfig.ndvi_weight
    jp2_qualities: list[float] = list(sr.ReportConfig.jp2_qualities)
    seed: int = 0

    def report_config(self) -> sr.ReportConfig:
        return sr.ReportConfig(
            n_cells=self.n_cells, min_coverage=self.min_coverage, rates=tuple(tuple(r) for r in self.rates),
            max_steps=self.max_steps, base_channels=self.base_channels, refine_steps=self.refine_steps,
            ndvi_weight=self.ndvi_weight, jp2_qualities=tuple(self.jp2_qualities), seed=self.seed,
        )  # fmt: skip


@dg.asset(
    partitions_def=scene_partitions,
    group_name="reports",
    kinds={"pytorch", "raster"},
    pool="gpu",
    description="Bytes of the raw scene, chips, embeddings and checkpoints (ratios with and without checkpoints), "
    "and rate-distortion per cell and cover: the pipeline's embeddings and spatial VAEs at several rates (100x to "
    "10,000x) against block averaging and JPEG2000 at equal bytes, by MSE and NDVI error, with a plot.",
)
def storage_report(
    context: dg.AssetExecutionContext,
    config: StorageReportConfig,
    storage: GeoembedStorage,
    torch_device: TorchDevice,
    raw_tiles: list[Scene],
    geohash_chips: pd.DataFrame,
    embeddings: Any,  # a Path, or a UPath on the store
) -> pd.DataFrame:
    month = Path(str(embeddings)).stem.split("-single")[0]
    files = {"multi-band": f"{month}.parquet", "single-band": f"{month}-single.parquet"}
    files = {k: storage.local(str(embeddings).rsplit("/", 1)[0] + "/" + name) for k, name in files.items()}  # fetched
    storage.fetch_tree("checkpoints")  # the models the rows name
    report = sr.build_report(
        storage.localize(geohash_chips), sr.raw_scene_files(storage.local_scenes(raw_tiles)), files, storage.checkpoints_dir, config.report_config(),
        torch_device.device(), progress=context.log.info,
    )  # fmt: skip
    fmt = dict(index=False, floatfmt=".4g")
    png = report.plot(f"partition {context.partition_key}")
    context.add_output_metadata(
        {
            "storage": dg.MetadataValue.md(report.storage.to_markdown(**fmt)),
            "comparison": dg.MetadataValue.md(report.comparison.to_markdown(**fmt)),
            "rate_distortion_plot": dg.MetadataValue.md(markdown_image(png, "rate-distortion")),
            "notes": dg.MetadataValue.md("\n\n".join(report.notes)),
        }
    )
    return report.comparison
