"""A multi-date cell series through the pipeline's own ingest: `open_scene` -> `scene_cells` -> `chip_scene`.

Both shared samples are 1 km x 1 km, too small for the default precision-5 cells, so they are cut at a finer
geohash precision (7: about 100 m x 150 m at 46-50 N) into small chips. Cells kept are those with every pixel
holding data (before cloud masking) on every date that has data; a date where no kept cell has data (WorldCereal's
2020-12 and 2021-01 gaps) is a no-data date, kept in the series (NaN) so that the calendar stays visible to every
model and baseline.

eo-learn Slovenia (68 dates of NDVI stacked as the bands of one GeoTIFF, plus a cloud probability stack) enters
through the same `open_scene`: one `*.scene.json` descriptor per date (`slovenia_descriptors`) selects that date's
band of the NDVI stack (`"bands": {"NDVI": i}`), its datetime from timestamps.json, and band i of the cloud
probability stack as the date's cloud layer. Scaling is explicit: scale 1, offset 0 (values stay NDVI in [-1, 1],
errors are reported in NDVI units) and nodata "nan" (NDVI 0 is a value, not a fill). Pixels with cloud probability
>= `SLOVENIA_CLOUD_THRESHOLD` (0.4, s2cloudless' default) are no data; a date whose kept cells are less than
`min_clear` (90 %) clear is dropped as a whole (NaN, like WorldCereal's gap): partly cloudy dates are mostly
haze-contaminated NDVI even outside the mask. Clouds on the dates kept stay NaN pixels, masked in every score.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
from datetime import datetime
from pathlib import Path

import numpy as np

from geoembed_assets.core.chipping import chip_scene, scene_cells
from geoembed_assets.core.readers import open_scene

WORLDCEREAL_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "worldcereal-monthly-s2l2a"
SLOVENIA_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "eolearn-slovenia"
SLOVENIA_CLOUD_THRESHOLD = 0.4  # s2cloudless' default probability threshold for its binary cloud mask
SLOVENIA_MIN_CLEAR = 0.9  # share of the kept cells' pixels that must be clear for a date to be used
# Per series: held-back test dates, validation dates (tuning only) and ConvLSTM epochs (Slovenia has ~3.5x the
# windows). Fixed before any run; none at a series' ends, so linear interpolation has a date on each side.
DATASETS = {
    "worldcereal": {"holdout": ("2021-05", "2021-08"), "validation": ("2021-04", "2021-07"), "epochs": 60},
    "slovenia": {"holdout": ("2016-08-14", "2017-04-21", "2017-07-20", "2017-10-13"),
                 "validation": ("2016-09-13", "2017-05-21", "2017-08-24"), "epochs": 20},
}  # fmt: skip


@dataclass(frozen=True)
class CellSeries:
    """Chips of the same cells on every date: `cube` is (cells, dates, bands, H, W) reflectance, NaN = no data."""

    geohashes: tuple[str, ...]
    dates: tuple[datetime, ...]
    scene_ids: tuple[str, ...]
    bands: tuple[str, ...]
    sensor: str
    cube: np.ndarray
    units: str = "reflectance"  # what the cube's values (and so every error) are in

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
            tuple(self.geohashes[i] for i in cells), self.dates, self.scene_ids, self.bands, self.sensor, self.cube[cells], self.units
        )


def load_series(paths: list[str | Path], precision: int = 7, size_px: int = 16, max_cells: int | None = None,
                roots: list[str | Path] | None = None, min_clear: float | None = None, units: str = "reflectance") -> CellSeries:  # fmt: skip
    """Open each delivery, chip it on the geohash cells inside the first scene's footprint, stack by date.

    `roots`: where the deliveries' files may live (`open_scene`'s allow-list; default: each delivery's folder).
    `min_clear`: dates whose kept cells have a smaller share of clear (not cloud-masked) pixels become no-data dates.
    """
    scenes = sorted((open_scene(p, roots) for p in paths), key=lambda s: s.datetime)
    if not scenes:
        raise ValueError("no scene to build a series from")
    bands = tuple(scenes[0].band_names)
    for s in scenes:
        if tuple(s.band_names) != bands:
            raise ValueError(f"{s.source}: bands {s.band_names} differ from {list(bands)}")
    cells = scene_cells(scenes[0], precision)
    stacks, coverage = [], []
    for scene in scenes:
        chips = {c.grid.geohash: c for c in chip_scene(scene, cells, size_px)}
        blank = np.full((len(bands), size_px, size_px), np.nan, np.float32)
        stacks.append(np.stack([chips[g].reflectance if g in chips else blank for g in cells]))
        coverage.append([(chips[g].data_coverage if chips[g].data_coverage is not None else chips[g].coverage) if g in chips else 0.0
                         for g in cells])  # fmt: skip
    cube = np.stack(stacks, axis=1)  # (cells, dates, B, H, W)
    cov = np.asarray(coverage).T  # (cells, dates)
    dated = cov.max(axis=0) > 0
    keep = np.flatnonzero((cov[:, dated] >= 1.0).all(axis=1))
    if max_cells is not None:
        keep = keep[:max_cells]
    if not len(keep):
        raise ValueError(f"no precision-{precision} cell is fully covered on every date with data")
    cube = np.ascontiguousarray(cube[keep])
    if min_clear is not None:
        clear = (~np.isnan(cube).any(axis=2)).mean(axis=(0, 2, 3))  # (dates,) share of the kept pixels with data
        cube[:, clear < min_clear] = np.nan
    return CellSeries(
        tuple(cells[i] for i in keep),
        tuple(s.datetime for s in scenes),
        tuple(s.scene_id for s in scenes),
        bands,
        scenes[0].sensor,
        cube,
        units,
    )


def slovenia_descriptors(landing: str | Path, directory: str | Path | None = None,
                         threshold: float = SLOVENIA_CLOUD_THRESHOLD) -> list[Path]:  # fmt: skip
    """Write one `open_scene` descriptor per date of the eo-learn Slovenia NDVI stack into `landing`; their paths.

    Each names band i of ndvi_68dates.tif as "NDVI" (scale 1, offset 0, nodata NaN: NDVI units), the datetime of
    timestamps.json[i], and band i of cloud_probability_68dates.tif as its cloud layer (masked at `threshold`)."""
    folder = (Path(directory) if directory is not None else SLOVENIA_DIR).resolve()
    stamps = json.loads((folder / "timestamps.json").read_text())
    landing = Path(landing)
    landing.mkdir(parents=True, exist_ok=True)
    out = []
    for i, stamp in enumerate(stamps, start=1):
        meta = {
            "href": str(folder / "ndvi_68dates.tif"), "bands": {"NDVI": i}, "datetime": stamp, "sensor": "sentinel-2",
            "product_type": "L1C-NDVI", "scale": 1.0, "offset": 0.0, "nodata": "nan", "max_cloud_fraction": 1.0,
            "cloud_probability": {"href": str(folder / "cloud_probability_68dates.tif"), "band": i, "threshold": threshold},
        }  # fmt: skip
        path = landing / f"ndvi_{i:02d}_{stamp[:10]}.scene.json"
        path.write_text(json.dumps(meta, indent=1))
        out.append(path)
    return out


def load_slovenia(landing: str | Path, precision: int = 7, size_px: int = 16, max_cells: int | None = None,
                  directory: str | Path | None = None, threshold: float = SLOVENIA_CLOUD_THRESHOLD,
                  min_clear: float = SLOVENIA_MIN_CLEAR) -> CellSeries:  # fmt: skip
    """The eo-learn Slovenia NDVI series through the pipeline's ingest (descriptors written into `landing`)."""
    folder = (Path(directory) if directory is not None else SLOVENIA_DIR).resolve()
    paths = slovenia_descriptors(landing, folder, threshold)
    return load_series(paths, precision, size_px, max_cells, roots=[Path(landing).resolve(), folder], min_clear=min_clear, units="NDVI")


def worldcereal_paths(directory: str | Path | None = None) -> list[Path]:
    """The twelve monthly GeoTIFFs of the shared WorldCereal sample."""
    folder = Path(directory) if directory is not None else WORLDCEREAL_DIR
    return sorted(folder.resolve().glob("S2L2A_*.tif"))
