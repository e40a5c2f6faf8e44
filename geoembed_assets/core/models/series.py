"""A multi-date cell series through the pipeline's own ingest: `open_scene` -> `scene_cells` -> `chip_scene`.

The WorldCereal sample is 1 km x 1 km, too small for the default precision-5 cells, so it is cut at a finer
geohash precision (7: about 100 m x 150 m at 50 N) into small chips. Cells kept are those with every pixel valid on
every date that has data; a date where no kept cell has data (the sample's 2020-12 and 2021-01 gaps) is a
no-data date, kept in the series (NaN) so that the calendar stays visible to every model and baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from geoembed_assets.core.chipping import chip_scene, scene_cells
from geoembed_assets.core.readers import open_scene

WORLDCEREAL_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "worldcereal-monthly-s2l2a"


@dataclass(frozen=True)
class CellSeries:
    """Chips of the same cells on every date: `cube` is (cells, dates, bands, H, W) reflectance, NaN = no data."""

    geohashes: tuple[str, ...]
    dates: tuple[datetime, ...]
    scene_ids: tuple[str, ...]
    bands: tuple[str, ...]
    sensor: str
    cube: np.ndarray

    @property
    def has_data(self) -> np.ndarray:
        """(dates,) True where the date holds any valid pixel."""
        return ~np.isnan(self.cube).all(axis=(0, 2, 3, 4))

    def date_index(self, prefix: str) -> int:
        """Index of the date whose ISO form starts with `prefix` (e.g. "2021-05")."""
        hits = [i for i, d in enumerate(self.dates) if d.isoformat().startswith(prefix)]
        if len(hits) != 1:
            raise ValueError(f"date {prefix!r} matches {len(hits)} dates of the series")
        return hits[0]

    def subset(self, cells: np.ndarray) -> "CellSeries":
        return CellSeries(
            tuple(self.geohashes[i] for i in cells), self.dates, self.scene_ids, self.bands, self.sensor, self.cube[cells]
        )


def load_series(paths: list[str | Path], precision: int = 7, size_px: int = 16, max_cells: int | None = None) -> CellSeries:
    """Open each delivery, chip it on the geohash cells inside the first scene's footprint, stack by date."""
    scenes = sorted((open_scene(p) for p in paths), key=lambda s: s.datetime)
    if not scenes:
        raise ValueError("no scene to build a series from")
    bands = tuple(scenes[0].band_names)
    for s in scenes:
        if tuple(s.band_names) != bands:
            raise ValueError(f"{s.source}: bands {s.band_names} differ from {list(bands)}")
    cells = scene_cells(scenes[0], precision)
    stacks, coverage = [], []
    for scene in scenes:
        chips = chip_scene(scene, cells, size_px)
        stacks.append(np.stack([c.reflectance for c in chips]))
        coverage.append([c.coverage for c in chips])
    cube = np.stack(stacks, axis=1)  # (cells, dates, B, H, W)
    cov = np.asarray(coverage).T  # (cells, dates)
    dated = cov.max(axis=0) > 0
    keep = np.flatnonzero((cov[:, dated] >= 1.0).all(axis=1))
    if max_cells is not None:
        keep = keep[:max_cells]
    if not len(keep):
        raise ValueError(f"no precision-{precision} cell is fully covered on every date with data")
    return CellSeries(
        tuple(cells[i] for i in keep),
        tuple(s.datetime for s in scenes),
        tuple(s.scene_id for s in scenes),
        bands,
        scenes[0].sensor,
        np.ascontiguousarray(cube[keep]),
    )


def worldcereal_paths(directory: str | Path | None = None) -> list[Path]:
    """The twelve monthly GeoTIFFs of the shared WorldCereal sample."""
    folder = Path(directory) if directory is not None else WORLDCEREAL_DIR
    return sorted(folder.resolve().glob("S2L2A_*.tif"))
