import pygeohash
import pytest

from geoembed_assets.core.geohash_grid import cell_bounds, cell_grid, cell_span_deg, cells_in_bbox, region_of


def test_cell_span_matches_geohash_bits() -> None:
    assert cell_span_deg(5) == (360 / 2**13, 180 / 2**12) == (0.0439453125, 0.0439453125)
    assert cell_span_deg(6) == (360 / 2**15, 180 / 2**15)


def test_cell_bounds_of_known_geohash() -> None:
    # The cell holding (37.68, -75.63) starts at the lattice line at or before the point: -180 + i * 360/2^13.
    lon_span, lat_span = cell_span_deg(5)
    expected_west = -180 + ((-75.63 + 180) // lon_span) * lon_span
    expected_south = -90 + ((37.68 + 90) // lat_span) * lat_span
    assert pygeohash.encode(37.68, -75.63, 5) == "dqdnq"
    west, south, east, north = cell_bounds("dqdnq")
    assert (west, south) == pytest.approx((expected_west, expected_south), abs=1e-12)
    assert (east - west, north - south) == pytest.approx((lon_span, lat_span))
    assert (west, south, east, north) == pytest.approx((-75.673828125, 37.6611328125, -75.6298828125, 37.705078125))


def test_cells_in_bbox_of_default_scene_footprint() -> None:
    cells = cells_in_bbox(-75.730, 37.585, -75.509, 37.761, 5)
    assert len(cells) == 30  # the paper's partitioner also finds 30 intersecting cells
    assert len(set(cells)) == 30 and "dqdnt" in cells
    assert {region_of(c, 3) for c in cells} == {"dqd"}


def test_grid_transform_and_pixel_size() -> None:
    grid = cell_grid("dqdnq", 480)
    assert (grid.width, grid.height) == (480, 480)
    assert grid.transform * (0, 0) == pytest.approx((grid.west, grid.north))
    assert grid.transform * (480, 480) == pytest.approx((grid.east, grid.south))
    px, py = grid.pixel_size_m
    assert 7 < px < 8.5 and 10 < py < 10.5  # ~10 m north-south at 37.7 N
    # neighbours share an edge exactly: chips of adjacent cells tile without gaps
    east_neighbour = cell_grid(pygeohash.encode(37.68, -75.62, 5), 480)
    assert east_neighbour.geohash != grid.geohash
    assert east_neighbour.west == grid.east
