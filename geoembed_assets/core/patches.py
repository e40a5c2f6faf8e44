"""Cut a cell chip into square patches, the unit a VAE embeds (one embedding row per patch)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Patches:
    """Non-overlapping patches of one chip, in row-major order of the patch grid."""

    data: np.ndarray  # (N, B, p, p) reflectance float32, NaN where no data
    rows: np.ndarray  # (N,) patch-grid row
    cols: np.ndarray  # (N,) patch-grid column
    valid_fraction: np.ndarray  # (N,) fraction of pixels valid in every band
    grid_shape: tuple[int, int]  # patch rows, patch cols

    def __len__(self) -> int:
        return len(self.data)


def cut_patches(reflectance: np.ndarray, patch_size: int, min_valid: float = 0.0) -> Patches:
    """Tile (B, H, W) into (p x p) patches, dropping the remainder strip and patches with too little data."""
    b, h, w = reflectance.shape
    ny, nx = h // patch_size, w // patch_size
    tiles = (
        reflectance[:, : ny * patch_size, : nx * patch_size]
        .reshape(b, ny, patch_size, nx, patch_size)
        .transpose(1, 3, 0, 2, 4)
        .reshape(ny * nx, b, patch_size, patch_size)
    )
    valid = (~np.isnan(tiles)).all(axis=1).mean(axis=(1, 2))
    keep = valid > min_valid if min_valid > 0 else valid > 0
    rows, cols = np.divmod(np.arange(ny * nx), nx)
    return Patches(np.ascontiguousarray(tiles[keep]), rows[keep], cols[keep], valid[keep], (ny, nx))


def band_patches(patches: Patches, band: int) -> Patches:
    """The patches of one band, as a 1-channel Patches (single-band embeddings)."""
    return replace(patches, data=np.ascontiguousarray(patches.data[:, band : band + 1]))


def assemble(patches: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Place (N, B, p, p) patches back on a (B, H, W) canvas; uncovered pixels are NaN."""
    n, b, p, _ = patches.shape
    canvas = np.full((b, *shape), np.nan, np.float32)
    for patch, r, c in zip(patches, rows, cols):
        canvas[:, r * p : (r + 1) * p, c * p : (c + 1) * p] = patch
    return canvas


def concat_patches(parts: list[Patches]) -> Patches:
    """Patches of several chips of one cell (e.g. several dates) as one training set."""
    if len(parts) == 1:
        return parts[0]
    return Patches(
        np.concatenate([p.data for p in parts]),
        np.concatenate([p.rows for p in parts]),
        np.concatenate([p.cols for p in parts]),
        np.concatenate([p.valid_fraction for p in parts]),
        parts[0].grid_shape,
    )
