"""Geohash cells and the pixel grid each cell is resampled onto.

A geohash of precision p is a box of 360/2^ceil(5p/2) degrees of longitude by 180/2^floor(5p/2) degrees of
latitude, aligned on (-180, -90). Cells are enumerated with integer arithmetic on that lattice (exact, no
floating point walking) and named with pygeohash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pygeohash
from affine import Affine


def cell_span_deg(precision: int) -> tuple[float, float]:
    """(lon_span, lat_span) of a cell in degrees."""
    bits = 5 * precision
    return 360.0 / 2 ** math.ceil(bits / 2), 180.0 / 2 ** math.floor(bits / 2)


@dataclass(frozen=True)
class CellGrid:
    """A geohash cell and the EPSG:4326 raster grid its chips are written on."""

    geohash: str
    west: float
    south: float
    east: float
    north: float
    size_px: int  # pixels per side; cells are square in degrees only at odd precisions

    @property
    def width(self) -> int:
        return self.size_px

    @property
    def height(self) -> int:
        lon_span, lat_span = self.east - self.west, self.north - self.south
        return max(1, round(self.size_px * lat_span / lon_span))

    @property
    def transform(self) -> Affine:
        return Affine(
            (self.east - self.west) / self.width, 0.0, self.west, 0.0, -(self.north - self.south) / self.height, self.north
        )

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.west, self.south, self.east, self.north

    @property
    def pixel_size_m(self) -> tuple[float, float]:
        """Approximate (x, y) pixel size in metres at the cell centre."""
        lat = math.radians((self.south + self.north) / 2)
        metres_per_deg = 111_320.0
        return (
            (self.east - self.west) / self.width * metres_per_deg * math.cos(lat),
            (self.north - self.south) / self.height * metres_per_deg,
        )

    def pixel_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Longitudes (width,) and latitudes (height,) of pixel centres."""
        t = self.transform
        return t.c + t.a * (np.arange(self.width) + 0.5), t.f + t.e * (np.arange(self.height) + 0.5)


def cell_bounds(geohash: str) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a geohash."""
    lat, lon, lat_err, lon_err = pygeohash.decode_exactly(geohash)
    return lon - lon_err, lat - lat_err, lon + lon_err, lat + lat_err


def cell_grid(geohash: str, size_px: int) -> CellGrid:
    return CellGrid(geohash, *cell_bounds(geohash), size_px=size_px)


def cells_in_bbox(west: float, south: float, east: float, north: float, precision: int) -> list[str]:
    """All geohashes of `precision` whose cells intersect the bbox (row-major from the north-west)."""
    lon_span, lat_span = cell_span_deg(precision)
    i0, i1 = math.floor((west + 180) / lon_span), math.ceil((east + 180) / lon_span)
    j0, j1 = math.floor((south + 90) / lat_span), math.ceil((north + 90) / lat_span)
    return [
        pygeohash.encode(-90 + (j + 0.5) * lat_span, -180 + (i + 0.5) * lon_span, precision)
        for j in range(j1 - 1, j0 - 1, -1)
        for i in range(i0, i1)
    ]


def region_of(geohash: str, region_precision: int) -> str:
    """The coarser geohash (Dagster partition) a cell belongs to."""
    return geohash[:region_precision]
