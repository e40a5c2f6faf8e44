"""Pictures for people: maps of a partition's cells, the scene footprint, training loss curves, a chip beside its
reconstruction. Plain module (matplotlib, no Dagster); every function returns PNG bytes, and `markdown_image`
turns them into a Markdown image that the Dagster UI renders inline in materialization metadata.

Maps are drawn in longitude/latitude (EPSG:4326, the geohash grid's own CRS) with equal scaling at the centre
latitude, so cells look square-ish as on a map.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display: pictures go to bytes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.patches import Polygon as MplPolygon  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from shapely import wkt  # noqa: E402
from shapely.geometry import MultiPolygon, Polygon  # noqa: E402

from geoembed_assets.core.geohash_grid import cell_bounds  # noqa: E402


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """A Markdown image with the PNG inline (data URI): shown by the Dagster UI, no file server needed."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _lonlat_axes(ax: plt.Axes, south: float, north: float) -> None:
    ax.set_aspect(1 / math.cos(math.radians((south + north) / 2)))
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")


def cell_map(values: Mapping[str, float], title: str, label: str, cmap: str = "viridis",
             vmin: float | None = None, vmax: float | None = None, flagged: Sequence[str] = ()) -> bytes:
    """Geohash cells drawn at their bounds and coloured by `values` (e.g. coverage, held-out MSE).

    Cells in `flagged` get a red outline (e.g. training stopped at the epoch cap).
    """
    if not values:
        raise ValueError("cell_map needs at least one cell")
    cells = sorted(values)
    bounds = np.array([cell_bounds(g) for g in cells])
    data = np.array([values[g] for g in cells], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 5))
    rects = [Rectangle((w, s), e - w, n - s) for w, s, e, n in bounds]
    coll = PatchCollection(rects, cmap=cmap, edgecolor="white", linewidth=0.8)
    coll.set_array(data)
    coll.set_clim(vmin if vmin is not None else np.nanmin(data), vmax if vmax is not None else np.nanmax(data))
    ax.add_collection(coll)
    for g, (w, s, e, n) in zip(cells, bounds):
        if g in flagged:
            ax.add_patch(Rectangle((w, s), e - w, n - s, fill=False, edgecolor="red", linewidth=2))
        if len(cells) <= 64:
            ax.text((w + e) / 2, (s + n) / 2, g, ha="center", va="center", fontsize=7, color="black",
                    bbox=dict(facecolor="white", alpha=0.6, pad=0.5, linewidth=0))
    west, south, east, north = bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max()
    pad = 0.02 * max(east - west, north - south)
    ax.set_xlim(west - pad, east + pad)
    ax.set_ylim(south - pad, north + pad)
    _lonlat_axes(ax, south, north)
    fig.colorbar(coll, ax=ax, label=label, shrink=0.8)
    ax.set_title(title + (f"\n(red outline: {len(flagged)} flagged)" if flagged else ""), fontsize=10)
    return _png(fig)


def coverage_map(chips: pd.DataFrame, title: str = "cell coverage") -> bytes:
    """The chip index's cells coloured by their mean coverage (fraction of valid pixels), 0 to 1."""
    coverage = chips.groupby("geohash")["coverage"].mean().to_dict()
    return cell_map(coverage, f"{title}: {len(coverage)} cells", "coverage", cmap="YlGn", vmin=0, vmax=1)


def _polygons(shape) -> list[Polygon]:
    return list(shape.geoms) if isinstance(shape, MultiPolygon) else [shape]


def footprint_map(footprint_wkt: str, cells: Sequence[str] = (), title: str = "scene footprint") -> bytes:
    """A scene's footprint (WKT, lon/lat) on a map, with the geohash cells it was cut into outlined."""
    shape = wkt.loads(footprint_wkt)
    fig, ax = plt.subplots(figsize=(6, 5))
    for poly in _polygons(shape):
        ax.add_patch(MplPolygon(np.asarray(poly.exterior.coords), closed=True, facecolor="#9ecae1",
                                edgecolor="#08519c", linewidth=1.5, alpha=0.7, label="footprint"))
    west, south, east, north = shape.bounds
    for g in cells:
        w, s, e, n = cell_bounds(g)
        ax.add_patch(Rectangle((w, s), e - w, n - s, fill=False, edgecolor="#555555", linewidth=0.6))
        west, south, east, north = min(west, w), min(south, s), max(east, e), max(north, n)
    pad = 0.05 * max(east - west, north - south)
    ax.set_xlim(west - pad, east + pad)
    ax.set_ylim(south - pad, north + pad)
    _lonlat_axes(ax, south, north)
    ax.grid(True, linewidth=0.3)
    ax.set_title(f"{title}" + (f" and its {len(cells)} geohash cells" if cells else ""), fontsize=10)
    return _png(fig)


def loss_curves(histories: Mapping[str, Sequence[float]], max_epochs: int | None = None,
                title: str = "training loss per epoch") -> bytes:
    """Training loss per epoch of each cell's VAE (log scale); a dashed line at the epoch cap."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, history in sorted(histories.items()):
        ax.plot(np.arange(1, len(history) + 1), history, linewidth=1, label=label if len(histories) <= 12 else None)
    if max_epochs:
        ax.axvline(max_epochs, color="red", linestyle="--", linewidth=1, label=f"epoch cap ({max_epochs})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(f"{title} ({len(histories)} models)", fontsize=10)
    return _png(fig)


def at_epoch_cap(checkpoints: pd.DataFrame, max_epochs: int) -> pd.DataFrame:
    """Rows of the checkpoints table whose training ran to `max_epochs` (stopped by the cap, not by patience):
    those cells may still improve with more epochs."""
    return checkpoints[checkpoints["epochs"].astype(int) >= int(max_epochs)]


def chip_and_reconstruction(original: np.ndarray, reconstruction: np.ndarray, bands: Sequence[str],
                            title: str = "") -> bytes:
    """A chip (bands x H x W reflectance) beside its reconstruction, as true colour (B04, B03, B02 when present,
    else the first three bands), stretched on the original's 2-98 % range."""
    names = list(bands)
    rgb = [names.index(b) for b in ("B04", "B03", "B02") if b in names]
    if len(rgb) < 3:
        rgb = list(range(min(3, len(names))))
        rgb += [rgb[-1]] * (3 - len(rgb))

    def stretch(image: np.ndarray) -> np.ndarray:
        stack = np.nan_to_num(image[rgb].astype(float))
        low, high = np.nanpercentile(original[rgb], [2, 98]) if np.isfinite(original[rgb]).any() else (0.0, 1.0)
        return np.clip((stack - low) / max(high - low, 1e-6), 0, 1).transpose(1, 2, 0)

    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    for ax, image, name in zip(axes, (original, reconstruction), ("chip", "reconstruction")):
        ax.imshow(stretch(image))
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return _png(fig)
