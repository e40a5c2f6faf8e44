"""A delivered scene: where its bands are, how to turn digital numbers into reflectance, and what it covers.

Readers for each delivery format live in :mod:`geoembed_assets.core.readers`; everything downstream only
sees :class:`Scene`, which keeps the pipeline sensor-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class SceneError(ValueError):
    """A delivered scene cannot be used; the message names the offending input."""


@dataclass(frozen=True)
class BandFile:
    """One band of a scene: a raster file (and the 1-based band index inside it)."""

    name: str  # e.g. "B04"
    path: str  # anything rasterio opens (a file path, or a /vsizip/ path)
    resolution_m: float  # native ground sampling distance in metres
    index: int = 1


@dataclass(frozen=True)
class Scene:
    """Metadata of one acquisition; pixels are read lazily by the chipper.

    Reflectance = DN * scale + offset (L1C/L2A: scale 1e-4; L2A baseline >= 04.00: offset -0.1).
    """

    scene_id: str
    sensor: str  # "sentinel-2a", "sentinel-2b", "sentinel-2", "landsat-8", ...
    product_type: str  # "L1C", "L2A", "L1TP", ...
    datetime: datetime  # acquisition start, timezone-aware UTC
    crs: str  # e.g. "EPSG:32618"
    footprint_wkt: str  # EPSG:4326 polygon of the valid data extent
    bands: tuple[BandFile, ...]
    source: str  # the delivered path (file or folder) this scene was registered from
    scale: float = 1e-4
    offset: float = 0.0
    nodata: float | None = 0.0  # DN that marks no data
    cloud_cover: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def to_metadata(self) -> dict[str, Any]:
        """JSON-friendly description (used for Dagster metadata and STAC Items)."""
        return {
            "scene_id": self.scene_id,
            "sensor": self.sensor,
            "product_type": self.product_type,
            "datetime": self.datetime.isoformat(),
            "crs": self.crs,
            "footprint_wkt": self.footprint_wkt,
            "bands": {b.name: b.resolution_m for b in self.bands},
            "source": self.source,
            "scale": self.scale,
            "offset": self.offset,
            "nodata": self.nodata,
            "cloud_cover": self.cloud_cover,
        }
