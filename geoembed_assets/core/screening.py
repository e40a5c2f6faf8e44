"""Radiometric screening of chips before they are stored: garbage in a delivery is refused or flagged, never
embedded silently.

- coverage below the minimum: skipped, and counted per scene (the all-zero scene beside a good one is reported);
- constant data (every band one value, e.g. DN 12000 everywhere): skipped, the value named;
- saturated data (Sentinel-2 DN 65535 in most pixels): skipped;
- negative reflectance (dark pixels below the L2A/baseline-04 offset): kept, but counted and reported, because the
  chip stores reflectance clipped at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoembed_assets.core.chipping import Chip
from geoembed_assets.core.scene import Scene

SATURATED_DN = 65535  # Sentinel-2 L1C/L2A "SATURATED" special value (and the top of every uint16 product)
MAX_SATURATED_FRACTION = 0.5


@dataclass(frozen=True)
class Screened:
    """The verdict on one chip: `reason` is None when it is kept."""

    reason: str | None
    negative_fraction: float  # share of valid values below 0 reflectance (stored clipped at 0)
    saturated_fraction: float


def screen_chip(chip: Chip, scene: Scene, min_coverage: float) -> Screened:
    """Decide whether a chip is stored; the reason names the cell, and the caller adds the scene."""
    refl = chip.reflectance
    finite = np.isfinite(refl)
    n = int(finite.sum())
    negative = float((refl[finite] < 0).sum() / n) if n else 0.0
    saturated_value = np.float32(SATURATED_DN) * np.float32(scene.scale) + np.float32(scene.offset)
    saturated = float((np.abs(refl[finite] - saturated_value) < 0.5 * scene.scale).sum() / n) if n else 0.0
    cell = chip.grid.geohash
    if chip.coverage < min_coverage:
        return Screened(f"cell {cell}: coverage {chip.coverage:.3f} below the minimum {min_coverage}", negative, saturated)
    if saturated > MAX_SATURATED_FRACTION:
        return Screened(f"cell {cell}: saturated (DN {SATURATED_DN}) in {saturated:.0%} of the values", negative, saturated)
    spread = [float(np.nanmax(b) - np.nanmin(b)) for b in refl if np.isfinite(b).any()]
    if spread and max(spread) < 0.5 * scene.scale:  # less than one DN apart (resampling rounds a little)
        value = float(refl[finite][0])
        dn = (value - scene.offset) / scene.scale
        return Screened(
            f"cell {cell}: constant reflectance {value:.4f} (DN {dn:.0f}) in every band: not an image", negative, saturated
        )
    return Screened(None, negative, saturated)
