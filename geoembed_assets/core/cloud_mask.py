"""Cloud masking from a Sentinel-2 L2A scene classification layer (SCL), or from a per-pixel cloud probability
layer (e.g. s2cloudless, as delivered with the eo-learn Slovenia sample), applied before chipping.

A probability layer (``scene.extra["cloud_probability"] = {"path", "band", "threshold"}``) marks pixels whose
probability is at or above the threshold as cloud (s2cloudless' own default threshold is 0.4).

A delivery whose metadata names an SCL raster (``scene.extra["scl"]``, e.g. ingested from a STAC API) gets its
cloud and cloud-shadow pixels set to no data in every chip, and cells whose data pixels are cloudier than
``max_cloud_fraction`` (the paper's 15 %) are skipped altogether: a VAE should not learn clouds.
"""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.errors import WindowError
from rasterio.windows import Window, from_bounds

from geoembed_assets.core.scene import Scene, SceneError

# ESA L2A scene classification: 0 no data, 1 saturated/defective, 2 dark area, 3 cloud shadow, 4 vegetation,
# 5 not vegetated, 6 water, 7 unclassified, 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus,
# 11 snow.
SCL_CLOUD_CLASSES = (3, 8, 9, 10)
SCL_UNUSABLE_CLASSES = (0, 1)
DEFAULT_MAX_CLOUD_FRACTION = 0.15


def scl_path(scene: Scene) -> str | None:
    """The scene's SCL raster, when its delivery has one."""
    return scene.extra.get("scl")


def max_cloud_fraction(scene: Scene) -> float:
    return float(scene.extra.get("max_cloud_fraction", DEFAULT_MAX_CLOUD_FRACTION))


def probability_layer(scene: Scene) -> dict | None:
    """The scene's cloud probability layer {"path", "band", "threshold"}, when its delivery has one."""
    return scene.extra.get("cloud_probability")


def sample_probability(layer: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cloud probability (nearest neighbour) at x, y in the layer's CRS; NaN outside it."""
    return sample_scl(layer["path"], x, y, band=int(layer.get("band", 1)), dtype=np.float32, fill=np.nan)


def cloudy_from_probability(probability: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(cloud, unusable) masks: probability >= threshold is cloud; no probability (NaN, outside) is unusable."""
    unknown = np.isnan(probability)
    return (np.nan_to_num(probability, nan=0.0) >= threshold) & ~unknown, unknown


def sample_scl(path: str, x: np.ndarray, y: np.ndarray, band: int = 1, dtype=np.uint8, fill=0) -> np.ndarray:
    """SCL classes (nearest neighbour) at coordinates x, y in the SCL raster's CRS; 0 (no data) outside it.
    (`band`, `dtype`, `fill`: the same sampling for another layer, e.g. a cloud probability band.)"""
    out = np.full(x.shape, fill, dtype)
    try:
        with rasterio.open(path) as src:
            res = abs(src.res[0])
            try:
                pad = 2 * res  # round_offsets/round_lengths may cut a partial edge pixel: keep a margin
                window = from_bounds(x.min() - pad, y.min() - pad, x.max() + pad, y.max() + pad, src.transform)
                window = window.round_offsets().round_lengths().intersection(Window(0, 0, src.width, src.height))
            except WindowError:
                return out
            classes = src.read(band, window=window)
            inv = ~src.window_transform(window)
    except rasterio.errors.RasterioError as exc:
        raise SceneError(f"{path}: cannot read the scene classification (SCL): {exc}") from exc
    col = np.floor(inv.a * x + inv.b * y + inv.c).astype(np.int64)
    row = np.floor(inv.d * x + inv.e * y + inv.f).astype(np.int64)
    inside = (col >= 0) & (col < classes.shape[1]) & (row >= 0) & (row < classes.shape[0])
    out[inside] = classes[row[inside], col[inside]]
    return out


def cloud_and_unusable(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cloud or cloud shadow, no data or defective) masks of an array of SCL classes."""
    return np.isin(classes, SCL_CLOUD_CLASSES), np.isin(classes, SCL_UNUSABLE_CLASSES)


def cloud_fraction(cloudy: np.ndarray, valid: np.ndarray) -> float:
    """Share of the valid pixels that are cloudy (0 when there is no valid pixel)."""
    n = int(valid.sum())
    return float((cloudy & valid).sum() / n) if n else 0.0
