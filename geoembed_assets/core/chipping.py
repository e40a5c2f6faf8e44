"""Cut a scene along geohash cells, aligning every band onto one EPSG:4326 grid per cell.

Speed matters here (it touches every pixel): each band is read once, through one window covering all the
requested cells; the UTM position of every target pixel is computed once per cell (exactly on a coarse lattice,
then interpolated: the projection is smooth over 5 km) and shared by all bands of one resolution, whose
bilinear gathers are done on a stacked array.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from pyproj import Transformer
from rasterio.errors import RasterioError
from rasterio.windows import Window, from_bounds
from shapely import wkt
from shapely.geometry import box

from geoembed_assets.core import cloud_mask
from geoembed_assets.core.atomic import atomic_path
from geoembed_assets.core.geohash_grid import CellGrid, cell_grid, cells_in_bbox
from geoembed_assets.core.scene import Scene, SceneError

CHIP_SCALE = 1e-4  # chips store reflectance * 10000 as uint16
CHIP_NODATA = 65535
_LATTICE_STEP = 16  # pixels between exactly projected points


@dataclass(frozen=True)
class Chip:
    """One cell of one scene, resampled: reflectance (bands, H, W) float32, NaN where no valid data."""

    grid: CellGrid
    scene_id: str
    band_names: tuple[str, ...]
    reflectance: np.ndarray
    coverage: float  # fraction of the cell's pixels with valid data in every band
    cloud_fraction: float | None = None  # share of the data pixels masked as cloud (scenes with a cloud layer)
    data_coverage: float | None = None  # fraction of the cell's pixels with data before cloud masking


def scene_cells(scene: Scene, precision: int) -> list[str]:
    """Geohashes whose cells intersect the scene footprint."""
    footprint = wkt.loads(scene.footprint_wkt)
    cells = cells_in_bbox(*footprint.bounds, precision)
    return [g for g in cells if footprint.intersects(box(*cell_grid(g, 1).bounds))]


def _projected_centres(grid: CellGrid, to_crs: str) -> tuple[np.ndarray, np.ndarray]:
    """x, y (height, width) of the cell's pixel centres in `to_crs`, exact on a lattice, bilinear between."""
    lons, lats = grid.pixel_centres()
    li = np.unique(np.r_[np.arange(0, grid.width, _LATTICE_STEP), grid.width - 1])
    lj = np.unique(np.r_[np.arange(0, grid.height, _LATTICE_STEP), grid.height - 1])
    lon2, lat2 = np.meshgrid(lons[li], lats[lj])
    xs, ys = Transformer.from_crs("EPSG:4326", to_crs, always_xy=True).transform(lon2, lat2)
    return _upsample(np.asarray(xs), li, lj, grid), _upsample(np.asarray(ys), li, lj, grid)


def _interp_matrix(n: int, knots: np.ndarray) -> np.ndarray:
    """(n, len(knots)) linear-interpolation weights, so that values_at_0..n-1 = M @ values_at_knots."""
    return np.stack([np.interp(np.arange(n), knots, np.eye(len(knots))[k]) for k in range(len(knots))], axis=1)


def _upsample(lattice: np.ndarray, li: np.ndarray, lj: np.ndarray, grid: CellGrid) -> np.ndarray:
    """Separable bilinear interpolation of a lattice of projected coordinates to every pixel."""
    return _interp_matrix(grid.height, lj) @ lattice @ _interp_matrix(grid.width, li).T


def _bilinear(stack: torch.Tensor, col: np.ndarray, row: np.ndarray) -> torch.Tensor:
    """Sample stack (B+1, h, w), whose last plane is the validity mask, at edge-based pixel coords (H, W).

    torch's grid_sample is a threaded bilinear gather; where the interpolated mask is below 1, some neighbour
    it mixes is invalid or outside the window.
    """
    h, w = stack.shape[1:]
    grid = np.empty((*col.shape, 2), np.float32)
    np.multiply(col, 2 / w, out=grid[..., 0], casting="unsafe")
    np.multiply(row, 2 / h, out=grid[..., 1], casting="unsafe")
    grid -= 1
    return F.grid_sample(stack[None], torch.from_numpy(grid)[None], mode="bilinear", padding_mode="zeros", align_corners=False)[0]


@dataclass
class _BandGroup:
    """Bands sharing one resolution: read through one window, sampled with shared indices."""

    names: list[str]
    stack: torch.Tensor  # (B+1, h, w) float32: reflectance planes, then the validity mask
    inverse: object  # Affine: band CRS -> window pixel coords


