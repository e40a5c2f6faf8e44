"""Differentiable inter-band indices (NDVI, NDWI, NDBI) and the band roles they need per sensor."""

from __future__ import annotations

import torch

# Which band plays which role, by band name; names follow each sensor's own numbering.
BAND_ROLES: dict[str, dict[str, str]] = {
    "sentinel-2": {"green": "B03", "red": "B04", "nir": "B08", "swir1": "B11"},
    "landsat-8": {"green": "B3", "red": "B4", "nir": "B5", "swir1": "B6"},
}

# index -> (a, b): index = (a - b) / (a + b)
INDEX_ROLES: dict[str, tuple[str, str]] = {
    "ndvi": ("nir", "red"),
    "ndwi": ("green", "nir"),
    "ndbi": ("swir1", "nir"),
}


def roles_for(sensor: str) -> dict[str, str]:
    """Band roles of a sensor family ("sentinel-2a" -> the Sentinel-2 roles); empty when unknown."""
    for family, roles in BAND_ROLES.items():
        if sensor.startswith(family):
            return roles
    return {}


def index_band_pairs(sensor: str, band_names: list[str] | tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Channel positions (a, b) of each index computable from these bands."""
    roles = roles_for(sensor)
    pairs = {}
    for index, (ra, rb) in INDEX_ROLES.items():
        a, b = roles.get(ra), roles.get(rb)
        if a in band_names and b in band_names:
            pairs[index] = (list(band_names).index(a), list(band_names).index(b))
    return pairs


def normalized_difference(x: torch.Tensor, a: int, b: int, eps: float = 1e-2) -> torch.Tensor:
    """(x[a] - x[b]) / (x[a] + x[b] + eps) along the channel axis of (N, C, H, W) reflectance.

    Reflectance is clamped at 0 and eps added so the index stays in [-1, 1] with bounded gradients, even over
    dark water where both bands are near zero (an unbounded index makes the loss diverge there).
    """
    xa, xb = x[:, a].clamp_min(0), x[:, b].clamp_min(0)
    return (xa - xb) / (xa + xb + eps)
