"""Land-cover class proportions per geohash cell, k-means clusters of cells, and the donor a new cell warm-starts from.

Paper section 3.4 (Figure 5): cells with similar land-cover proportions have similar features, so a new cell's
VAE converges faster when it starts from a trained model of a cell of the same land-cover cluster.

Two sources of proportions:
- a class raster given by configuration (ESA WorldCover, NLCD, any GDAL-readable categorical raster in any CRS),
  read through a window around the cell and resampled onto the cell's grid (`geohash_grid.cell_grid`);
- where no class raster covers the cell, spectral-index classes computed from the cell's own chip (see
  `spectral_classes`), so the method works anywhere Sentinel-2 or Landsat imagery exists.

Proportions are fractions of the cell's classified pixels (no-data excluded); each table row says its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import WindowError
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from geoembed_assets.core.geohash_grid import CellGrid, cell_grid
from geoembed_assets.core.indices import roles_for

SPECTRAL_SOURCE = "spectral"
NO_CLASS = -1  # class code of pixels without a class (no data, outside the raster)

# Spectral classes, in the order the rules are applied (first match wins).
SPECTRAL_CLASSES: tuple[str, ...] = ("snow_cloud", "water", "dense_vegetation", "sparse_vegetation", "bare_built", "other")
BRIGHTNESS_MIN = 0.3  # mean visible reflectance above which a pixel is snow or cloud
NDSI_SNOW_MIN, NIR_SNOW_MIN = 0.4, 0.11  # Hall et al. 1995 / Dozier 1989 snow test
NDWI_WATER_MIN = 0.0  # McFeeters 1996
NDVI_DENSE_MIN, NDVI_SPARSE_MIN = 0.6, 0.2  # USGS NDVI ranges (shrub/grass ~0.2-0.3, forest 0.6-0.8)
NDBI_BUILT_MIN = 0.0  # Zha, Gao & Ni 2003

# Blue is not one of the index roles (indices.BAND_ROLES); it only serves the brightness test here.
_BLUE = {"sentinel-2": "B02", "landsat-8": "B2"}


@dataclass(frozen=True)
class CellProportions:
    """Land-cover class fractions of one cell; `proportions` sums to 1 over classified pixels."""

    geohash: str
    source: str  # the class raster's file name, or "spectral"
    proportions: dict[str, float]
    valid_fraction: float  # share of the cell's pixels that got a class
    n_pixels: int  # classified pixels counted

    def row(self) -> dict:
        return dict(geohash=self.geohash, source=self.source, valid_fraction=self.valid_fraction,
                    n_pixels=self.n_pixels, **self.proportions)  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# (a) class raster


def raster_class_grid(
    raster: str | Path,
    grid: CellGrid,
    nodata: Sequence[int] = (),
    resampling: Resampling | None = None,
) -> np.ndarray | None:
    """Class codes of a categorical raster on the cell's grid, (height, width) int32, NO_CLASS where none.

    Only the window of the raster around the cell is read (plus a margin of two source pixels). The raster's
    own nodata value and `nodata` are no class. Resampling defaults to nearest when the raster's pixels are at
    least as large as the cell's and to mode (majority) when they are finer. None when the raster does not
    overlap the cell.
    """
    with rasterio.open(raster) as src:
        west, south, east, north = transform_bounds("EPSG:4326", src.crs, *grid.bounds, densify_pts=21)
        full = Window(0, 0, src.width, src.height)
        w = from_bounds(west, south, east, north, src.transform)
        col0, row0 = math.floor(w.col_off) - 2, math.floor(w.row_off) - 2
        col1, row1 = math.ceil(w.col_off + w.width) + 2, math.ceil(w.row_off + w.height) + 2
        try:
            window = Window(col0, row0, col1 - col0, row1 - row0).intersection(full)
        except WindowError:  # no overlap
            return None
        if window.width <= 0 or window.height <= 0:
            return None
        data = src.read(1, window=window).astype(np.int32)
        src_nodata = src.nodata
        src_transform = src.window_transform(window)
        src_crs = src.crs
        src_res = (abs(src.transform.a) + abs(src.transform.e)) / 2
    invalid = np.isin(data, np.asarray(list(nodata), dtype=np.int32)) if len(nodata) else np.zeros(data.shape, bool)
    if src_nodata is not None and not math.isnan(src_nodata):
        invalid |= data == int(src_nodata)
    data[invalid] = NO_CLASS
    if resampling is None:
        # Cell pixel size in the raster's units: compare along the cell's diagonal in the raster CRS.
        cell_res = math.hypot(east - west, north - south) / math.hypot(grid.width, grid.height)
        resampling = Resampling.mode if src_res < cell_res / 1.5 else Resampling.nearest
    out = np.full((grid.height, grid.width), NO_CLASS, dtype=np.int32)
    reproject(
        data, out, src_transform=src_transform, src_crs=src_crs, src_nodata=NO_CLASS,
        dst_transform=grid.transform, dst_crs="EPSG:4326", dst_nodata=NO_CLASS, resampling=resampling,
    )  # fmt: skip
    return out


def class_counts(classes: np.ndarray, names: Mapping[int, str] | None = None) -> dict[str, int]:
    """Pixel count per class name of a class-code array (NO_CLASS left out); `names` maps codes to names
    (several codes may share a name), unnamed codes are called `class_<code>`."""
    codes, counts = np.unique(classes[classes != NO_CLASS], return_counts=True)
    out: dict[str, int] = {}
    for code, count in zip(codes.tolist(), counts.tolist()):
        name = (names or {}).get(int(code), f"class_{int(code)}")
        out[name] = out.get(name, 0) + int(count)
    return out


def _proportions(geohash: str, source: str, counts: dict[str, int], n_cell: int) -> CellProportions:
    total = sum(counts.values())
    props = {k: v / total for k, v in sorted(counts.items())} if total else {}
    return CellProportions(geohash, source, props, total / n_cell if n_cell else 0.0, total)


def raster_proportions(
    raster: str | Path,
    grid: CellGrid,
    class_names: Mapping[int, str] | None = None,
    nodata: Sequence[int] = (),
    min_valid: float = 0.5,
) -> CellProportions | None:
    """Class proportions of a cell from a class raster; None when it covers less than `min_valid` of the cell."""
    classes = raster_class_grid(raster, grid, nodata)
    if classes is None:
        return None
    props = _proportions(grid.geohash, Path(raster).name, class_counts(classes, class_names), classes.size)
    return props if props.valid_fraction >= min_valid and props.n_pixels else None


# --------------------------------------------------------------------------------------------------------------
# (b) spectral-index classes


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a - b) / (a + b)


def spectral_classes(refl: np.ndarray, band_names: Sequence[str], sensor: str) -> np.ndarray:
    """Per-pixel class codes (indices into SPECTRAL_CLASSES, NO_CLASS for no data) from reflectance (B, H, W).

    Rules, applied in this order (first match wins), on top-of-atmosphere or surface reflectance in [0, 1]:
    1. snow_cloud: mean visible reflectance (blue, green, red) > 0.3 (an empirical brightness threshold chosen
       here: clouds and snow are the only common surfaces that bright in the visible), or the snow test of
       Hall et al. 1995 (MODIS snow algorithm, after Dozier 1989): NDSI = (green - swir1) / (green + swir1) > 0.4
       and NIR > 0.11.
    2. water: NDWI = (green - nir) / (green + nir) > 0 (McFeeters 1996, Int. J. Remote Sensing 17(7)).
    3. dense_vegetation: NDVI = (nir - red) / (nir + red) > 0.6; 4. sparse_vegetation: 0.2 < NDVI <= 0.6
       (Rouse et al. 1974; the ranges are the USGS ones: shrub and grassland about 0.2-0.3, temperate and
       tropical forests 0.6-0.8, bare rock and sand 0.1 or less).
    5. bare_built: NDBI = (swir1 - nir) / (swir1 + nir) > 0 (Zha, Gao & Ni 2003, Int. J. Remote Sensing 24(3)):
       built-up land and bare soil, which the index does not separate.
    6. other: the rest (dark soil, shadow, wetland, senescent vegetation).
    Green, red and NIR are required; without SWIR1 the NDSI and NDBI rules are skipped, without blue the
    brightness is the mean of green and red. Bands are found by role (indices.BAND_ROLES) for the sensor.
    """
    roles = dict(roles_for(sensor))
    for family, blue in _BLUE.items():
        if sensor.startswith(family):
            roles["blue"] = blue
    names = list(band_names)
    band = {role: refl[names.index(name)] for role, name in roles.items() if name in names}
    missing = [r for r in ("green", "red", "nir") if r not in band]
    if missing:
        raise ValueError(f"spectral classes need the {missing} band(s) of sensor {sensor!r}; bands are {names}")
    valid = ~np.isnan(refl).any(axis=0)
    visible = [band[r] for r in ("blue", "green", "red") if r in band]
    brightness = np.mean(visible, axis=0)
    ndvi, ndwi = _nd(band["nir"], band["red"]), _nd(band["green"], band["nir"])
    rules = {
        "snow_cloud": brightness > BRIGHTNESS_MIN,
        "water": ndwi > NDWI_WATER_MIN,
        "dense_vegetation": ndvi > NDVI_DENSE_MIN,
        "sparse_vegetation": ndvi > NDVI_SPARSE_MIN,
        "bare_built": np.zeros(valid.shape, bool),
    }
    if "swir1" in band:
        ndsi, ndbi = _nd(band["green"], band["swir1"]), _nd(band["swir1"], band["nir"])
        rules["snow_cloud"] |= (ndsi > NDSI_SNOW_MIN) & (band["nir"] > NIR_SNOW_MIN)
        rules["bare_built"] = ndbi > NDBI_BUILT_MIN
    out = np.full(valid.shape, SPECTRAL_CLASSES.index("other"), dtype=np.int32)
    for name in reversed(SPECTRAL_CLASSES[:-1]):  # the first rule is written last, so it wins
        out[rules[name]] = SPECTRAL_CLASSES.index(name)
    out[~valid] = NO_CLASS
    return out


def spectral_proportions(refl: np.ndarray, band_names: Sequence[str], sensor: str, geohash: str) -> CellProportions:
    """Spectral-class proportions of one chip; every class of SPECTRAL_CLASSES is present (0 when absent)."""
    classes = spectral_classes(refl, band_names, sensor)
    counts = {name: 0 for name in SPECTRAL_CLASSES}
    counts.update(class_counts(classes, dict(enumerate(SPECTRAL_CLASSES))))
    return _proportions(geohash, SPECTRAL_SOURCE, counts, classes.size)


# --------------------------------------------------------------------------------------------------------------
# a partition's table


def proportions_table(
    chips: pd.DataFrame,
    class_raster: str | Path | None = None,
    class_names: Mapping[int, str] | None = None,
    nodata: Sequence[int] = (),
    min_valid: float = 0.5,
) -> pd.DataFrame:
    """One row per cell of a chip index: geohash, source, valid_fraction, n_pixels and one column per class.

    The class raster is used where it covers at least `min_valid` of the cell; elsewhere the cell's chips are
    classified spectrally and their counts pooled over the cell's acquisitions. Class columns missing for a
    source are 0 (a cell with a raster source has no spectral classes and the other way round).
    """
    from geoembed_assets.core.chipping import read_chip  # chipping imports torch; keep this module light

    rows = []
    for geohash, cell_chips in chips.groupby("geohash", sort=True):
        props = None
        if class_raster:
            grid = cell_grid(str(geohash), int(cell_chips["size_px"].iloc[0]))
            props = raster_proportions(class_raster, grid, class_names, nodata, min_valid)
        if props is None:
            counts = {name: 0 for name in SPECTRAL_CLASSES}
            n_cell = 0
            for chip in cell_chips.itertuples():
                refl, bands, grid = read_chip(chip.path)
                codes = spectral_classes(refl, bands, chip.sensor)
                for name, count in class_counts(codes, dict(enumerate(SPECTRAL_CLASSES))).items():
                    counts[name] += count
                n_cell += grid.width * grid.height
            props = _proportions(str(geohash), SPECTRAL_SOURCE, counts, n_cell)
        rows.append(props.row())
    frame = pd.DataFrame(rows)
    return fill_classes(frame)


META_COLUMNS = ("geohash", "source", "valid_fraction", "n_pixels", "cluster")


def class_columns(frame: pd.DataFrame) -> list[str]:
    """The proportion columns of a proportions or clusters table, in a stable order."""
    return sorted(c for c in frame.columns if c not in META_COLUMNS)


def fill_classes(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing class proportions are 0; columns ordered meta first, then classes."""
    cols = class_columns(frame)
    frame = frame.copy()
    frame[cols] = frame[cols].fillna(0.0).astype(float)
    return frame[[c for c in META_COLUMNS if c in frame.columns] + cols]