def _read_groups(scene: Scene, cells: list[CellGrid]) -> list[_BandGroup]:
    to_utm = Transformer.from_crs("EPSG:4326", scene.crs, always_xy=True)
    west = min(g.west for g in cells)
    south = min(g.south for g in cells)
    east = max(g.east for g in cells)
    north = max(g.north for g in cells)
    xs, ys = to_utm.transform([west, west, east, east], [south, north, south, north])
    by_res: dict[float, list] = {}
    for band in scene.bands:
        by_res.setdefault(band.resolution_m, []).append(band)
    groups = []
    for bands in by_res.values():
        arrays, window, transform = [], None, None
        for band in bands:
            try:
                with rasterio.open(band.path) as src:
                    if window is None:
                        res = src.res[0]
                        window = (
                            from_bounds(min(xs) - 2 * res, min(ys) - 2 * res, max(xs) + 2 * res, max(ys) + 2 * res, src.transform)
                            .round_offsets()
                            .round_lengths()
                        )
                        window = window.intersection(Window(0, 0, src.width, src.height))
                        transform = src.window_transform(window)
                    arrays.append(src.read(band.index, window=window))
            except (RasterioError, ValueError) as exc:
                raise SceneError(f"{band.path}: cannot read band {band.name} of scene {scene.scene_id}: {exc}") from exc
        dn = np.stack(arrays)
        # No data means the nodata DN in every band of the group: a single band may legitimately reach it
        # (Sentinel-2 B10 cirrus is 0 DN over clear sky).
        valid = np.ones(dn.shape[1:], bool) if scene.nodata is None else (dn != scene.nodata).any(axis=0)
        stack = np.empty((len(bands) + 1, *dn.shape[1:]), np.float32)
        np.multiply(dn, np.float32(scene.scale), out=stack[:-1], casting="unsafe")
        stack[:-1] += np.float32(scene.offset)
        stack[-1] = valid
        groups.append(_BandGroup([b.name for b in bands], torch.from_numpy(stack), ~transform))
    return groups


def chip_scene(scene: Scene, geohashes: list[str], size_px: int, batch: int = 8) -> list[Chip]:
    """Resample all bands of `scene` onto the grids of `geohashes`; the band order is the scene's.

    Cells are stacked `batch` at a time into one tall target grid, so each resolution group costs one
    grid_sample call per batch, whose result is copied once, straight into the scene's band order.
    """
    if not geohashes:
        raise SceneError(f"{scene.source}: scene {scene.scene_id} touches no requested geohash cell")
    grids = [cell_grid(g, size_px) for g in geohashes]
    groups = _read_groups(scene, grids)
    position = {name: i for i, name in enumerate(scene.band_names)}
    chips = []
    for first in range(0, len(grids), batch):
        part = grids[first : first + batch]
        xs, ys = zip(*(_projected_centres(g, scene.crs) for g in part))
        x, y = np.concatenate(xs), np.concatenate(ys)  # (batch * H, W): cells stacked north to south
        out = np.empty((len(position), *x.shape), np.float32)
        ok = np.ones(x.shape, bool)
        for group in groups:
            inv = group.inverse
            sampled = _bilinear(group.stack, inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f).numpy()
            out[[position[name] for name in group.names]] = sampled[:-1]  # one copy, straight into scene order
            ok &= sampled[-1] > 0.9999
        cloudy, data = None, ok
        if scl := cloud_mask.scl_path(scene):  # L2A with a scene classification: clouds become no data
            cloudy, unusable = cloud_mask.cloud_and_unusable(cloud_mask.sample_scl(scl, x, y))
            ok = ok & ~cloudy & ~unusable
        elif layer := cloud_mask.probability_layer(scene):  # a cloud probability band: the same, by threshold
            cloudy, unusable = cloud_mask.cloudy_from_probability(cloud_mask.sample_probability(layer, x, y), layer["threshold"])
            ok = ok & ~cloudy & ~unusable
        np.copyto(out, np.float32(np.nan), where=~ok)
        for i, grid in enumerate(part):
            rows = slice(i * grid.height, (i + 1) * grid.height)
            clouds = None if cloudy is None else cloud_mask.cloud_fraction(cloudy[rows], data[rows])
            if clouds is not None and clouds > cloud_mask.max_cloud_fraction(scene):
                continue  # too cloudy to learn from (paper: 15 %)
            chips.append(Chip(grid, scene.scene_id, tuple(scene.band_names), out[:, rows], float(ok[rows].mean()), clouds,
                              float(data[rows].mean())))  # fmt: skip
    return chips


def write_chip(chip: Chip, path: str | Path) -> int:
    """Write a chip as a ZSTD-compressed uint16 GeoTIFF (reflectance * 1e4); returns bytes written."""
    dn = np.where(np.isnan(chip.reflectance), CHIP_NODATA, np.clip(np.rint(chip.reflectance / CHIP_SCALE), 0, CHIP_NODATA - 1))
    profile = dict(
        driver="GTiff",
        width=chip.grid.width,
        height=chip.grid.height,
        count=len(chip.band_names),
        dtype="uint16",
        crs="EPSG:4326",
        transform=chip.grid.transform,
        nodata=CHIP_NODATA,
        compress="zstd",
        predictor=2,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        interleave="pixel",
    )
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(dn.astype(np.uint16))
            dst.descriptions = chip.band_names
            dst.scales = [CHIP_SCALE] * len(chip.band_names)
            dst.update_tags(geohash=chip.grid.geohash, scene_id=chip.scene_id, coverage=f"{chip.coverage:.6f}")
    return Path(path).stat().st_size


def read_chip(path: str | Path) -> tuple[np.ndarray, tuple[str, ...], CellGrid]:
    """Reflectance (bands, H, W) float32 with NaN for no data, the band names, and the cell grid."""
    with rasterio.open(path) as src:
        dn = src.read()
        names = tuple(src.descriptions)
        geohash = src.tags()["geohash"]
        size = src.width
    refl = dn.astype(np.float32) * np.float32(CHIP_SCALE)
    refl[dn == CHIP_NODATA] = np.nan
    return refl, names, cell_grid(geohash, size)
