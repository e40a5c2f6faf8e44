"""Embeddings as GeoParquet (one row per patch of a cell and acquisition), and decoding them back to images."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
import torch
from affine import Affine

from geoembed_assets.core.atomic import atomic_path
from geoembed_assets.core.checkpoints import Checkpoint, checkpoint_path, load_checkpoint
from geoembed_assets.core.geohash_grid import cell_grid
from geoembed_assets.core.patches import Patches, assemble, band_patches, cut_patches
from geoembed_assets.core.training import masked_mse, reconstruct

EMBEDDING_COLUMNS = [
    "geohash", "datetime", "scene_id", "band", "patch_row", "patch_col", "patch_size", "cell_size_px",
    "valid_fraction", "recon_mse", "checkpoint_id", "embedding", "geometry",
]  # fmt: skip


def encode_patches(
    checkpoint: Checkpoint,
    patches: Patches,
    geohash: str,
    cell_size_px: int,
    scene_id: str,
    acquired: datetime,
    band: str = "all",
) -> pd.DataFrame:
    """Embed every patch (latent mean) and measure its reconstruction MSE on the chip's own grid.

    `band` is "all" for a multi-band VAE, the band name for a single-band one (patches then hold that band only).
    """
    mu, recon = reconstruct(checkpoint.model, checkpoint.normalizer, patches.data)
    grid = cell_grid(geohash, cell_size_px)
    p = checkpoint.model.config.patch_size
    t = grid.transform
    x0 = t.c + t.a * patches.cols * p
    y0 = t.f + t.e * patches.rows * p
    geoms = shapely.box(x0, y0 + t.e * p, x0 + t.a * p, y0)
    return pd.DataFrame(
        {
            "geohash": geohash,
            "datetime": pd.Timestamp(acquired),
            "scene_id": scene_id,
            "band": band,
            "patch_row": patches.rows.astype(np.int32),
            "patch_col": patches.cols.astype(np.int32),
            "patch_size": np.int32(p),
            "cell_size_px": np.int32(cell_size_px),
            "valid_fraction": patches.valid_fraction.astype(np.float32),
            "recon_mse": masked_mse(patches.data, recon).astype(np.float32),
            "checkpoint_id": checkpoint.checkpoint_id,
            "embedding": list(mu.astype(np.float32)),
            "geometry": shapely.to_wkb(geoms),
        }
    )


def checkpoint_patches(checkpoint: Checkpoint, reflectance: np.ndarray, bands: tuple[str, ...], band: str) -> Patches:
    """The patches of a chip that this checkpoint embeds: all bands ("all") or the one band it was trained on."""
    patches = cut_patches(reflectance, checkpoint.model.config.patch_size)
    return patches if band == "all" else band_patches(patches, bands.index(band))


def _geo_metadata(frame: pd.DataFrame) -> bytes:
    bounds = shapely.total_bounds(shapely.from_wkb(frame["geometry"])) if len(frame) else [0, 0, 0, 0]
    return json.dumps(
        {
            "version": "1.1.0",
            "primary_column": "geometry",
            "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"], "bbox": [float(b) for b in bounds]}},
        }
    ).encode()


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Arrow table with a float32 embedding column and GeoParquet metadata (CRS: OGC:CRS84).

    The column is a fixed-size list when every row has the same size, a variable list when cells have their own
    predicted sizes (each row's size is its checkpoint's latent size).
    """
    dims = {len(e) for e in frame["embedding"]} or {0}
    flat = np.concatenate(list(frame["embedding"])).astype(np.float32) if len(frame) else np.zeros(0, np.float32)
    table = pa.Table.from_pandas(frame.drop(columns=["embedding"]), preserve_index=False)
    if len(dims) == 1:
        column = pa.FixedSizeListArray.from_arrays(pa.array(flat), dims.pop())
    else:
        offsets = np.r_[0, np.cumsum([len(e) for e in frame["embedding"]])].astype(np.int32)
        column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
    table = table.append_column("embedding", column)
    table = table.select(EMBEDDING_COLUMNS)
    return table.replace_schema_metadata({**(table.schema.metadata or {}), b"geo": _geo_metadata(frame)})


def write_embeddings(frame: pd.DataFrame, path: str | Path) -> int:
    """Write GeoParquet atomically (ZSTD); returns bytes on disk."""
    with atomic_path(path) as tmp:
        pq.write_table(to_arrow(frame), tmp, compression="zstd")
    return Path(path).stat().st_size


def decode_cell(
    rows: pd.DataFrame, checkpoint_dir: str | Path
) -> tuple[np.ndarray, tuple[str, ...], Affine, str]:
    """Decode the embedding rows of one cell and acquisition back into an image.

    Returns (reflectance (B, H, W) float32 with NaN where no patch was stored, band names, affine transform,
    CRS). Each row is decoded by the checkpoint version that made it. Multi-band rows (band "all") give every band
    at once; single-band rows give one band each, stacked in the order the bands first appear in `rows`.
    """
    keys = rows[["geohash", "scene_id"]].drop_duplicates()
    if len(keys) != 1:
        raise ValueError(f"decode_cell needs the rows of exactly one cell and scene, got {len(keys)}")
    geohash = keys.iloc[0]["geohash"]
    size = int(rows["cell_size_px"].iloc[0])
    grid = cell_grid(geohash, size)
    labels = rows["band"].unique().tolist() if "band" in rows else ["all"]
    if "all" in labels and len(labels) > 1:
        raise ValueError("decode_cell needs either multi-band rows (band 'all') or single-band rows, not both")
    planes, names = [], []
    for label in labels:
        part = rows if label == "all" else rows[rows["band"] == label]
        image, bands = _decode_rows(part, checkpoint_dir, (grid.height, grid.width))
        planes.append(image)
        names.extend(bands)
    return np.concatenate(planes), tuple(names), grid.transform, "EPSG:4326"


def _decode_rows(rows: pd.DataFrame, checkpoint_dir: str | Path, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Decode rows sharing one band set (maybe several checkpoint versions) onto one canvas."""
    images, bands = [], ()
    for checkpoint_id, part in rows.groupby("checkpoint_id"):
        ckpt = load_checkpoint(checkpoint_path(checkpoint_dir, checkpoint_id))
        bands = ckpt.band_names
        z = np.stack(part["embedding"].to_numpy()).astype(np.float32)
        with torch.no_grad():
            decoded = ckpt.normalizer.inverse(ckpt.model.decode(torch.from_numpy(z))).numpy()
        images.append(assemble(decoded, part["patch_row"].to_numpy(), part["patch_col"].to_numpy(), shape))
    image = images[0]
    for other in images[1:]:
        image = np.where(np.isnan(image), other, image)
    return image, tuple(bands)
