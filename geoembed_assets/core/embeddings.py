"""Embeddings as GeoParquet (one row per cell, acquisition and band label), and decoding them back to images.

A row holds the cell's quantised latent grid (`embedding`: int8, C x h x w in C-order, with `latent_channels`,
`latent_height`, `latent_width`), the per-channel scales that turn it back into the latent
(`embedding_scale`), the pixel validity mask when some pixels had no data (`valid_mask`: numpy packbits of the
H x W grid, null when every pixel was valid), quality measured on the chip's own grid (`recon_mse`,
`recon_rmse`, `ndvi_mae`), the cell's cover (`water_fraction`: share of valid pixels with NDWI > 0; `cover`:
"water" above one half, else "land"), the checkpoint that decodes it, and the cell polygon.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from affine import Affine

from geoembed_assets.core.atomic import atomic_path
from geoembed_assets.core.checkpoints import Checkpoint, checkpoint_path, load_checkpoint
from geoembed_assets.core.codec import LatentGrid, decode_grid, encode_chip
from geoembed_assets.core.geohash_grid import cell_grid
from geoembed_assets.core.indices import index_band_pairs
from geoembed_assets.core.training import index_errors

EMBEDDING_COLUMNS = [
    "geohash", "datetime", "scene_id", "band", "cell_size_px", "latent_channels", "latent_height", "latent_width",
    "embedding", "embedding_scale", "valid_mask", "valid_fraction", "water_fraction", "cover", "recon_mse",
    "recon_rmse", "ndvi_mae", "checkpoint_id", "geometry",
]  # fmt: skip
WATER_COVER = 0.5  # a cell whose valid pixels are more than half water (NDWI > 0) is a water cell


@dataclass(frozen=True)
class CellQuality:
    """How well a decoded chip matches the chip, over its valid pixels (reflectance in [0, 1])."""

    mse: float
    ndvi_mae: float
    water_fraction: float

    @property
    def rmse(self) -> float:
        return float(np.sqrt(self.mse))

    @property
    def cover(self) -> str:
        return cover_label(self.water_fraction)


def cover_label(water_fraction: float) -> str:
    return "water" if water_fraction > WATER_COVER else "land"


def water_fraction(reflectance: np.ndarray, bands: tuple[str, ...], sensor: str) -> float:
    """Share of valid pixels with NDWI (green - nir) / (green + nir) > 0; NaN without those bands."""
    pairs = index_band_pairs(sensor, bands)
    if "ndwi" not in pairs:
        return float("nan")
    g, n = reflectance[pairs["ndwi"][0]], reflectance[pairs["ndwi"][1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        ndwi = (g - n) / (g + n)
    valid = np.isfinite(ndwi)
    return float((ndwi[valid] > 0).mean()) if valid.any() else float("nan")


def cell_quality(truth: np.ndarray, recon: np.ndarray, bands: tuple[str, ...], sensor: str) -> CellQuality:
    """MSE and NDVI MAE over the pixels valid in `truth` (NaN marks no data), and the chip's water share."""
    valid = ~np.isnan(truth)
    mse = float(np.mean((truth[valid] - recon[valid]) ** 2)) if valid.any() else float("nan")
    ndvi = index_errors(sensor, bands, truth[None], recon[None]).get("ndvi", float("nan"))
    return CellQuality(mse, float(ndvi), water_fraction(truth, bands, sensor))


def pack_mask(valid: np.ndarray) -> bytes | None:
    """Packed bits of an (H, W) validity mask; None when every pixel is valid (the common case costs nothing)."""
    return None if valid.all() else np.packbits(valid.astype(bool), axis=None).tobytes()


def unpack_mask(packed: bytes | None, shape: tuple[int, int]) -> np.ndarray:
    if packed is None or (isinstance(packed, float) and np.isnan(packed)):
        return np.ones(shape, bool)
    bits = np.unpackbits(np.frombuffer(packed, np.uint8), count=shape[0] * shape[1])
    return bits.reshape(shape).astype(bool)


def encode_cell(
    checkpoint: Checkpoint,
    reflectance: np.ndarray,
    bands: tuple[str, ...],
    geohash: str,
    cell_size_px: int,
    scene_id: str,
    acquired: datetime,
    band: str = "all",
    refine_steps: int = 0,
) -> tuple[dict, np.ndarray]:
    """The embedding row of one chip (all bands, or the one band of a single-band checkpoint) and its decoded image.

    `reflectance` is the chip (B, H, W) with NaN where no data; single-band checkpoints get their band only.
    """
    if band != "all":
        reflectance = reflectance[bands.index(band) : bands.index(band) + 1]
    model, normalizer = checkpoint.model, checkpoint.normalizer
    weights = normalizer.band_weights(checkpoint.meta.get("training", {}).get("band_weighting", "reflectance"))
    latent = encode_chip(model, normalizer, reflectance, refine_steps, weights)
    shape = reflectance.shape[1:]
    recon = decode_grid(model, normalizer, latent, shape)
    valid = ~np.isnan(reflectance).any(axis=0)
    recon[:, ~valid] = np.nan
    sensor = checkpoint.meta.get("sensor", "")
    full_bands = checkpoint.band_names
    quality = cell_quality(reflectance, recon, full_bands, sensor)
    if band != "all":  # the cover of a single-band row comes from nothing it holds
        quality = CellQuality(quality.mse, float("nan"), float("nan"))
    grid = cell_grid(geohash, cell_size_px)
    west, south, east, north = grid.bounds
    c, h, w = latent.shape
    row = dict(
        geohash=geohash, datetime=pd.Timestamp(acquired), scene_id=scene_id, band=band, cell_size_px=np.int32(cell_size_px),
        latent_channels=np.int16(c), latent_height=np.int16(h), latent_width=np.int16(w),
        embedding=latent.values.reshape(-1), embedding_scale=latent.scale.astype(np.float32), valid_mask=pack_mask(valid),
        valid_fraction=np.float32(valid.mean()), water_fraction=np.float32(quality.water_fraction),
        cover=quality.cover if np.isfinite(quality.water_fraction) else "unknown", recon_mse=np.float32(quality.mse),
        recon_rmse=np.float32(quality.rmse), ndvi_mae=np.float32(quality.ndvi_mae), checkpoint_id=checkpoint.checkpoint_id,
        geometry=shapely.to_wkb(shapely.box(west, south, east, north)),
    )  # fmt: skip
    return row, recon


