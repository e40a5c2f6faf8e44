"""Chipping against GDAL's own warp, on the real scene: every band, at 10, 20 and 60 m, lands on one grid."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject

from geoembed_assets.core.chipping import chip_scene, read_chip, scene_cells, write_chip
from geoembed_assets.core.scene import SceneError
from geoembed_assets_tests.conftest import EDGE_CELL, INSIDE_CELL


@pytest.fixture(scope="module")
def chips(s2_scene):
    return {c.grid.geohash: c for c in chip_scene(s2_scene, [INSIDE_CELL, EDGE_CELL], 480)}


def test_scene_cells(s2_scene) -> None:
    cells = scene_cells(s2_scene, 5)
    assert len(cells) == 30 and INSIDE_CELL in cells


def test_coverage(chips) -> None:
    assert chips[INSIDE_CELL].coverage == 1.0
    assert 0.05 < chips[EDGE_CELL].coverage < 0.95
    edge = chips[EDGE_CELL].reflectance
    empty_rows, empty_cols = np.isnan(edge).all(axis=(0, 2)), np.isnan(edge).all(axis=(0, 1))
    assert empty_rows.any() or empty_cols.any()  # the scene ends inside the cell
    assert not np.isnan(edge).all()


@pytest.mark.parametrize("band", ["B04", "B11", "B01"], ids=["10m", "20m", "60m"])
def test_bands_align_with_gdal_warp(s2_scene, chips, band: str) -> None:
    chip = chips[INSIDE_CELL]
    ours = chip.reflectance[chip.band_names.index(band)]
    source = next(b for b in s2_scene.bands if b.name == band)
    reference = np.zeros(ours.shape, np.float32)
    with rasterio.open(source.path) as src:
        reproject(
            rasterio.band(src, 1), reference, dst_transform=chip.grid.transform, dst_crs="EPSG:4326",
            resampling=Resampling.bilinear,
        )  # fmt: skip
    reference *= 1e-4
    inner = (slice(2, -2), slice(2, -2))
    assert np.abs(ours[inner] - reference[inner]).mean() < 0.003 * float(reference.mean())
    assert np.corrcoef(ours[inner].ravel(), reference[inner].ravel())[0, 1] > 0.995


def test_chip_roundtrip_keeps_values_and_georeference(chips, tmp_path: Path) -> None:
    chip = chips[EDGE_CELL]
    size = write_chip(chip, tmp_path / "c.tif")
    refl, bands, grid = read_chip(tmp_path / "c.tif")
    assert size == (tmp_path / "c.tif").stat().st_size and bands == chip.band_names
    assert grid == chip.grid
    assert np.array_equal(np.isnan(refl), np.isnan(chip.reflectance))
    assert np.nanmax(np.abs(refl - chip.reflectance)) <= 0.5e-4 + 1e-7
    with rasterio.open(tmp_path / "c.tif") as src:
        assert src.crs.to_epsg() == 4326 and src.compression.name == "zstd"
    assert not list(tmp_path.glob(".*tmp"))


def test_truncated_band_names_the_file(s2_scene, tmp_path: Path) -> None:
    band = s2_scene.bands[1]
    data = Path(band.path).read_bytes()
    broken = tmp_path / "s2_B02.jp2"
    broken.write_bytes(data[: len(data) // 10])
    scene = type(s2_scene)(**{**s2_scene.__dict__, "bands": (type(band)(band.name, str(broken), 10.0),) + s2_scene.bands[2:]})
    with pytest.raises(SceneError, match=str(broken)):
        chip_scene(scene, [INSIDE_CELL], 64)


def test_no_cell_is_an_error_naming_the_scene(s2_scene) -> None:
    with pytest.raises(SceneError, match=s2_scene.scene_id):
        chip_scene(s2_scene, [], 64)
