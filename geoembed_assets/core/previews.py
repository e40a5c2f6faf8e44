"""Pictures a person checks before trusting a number: a chip beside its reconstruction, and rate-distortion curves."""

from __future__ import annotations


import numpy as np
import pandas as pd

from geoembed_assets.core.indices import index_band_pairs, roles_for
from geoembed_assets.core.plots import _png, markdown_image, plt  # noqa: F401 - one home for pictures

RGB_ROLES = ("red", "green", "blue")
_BLUE = {"sentinel-2": "B02", "landsat-8": "B2"}


def rgb_bands(sensor: str, bands: tuple[str, ...]) -> list[int] | None:
    """Channel positions of red, green, blue (None when the sensor's bands are not all there)."""
    roles = roles_for(sensor)
    blue = next((b for fam, b in _BLUE.items() if sensor.startswith(fam)), None)
    names = [roles.get("red"), roles.get("green"), blue]
    return [bands.index(n) for n in names] if all(n in bands for n in names) else None


def rgb_image(reflectance: np.ndarray, channels: list[int], limits: tuple[float, float]) -> np.ndarray:
    """(H, W, 3) in [0, 1], stretched between `limits`; no data is shown black."""
    rgb = np.moveaxis(reflectance[channels], 0, -1)
    lo, hi = limits
    return np.nan_to_num(np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1))


def ndvi_image(reflectance: np.ndarray, sensor: str, bands: tuple[str, ...]) -> np.ndarray | None:
    pairs = index_band_pairs(sensor, bands)
    if "ndvi" not in pairs:
        return None
    a, b = reflectance[pairs["ndvi"][0]], reflectance[pairs["ndvi"][1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a - b) / (a + b)


def comparison_png(
    cells: list[tuple[str, np.ndarray, np.ndarray]], sensor: str, bands: tuple[str, ...], dpi: int = 80
) -> bytes:
    """One row per (label, chip, reconstruction): RGB of both, NDVI of both, and the absolute error; PNG bytes."""
    channels = rgb_bands(sensor, bands)
    fig, axes = plt.subplots(len(cells), 5, figsize=(15, 3.1 * len(cells)), dpi=dpi, squeeze=False)
    for row, (label, truth, recon) in zip(axes, cells):
        if channels is not None:
            limits = tuple(np.nanpercentile(truth[channels], [2, 98]))
            row[0].imshow(rgb_image(truth, channels, limits))
            row[1].imshow(rgb_image(recon, channels, limits))
        nd_t, nd_r = ndvi_image(truth, sensor, bands), ndvi_image(recon, sensor, bands)
        if nd_t is not None:
            row[2].imshow(nd_t, cmap="RdYlGn", vmin=-0.5, vmax=0.9)
            row[3].imshow(nd_r, cmap="RdYlGn", vmin=-0.5, vmax=0.9)
        err = np.sqrt(np.nanmean((truth - recon) ** 2, axis=0))
        im = row[4].imshow(err, cmap="magma", vmin=0, vmax=0.03)
        fig.colorbar(im, ax=row[4], fraction=0.046, label="RMSE (reflectance)")
        mse = float(np.nanmean((truth - recon) ** 2))
        for ax, title in zip(row, ("chip RGB", "decoded RGB", "chip NDVI", "decoded NDVI", "per-pixel RMSE")):
            ax.set_title(f"{label}: {title}" if title == "chip RGB" else title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        row[1].set_title(f"decoded RGB (MSE {mse:.1e})", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def rate_distortion_png(table: pd.DataFrame, title: str, dpi: int = 90) -> bytes:
    """MSE against compression ratio, one line per method (columns: method, ratio, mse[, cover]); PNG bytes."""
    covers = sorted(table["cover"].unique()) if "cover" in table else [None]
    fig, axes = plt.subplots(1, len(covers), figsize=(5.5 * len(covers), 4), dpi=dpi, squeeze=False)
    for ax, cover in zip(axes[0], covers):
        part = table if cover is None else table[table["cover"] == cover]
        for method, line in part.groupby("method"):
            line = line.groupby("ratio", as_index=False)["mse"].mean().sort_values("ratio")
            ax.plot(line["ratio"], line["mse"], marker="o", label=method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compression ratio vs uint16 chip (bytes as stored)")
        ax.set_ylabel("MSE (reflectance)")
        ax.set_title(f"{title}" + (f" - {cover} cells" if cover else ""), fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)