def _geo_metadata(frame: pd.DataFrame) -> bytes:
    bounds = shapely.total_bounds(shapely.from_wkb(frame["geometry"])) if len(frame) else [0, 0, 0, 0]
    return json.dumps(
        {
            "version": "1.1.0",
            "primary_column": "geometry",
            "columns": {
                "geometry": {
                    "encoding": "WKB",
                    "geometry_types": ["Polygon"],
                    "bbox": [float(b) for b in bounds],
                }
            },
        }
    ).encode()


def _list_column(values: list[np.ndarray], value_type: pa.DataType) -> pa.Array:
    """Fixed-size list when every row has the same length (DuckDB reads an ARRAY), else a variable list."""
    sizes = {len(v) for v in values} or {0}
    flat = np.concatenate(values) if values else np.zeros(0)
    flat_arr = pa.array(flat, type=value_type)
    if len(sizes) == 1:
        return pa.FixedSizeListArray.from_arrays(flat_arr, sizes.pop())
    offsets = np.r_[0, np.cumsum([len(v) for v in values])].astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat_arr)


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Arrow table with int8 embeddings, float32 scales and GeoParquet 1.1 metadata (CRS: OGC:CRS84)."""
    table = pa.Table.from_pandas(frame.drop(columns=["embedding", "embedding_scale"]), preserve_index=False)
    table = table.append_column("embedding", _list_column([np.asarray(e, np.int8) for e in frame["embedding"]], pa.int8()))
    scales = [np.asarray(s, np.float32) for s in frame["embedding_scale"]]
    table = table.append_column("embedding_scale", _list_column(scales, pa.float32()))
    table = table.select(EMBEDDING_COLUMNS)
    # pandas' own schema metadata (kilobytes per file, useless to readers of this schema) is dropped: bytes count
    return table.replace_schema_metadata({b"geo": _geo_metadata(frame)})


def write_embeddings(frame: pd.DataFrame, path: str | Path) -> int:
    """Write GeoParquet atomically (ZSTD); returns bytes on disk."""
    with atomic_path(path) as tmp:
        pq.write_table(to_arrow(frame), tmp, compression="zstd", compression_level=9)
    return Path(path).stat().st_size


def read_embeddings(path: str | Path) -> pd.DataFrame:
    """Read an embeddings GeoParquet, checking that the columns decoding needs are there with the right types."""
    from geoembed_assets.core.embeddings_schema import check_embeddings_schema

    check_embeddings_schema(path)  # a dropped or retyped column: one error naming the file and the column
    return pq.read_table(path).to_pandas()


class DecodedCell(NamedTuple):
    """A decoded cell: reflectance (B, H, W) with NaN where the chip had no data, the validity mask (H, W),
    band names, affine transform and CRS of the cell grid."""

    image: np.ndarray
    valid: np.ndarray
    bands: tuple[str, ...]
    transform: Affine
    crs: str


def decode_cell(rows: pd.DataFrame, checkpoint_dir: str | Path) -> DecodedCell:
    """Decode the embedding row(s) of one cell and acquisition back into an image, keeping no data as no data.

    Each row is decoded by the checkpoint version that made it. A multi-band row (band "all") gives every band at
    once; single-band rows give one band each, stacked in the order the bands first appear in `rows`.
    """
    keys = rows[["geohash", "scene_id"]].drop_duplicates()
    if len(keys) != 1:
        raise ValueError(f"decode_cell needs the rows of exactly one cell and scene, got {len(keys)}")
    labels = rows["band"].tolist()
    if len(set(labels)) != len(labels):
        raise ValueError(f"decode_cell got several rows for one band label: {labels}")
    if "all" in labels and len(labels) > 1:
        raise ValueError("decode_cell needs either multi-band rows (band 'all') or single-band rows, not both")
    geohash = keys.iloc[0]["geohash"]
    grid = cell_grid(geohash, int(rows["cell_size_px"].iloc[0]))
    shape = (grid.height, grid.width)
    planes, names, valid = [], [], np.ones(shape, bool)
    cache: dict[str, Checkpoint] = {}
    for row in rows.itertuples():
        if row.checkpoint_id not in cache:
            cache[row.checkpoint_id] = load_checkpoint(checkpoint_path(checkpoint_dir, row.checkpoint_id))
        ckpt = cache[row.checkpoint_id]
        image = decode_grid(ckpt.model, ckpt.normalizer, row_latent(row), shape)
        planes.append(image)
        names.extend(ckpt.band_names if row.band == "all" else [row.band])
        valid &= unpack_mask(row.valid_mask, shape)
    image = np.concatenate(planes)
    image[:, ~valid] = np.nan
    return DecodedCell(image, valid, tuple(names), grid.transform, "EPSG:4326")


def row_latent(row) -> LatentGrid:
    """The quantised latent grid stored in one embedding row (a pandas row or namedtuple)."""
    shape = (int(row.latent_channels), int(row.latent_height), int(row.latent_width))
    values = np.asarray(row.embedding, np.int8).reshape(shape)
    return LatentGrid(values, np.asarray(row.embedding_scale, np.float32))
