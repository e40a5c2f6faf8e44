"""Land-cover proportions per cell and k-means clusters of cells: which trained model a new cell starts from."""

import base64
import os
from pathlib import Path

import dagster as dg
import pandas as pd

from geoembed_assets.core import landcover
from geoembed_assets.core.atomic import atomic_path
from geoembed_assets.partitions import scene_partitions
from geoembed_assets.resources import GeoembedStorage

# Folders a class raster may be read from, besides the data dir: os.pathsep-separated.
ROOTS_ENV = "GEOEMBED_LANDCOVER_ROOTS"


class LandcoverConfig(dg.Config):
    class_raster: str = ""  # a GDAL-readable class raster (WorldCover, NLCD, ...); "" = spectral classes only
    class_names: dict[str, str] = {}  # raster class value -> name, e.g. {"80": "water"}; others are class_<v>
    nodata_classes: list[int] = []  # raster values meaning "no class", besides the raster's nodata
    min_raster_coverage: float = 0.5  # a cell less covered by the raster gets spectral classes


class ClustersConfig(dg.Config):
    k: int = 0  # 0: chosen by silhouette over [k_min, k_max]
    k_min: int = 2
    k_max: int = 8
    seed: int = 0


def _keys(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["region"], keys["month"]


def allowed_raster(path: str, data_dir: str | Path) -> Path:
    """The class raster's resolved path, refused (dg.Failure) unless inside the data dir or a root in
    $GEOEMBED_LANDCOVER_ROOTS, and unless it exists."""
    resolved = Path(path).expanduser().resolve()
    roots = [Path(data_dir).resolve()] + [Path(r).resolve() for r in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if r]
    if not any(resolved.is_relative_to(root) for root in roots):
        raise dg.Failure(f"class raster {path} is outside the allowed roots {[str(r) for r in roots]} (set ${ROOTS_ENV})")
    if not resolved.is_file():
        raise dg.Failure(f"class raster {path} does not exist")
    return resolved


def _md(frame: pd.DataFrame, limit: int = 40) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(limit).to_markdown(index=False, floatfmt=".3g"))


def _cluster_map(table: pd.DataFrame) -> dict:
    """`cluster_map`: the cells coloured by land-cover cluster (a broken picture never fails the data)."""
    from geoembed_assets.core import plots

    try:
        png = plots.cell_map(dict(zip(table["geohash"], table["cluster"].astype(float))), "land-cover cluster", "cluster",
                             cmap="tab10")  # fmt: skip
        return {"cluster_map": dg.MetadataValue.md(plots.markdown_image(png, "cells by land-cover cluster"))}
    except Exception as exc:  # noqa: BLE001
        return {"cluster_map_error": dg.MetadataValue.text(f"{type(exc).__name__}: {exc}")}


@dg.asset(
    partitions_def=scene_partitions,
    group_name="landcover",
    kinds={"raster", "parquet"},
    description="Land-cover class proportions of each cell: from the configured class raster where it covers "
    "the cell, else from spectral-index classes of the cell's chips (water, vegetation, bare/built, snow/cloud).",
)
def landcover_proportions(
    context: dg.AssetExecutionContext, config: LandcoverConfig, storage: GeoembedStorage, geohash_chips: pd.DataFrame
) -> pd.DataFrame:
    region, month = _keys(context)
    raster = allowed_raster(config.class_raster, storage.local_dir) if config.class_raster else None
    names = {int(k): v for k, v in config.class_names.items()}
    table = landcover.proportions_table(storage.localize(geohash_chips), raster, names, config.nodata_classes, config.min_raster_coverage)
    path = landcover.proportions_path(storage.local_dir, region, month)
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    storage.commit(path)
    context.add_output_metadata(
        {
            "cells": len(table),
            "sources": dg.MetadataValue.json(table["source"].value_counts().to_dict()),
            "path": storage.url(path),
            "proportions": _md(table),
        }
    )
    return table


@dg.asset(
    partitions_def=scene_partitions,
    group_name="landcover",
    kinds={"scikitlearn", "parquet"},
    deps=[landcover_proportions],
    description="k-means clusters of every cell known so far (all partitions' land-cover proportions on disk), "
    "k configured or chosen by silhouette; the table new cells pick their warm-start donor from.",
)
def landcover_clusters(
    context: dg.AssetExecutionContext, config: ClustersConfig, storage: GeoembedStorage
) -> pd.DataFrame:
    region, month = _keys(context)
    storage.fetch_tree("landcover/proportions")  # every partition's, whichever worker made them
    paths = sorted(storage.path("landcover", "proportions").glob("*/*.parquet"))  # landcover.proportions_path
    proportions = landcover.read_proportions(paths)
    if proportions.empty:
        raise dg.Failure("no land-cover proportions on disk: materialize landcover_proportions first")
    clusters = landcover.cluster_cells(proportions, config.k or None, (config.k_min, config.k_max), config.seed)
    # One snapshot per partition (what this partition's training saw) and the latest for everyone else.
    snapshot = landcover.clusters_path(storage.local_dir, region, month)
    latest = landcover.clusters_path(storage.local_dir)
    for path in (snapshot, latest):
        with atomic_path(path) as tmp:
            clusters.table.to_parquet(tmp, index=False)
    storage.commit(snapshot, latest)
    png = landcover.clusters_png(clusters.table, f"k={clusters.k} ({clusters.chosen_by})")
    scores = pd.DataFrame({"k": list(clusters.silhouette), "silhouette": list(clusters.silhouette.values())})
    context.add_output_metadata(
        {
            "cells": len(clusters.table),
            "k": clusters.k,
            "k_chosen_by": clusters.chosen_by,
            "silhouette_scores": _md(scores) if len(scores) else "none (k given or too few cells)",
            "partitions_read": len(paths),
            "path": storage.url(snapshot),
            "clusters": _md(clusters.table),
            "figure": dg.MetadataValue.md(f"![clusters](data:image/png;base64,{base64.b64encode(png).decode()})"),
            **_cluster_map(clusters.table),
        }
    )
    return clusters.table