def read_proportions(paths: Sequence[str | Path]) -> pd.DataFrame:
    """All cells of several proportions tables; a cell seen in several (months) keeps its latest table's row."""
    frames = [pd.read_parquet(p) for p in sorted(paths, key=lambda p: Path(p).stat().st_mtime)]
    if not frames:
        return pd.DataFrame(columns=list(META_COLUMNS[:4]))
    frame = pd.concat(frames, ignore_index=True).drop_duplicates("geohash", keep="last")
    return fill_classes(frame.sort_values("geohash").reset_index(drop=True))


def proportions_path(data_dir: str | Path, region: str, month: str) -> Path:
    """Where a partition's proportions table lives: <data_dir>/landcover/proportions/<region>/<month>.parquet."""
    return Path(data_dir) / "landcover" / "proportions" / region / f"{month}.parquet"


def clusters_path(data_dir: str | Path, region: str | None = None, month: str | None = None) -> Path:
    """The clusters table a partition's materialization made (<data_dir>/landcover/clusters/<region>/<month>.parquet:
    what that partition's training saw), or with no partition the latest one (landcover/clusters_latest.parquet)."""
    if region is None or month is None:
        return Path(data_dir) / "landcover" / "clusters_latest.parquet"
    return Path(data_dir) / "landcover" / "clusters" / region / f"{month}.parquet"


