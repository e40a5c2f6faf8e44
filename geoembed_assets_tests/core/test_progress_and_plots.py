"""Progress lines (cells done of total, rate, time left, throttling) and the PNG pictures of core.plots."""

import base64

import numpy as np
import pandas as pd
import pytest

from geoembed_assets.core import plots
from geoembed_assets.core.progress import Progress, track

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_reports_done_rate_and_time_left_and_throttles() -> None:
    lines: list[str] = []
    clock = FakeClock()
    progress = Progress("training", 10, lines.append, every_s=10, clock=clock)
    progress.start()
    assert lines == ["training: 10 cells to do"]
    clock.now += 4
    progress.advance()  # 4 s after start: throttled (the start line was 4 s ago)
    assert len(lines) == 1
    clock.now += 16  # 20 s, 2 cells: 0.1 cells/s, 8 left -> 80 s
    progress.advance(detail="dqdnw")
    assert lines[-1] == "training 2/10 cells (20%), 0.1 cells/s, about 1 min 20 s left (dqdnw)"
    for _ in range(7):
        clock.now += 1
        progress.advance()  # within 10 s of the last line: silent
    assert len(lines) == 2
    clock.now += 1
    progress.advance()  # the last one always reports
    assert lines[-1] == "training 10/10 cells (100%), 0.357 cells/s, done in 28 s"


def test_slow_units_report_seconds_per_unit() -> None:
    lines: list[str] = []
    clock = FakeClock()
    progress = Progress("training", 3, lines.append, clock=clock)
    clock.now += 125
    progress.advance()
    assert lines == ["training 1/3 cells (33%), 125 s per cell, about 4 min 10 s left"]


def test_track_yields_every_item_and_is_silent_without_a_logger() -> None:
    lines: list[str] = []
    assert list(track(range(5), "scoring", lines.append, unit="chips", every_s=0)) == [0, 1, 2, 3, 4]
    assert lines[0] == "scoring: 5 chips to do" and lines[-1].startswith("scoring 5/5 chips (100%)")
    assert len(lines) == 6
    assert list(track(iter(range(3)), "scoring", None)) == [0, 1, 2]


def _png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_MAGIC)
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_pictures_are_pngs_and_markdown_embeds_them() -> None:
    chips = pd.DataFrame({"geohash": ["dqdnw", "dqdnx", "dqdnw", "dqdns"], "coverage": [1.0, 0.8, 1.0, 0.25]})
    width, height = _png_size(plots.coverage_map(chips))
    assert width > 200 and height > 200
    footprint = "POLYGON((-75.8 37.5, -75.6 37.5, -75.6 37.7, -75.8 37.7, -75.8 37.5))"
    _png_size(plots.footprint_map(footprint, ["dqdnw", "dqdnx"]))
    _png_size(plots.loss_curves({"dqdnw": [1.0, 0.5, 0.3], "dqdnx": [2.0, 1.0]}, max_epochs=3))
    rng = np.random.default_rng(0)
    chip = rng.random((13, 32, 32)).astype(np.float32)
    bands = [f"B{i:02d}" for i in range(1, 9)] + ["B8A", "B09", "B10", "B11", "B12"]
    _png_size(plots.chip_and_reconstruction(chip, chip * 0.9, bands, "dqdnw"))
    md = plots.markdown_image(plots.cell_map({"dqdnw": 0.001, "dqdnx": 0.004}, "mse", "MSE", flagged=["dqdnx"]), "x")
    assert md.startswith("![x](data:image/png;base64,")
    assert base64.b64decode(md[len("![x](data:image/png;base64,"):-1]).startswith(PNG_MAGIC)
    with pytest.raises(ValueError):
        plots.cell_map({}, "empty", "x")


def test_cells_that_ran_to_the_epoch_cap_are_flagged() -> None:
    checkpoints = pd.DataFrame({"geohash": ["a", "b", "c"], "epochs": [40, 17, 40]})
    assert plots.at_epoch_cap(checkpoints, 40)["geohash"].tolist() == ["a", "c"]
