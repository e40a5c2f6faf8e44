"""A cell's embedding: the VAE's latent grid of a whole chip, quantised to int8 with one scale per channel.

Encoding runs the encoder once over the whole chip (no patch seams), optionally refines the latent by a few
gradient steps on the decoder's reconstruction error (the encoder is amortised over many cells; a few steps per
cell recover what it misses), then stores `round(z / scale)` as int8 with `scale = max|z| / 127` per channel, as
AlphaEarth and TESSERA publish their embeddings. Decoding multiplies back and runs the decoder once.

The paper's flat VAE gives the same structure: its latent grid is the vectors of the chip's patches, one per grid
position, so both architectures share the storage format and the decoder interface.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from geoembed_assets.core.patches import assemble, cut_patches
from geoembed_assets.core.training import Normalizer

QMAX = 127


@dataclass(frozen=True)
class LatentGrid:
    """Quantised latent of one chip: values (C, h, w) int8 and per-channel scales (C,) float32."""

    values: np.ndarray
    scale: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.values.shape)  # type: ignore[return-value]

    def dequantize(self) -> np.ndarray:
        return self.values.astype(np.float32) * self.scale[:, None, None]


def quantize(z: np.ndarray) -> LatentGrid:
    """int8 values and per-channel scales of a (C, h, w) float latent."""
    peak = np.abs(z).reshape(len(z), -1).max(axis=1) if z.size else np.zeros(len(z))
    scale = np.where(peak > 0, peak / QMAX, 1.0).astype(np.float32)
    values = np.clip(np.rint(z / scale[:, None, None]), -QMAX, QMAX).astype(np.int8)
    return LatentGrid(values, scale)


def _padded(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Pad (N, B, H, W) on the bottom/right to multiples of `factor` (replicate: no false edges)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % factor, (-w) % factor
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def encode_chip(
    model: torch.nn.Module,
    normalizer: Normalizer,
    reflectance: np.ndarray,
    refine_steps: int = 0,
    band_weights: torch.Tensor | None = None,
) -> LatentGrid:
    """Quantised latent grid of a (B, H, W) reflectance chip (NaN = no data, ignored by the refinement)."""
    return quantize(encode_chip_float(model, normalizer, reflectance, refine_steps, band_weights))


def encode_chip_float(
    model: torch.nn.Module,
    normalizer: Normalizer,
    reflectance: np.ndarray,
    refine_steps: int = 0,
    band_weights: torch.Tensor | None = None,
) -> np.ndarray:
    """`encode_chip` before the int8 quantisation: the (C, h, w) float latent grid."""
    model.eval()
    config = model.config
    if config.architecture == "flat":
        patches = cut_patches(reflectance, config.patch_size)
        ny, nx = reflectance.shape[1] // config.patch_size, reflectance.shape[2] // config.patch_size
        grid = np.zeros((config.latent_dim, ny, nx), np.float32)
        if len(patches):
            x, _ = normalizer.forward(patches.data)
            with torch.no_grad():
                mu, _ = model.encode(x)
            grid[:, patches.rows, patches.cols] = mu.numpy().T
        return grid
    x, mask = normalizer.forward(reflectance[None])
    h, w = x.shape[-2:]
    x, mask = _padded(x, config.factor), _padded(mask.float(), config.factor)
    with torch.no_grad():
        z, _ = model.encode(x)
    if refine_steps:
        z = _refine(model, z, x, mask, refine_steps, band_weights)
    return z[0].numpy()


def _refine(
    model: torch.nn.Module, z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, steps: int, weights: torch.Tensor | None
) -> torch.Tensor:
    """A few Adam steps on z minimising the weighted reconstruction error over valid pixels (decoder frozen)."""
    z = z.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=0.05)
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            sq = (model.decode(z) - x) ** 2 * (weights if weights is not None else 1.0) * mask
            loss = sq.sum() / mask.sum().clamp_min(1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return z.detach()


@torch.no_grad()
def decode_grid(model: torch.nn.Module, normalizer: Normalizer, latent: LatentGrid, shape: tuple[int, int]) -> np.ndarray:
    """(B, H, W) reflectance decoded from a quantised latent grid (every pixel; mask no-data afterwards)."""
    model.eval()
    z = torch.from_numpy(latent.dequantize())
    config = model.config
    if config.architecture == "flat":
        c, ny, nx = z.shape
        decoded = normalizer.inverse(model.decode(z.reshape(c, -1).T)).numpy()
        rows, cols = np.divmod(np.arange(ny * nx), nx)
        image = assemble(decoded, rows, cols, shape)
        return image
    out = normalizer.inverse(model.decode(z[None]))[0].numpy()
    return np.ascontiguousarray(out[:, : shape[0], : shape[1]])