# --------------------------------------------------------------------------------------------------------------
# (c) clusters and donors


@dataclass
class Clusters:
    """k-means clusters of cells on their proportions."""

    table: pd.DataFrame  # the proportions table with a `cluster` column
    k: int
    silhouette: dict[int, float] = field(default_factory=dict)  # k -> silhouette score of the tried k
    chosen_by: str = "config"  # "config", "silhouette", or "too-few-cells"
    seed: int = 0


def cluster_cells(
    proportions: pd.DataFrame, k: int | None = None, k_range: tuple[int, int] = (2, 8), seed: int = 0
) -> Clusters:
    """k-means (scikit-learn, seeded) on the class proportions of every cell.

    With `k` given it is used (capped at the number of distinct cells); otherwise every k in `k_range`
    (inclusive) that the data allow (2 <= k < distinct cells) is tried and the best silhouette score wins
    (ties: the smaller k); the scores of all tried k are recorded. No k allowed (fewer than 3 distinct cells,
    or k_min too large for them): one cluster, chosen_by "too-few-cells".
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    table = fill_classes(proportions).reset_index(drop=True)
    x = table[class_columns(table)].to_numpy(dtype=float)
    distinct = len(np.unique(x, axis=0)) if len(x) else 0

    def fit(n: int) -> np.ndarray:
        return KMeans(n_clusters=n, n_init=10, random_state=seed).fit_predict(x)

    scores: dict[int, float] = {}
    if k is not None:
        chosen, how = max(1, min(int(k), distinct)), "config"
        labels = fit(chosen) if chosen > 1 else np.zeros(len(x), int)
        if 1 < chosen < distinct:
            scores[chosen] = float(silhouette_score(x, labels))
    elif distinct < 3 or max(2, k_range[0]) > min(k_range[1], distinct - 1):
        chosen, how, labels = 1, "too-few-cells", np.zeros(len(x), int)
    else:
        fits = {}
        for n in range(max(2, k_range[0]), min(k_range[1], distinct - 1) + 1):
            fits[n] = fit(n)
            scores[n] = float(silhouette_score(x, fits[n]))
        chosen, how = max(scores, key=lambda n: (scores[n], -n)), "silhouette"
        labels = fits[chosen]
    table["cluster"] = labels.astype(int)
    return Clusters(table, chosen, scores, how, seed)


def cluster_centroids(table: pd.DataFrame) -> pd.DataFrame:
    """Mean proportions per cluster (the k-means centres) of a clusters table, indexed by cluster."""
    return table.groupby("cluster")[class_columns(table)].mean()


def _vector(props: Mapping[str, float], columns: list[str]) -> np.ndarray:
    return np.array([float(props.get(c, 0.0)) for c in columns])


def assign_cluster(props: Mapping[str, float], table: pd.DataFrame) -> int:
    """The cluster whose centroid is nearest (Euclidean, proportion space) to a cell's proportions."""
    centroids = cluster_centroids(table)
    d = np.linalg.norm(centroids.to_numpy() - _vector(props, list(centroids.columns)), axis=1)
    return int(centroids.index[int(np.argmin(d))])


@dataclass(frozen=True)
class Donor:
    """Which trained cell a new cell's model starts from, and why."""

    geohash: str | None  # None: train from scratch
    reason: str  # "same-cluster", "other-cluster" or "scratch"
    cluster: int | None  # the new cell's cluster
    donor_cluster: int | None
    distance: float | None  # Euclidean distance in proportion space to the donor


def choose_donor(
    props: Mapping[str, float] | None,
    table: pd.DataFrame,
    trained: Sequence[str],
    geohash: str | None = None,
) -> Donor:
    """The trained cell a new cell warm-starts from.

    `props`: the new cell's class proportions (None: its row of `table`, found by `geohash`);
    `table`: a clusters table (geohash, cluster, class columns);
    `trained`: geohashes with a trained model usable for this cell (same bands and architecture: the caller
    filters). The new cell's cluster is its row in `table` when `geohash` is there, else the nearest centroid.
    The donor is the trained cell nearest in proportion space within the same cluster ("same-cluster"); else
    the nearest trained cell of the other cluster whose centroid is nearest to the cell ("other-cluster");
    else None ("scratch"). The cell itself is never its own donor.
    """
    columns = class_columns(table)
    own = table[table["geohash"] == geohash] if geohash is not None else table.iloc[:0]
    if props is None:
        if own.empty:
            raise ValueError(f"no proportions given and cell {geohash!r} is not in the clusters table")
        props = own.iloc[0][columns].to_dict()
    cluster = int(own["cluster"].iloc[0]) if len(own) else assign_cluster(props, table)
    candidates = table[table["geohash"].isin(set(trained) - {geohash})]
    if candidates.empty:
        return Donor(None, "scratch", cluster, None, None)
    v = _vector(props, columns)
    dist = pd.Series(np.linalg.norm(candidates[columns].to_numpy(dtype=float) - v, axis=1), index=candidates.index)
    same = candidates["cluster"] == cluster
    if same.any():
        best = dist[same].idxmin()
        return Donor(str(candidates.at[best, "geohash"]), "same-cluster", cluster, cluster, float(dist[best]))
    centroids = cluster_centroids(table)
    centroids = centroids.loc[sorted(set(candidates["cluster"]))]
    near = int(centroids.index[int(np.argmin(np.linalg.norm(centroids.to_numpy() - v, axis=1)))])
    best = dist[candidates["cluster"] == near].idxmin()
    return Donor(str(candidates.at[best, "geohash"]), "other-cluster", cluster, near, float(dist[best]))


def clusters_png(table: pd.DataFrame, title: str = "land-cover clusters") -> bytes:
    """Stacked bars of each cluster's mean proportions (with the cell count); PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centroids = cluster_centroids(table)
    counts = table.groupby("cluster").size()
    fig, ax = plt.subplots(figsize=(5, 3), dpi=90)
    bottom = np.zeros(len(centroids))
    labels = [f"{c} (n={counts[c]})" for c in centroids.index]
    for column in centroids.columns:
        ax.bar(labels, centroids[column].to_numpy(), bottom=bottom, label=column)
        bottom += centroids[column].to_numpy()
    ax.set_ylabel("mean proportion")
    ax.set_xlabel("cluster")
    ax.set_title(title)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
