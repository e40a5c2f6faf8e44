"""Sentinel-2 L2A from a STAC API: `rustac serve` on localhost serves Earth-Search-like Items whose band COGs
(made from the default scene's bands, plus a synthetic SCL layer) are served by a real HTTP server."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from geoembed_assets.core import stac_ingest
from geoembed_assets.core.chipping import chip_scene, scene_cells
from geoembed_assets.core.geohash_grid import cell_grid
from geoembed_assets.core.readers import open_scene
from geoembed_assets.resources import GeoembedStorage
from geoembed_assets.sensors import landing_sensor
from geoembed_assets.stac_sensor import StacSource, stac_sensor
from geoembed_assets_tests.conftest import INSIDE_CELL, S2_DIR
from geoembed_assets_tests.ops import servers

COLLECTION = "sentinel-2-l2a"
CLOUDY_CELL = INSIDE_CELL  # wholly under cloud (SCL 9): skipped
DATES = {"S2A_18SVG_20160112_0_L2A": "2016-01-12T15:59:00Z", "S2A_18SVG_20160211_0_L2A": "2016-02-11T15:59:00Z"}
FAR_AWAY = "S2B_32TQM_20160115_0_L2A"  # an Item outside the area: never ingested


def _partly_cloudy_cell(scene) -> str:
    footprint = __import__("shapely").wkt.loads(scene.footprint_wkt)
    inside = sorted(g for g in scene_cells(scene, 5) if footprint.contains(box(*cell_grid(g, 1).bounds)) and g != CLOUDY_CELL)
    return inside[0]


def _cell_window(geohash: str, src, rows_fraction: float = 1.0) -> tuple[slice, slice]:
    """Pixel rows/cols of `src` covering the cell (its northern `rows_fraction`)."""
    west, south, east, north = transform_bounds("EPSG:4326", src.crs, *cell_grid(geohash, 1).bounds)
    r0, c0 = src.index(west, north)
    r1, c1 = src.index(east, south)
    return slice(max(r0, 0), max(r0, 0) + int((r1 - r0) * rows_fraction)), slice(max(c0, 0), c1)


def _write_cog(path: Path, data: np.ndarray, profile: dict) -> None:
    profile = {**profile, "driver": "COG", "compress": "deflate", "blocksize": 256}
    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def make_item(item_id: str, when: str, base_url: str, bbox: list[float], with_scl: bool = True) -> dict:
    assets = {
        key: {"href": f"{base_url}/{band}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
              "roles": ["data"], "raster:bands": [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": 0.0}]}
        for key, band in stac_ingest.EARTH_SEARCH_BANDS.items()
    }  # fmt: skip
    if with_scl:
        assets["scl"] = {"href": f"{base_url}/SCL.tif", "type": "image/tiff; application=geotiff", "roles": ["data"]}
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": COLLECTION, "bbox": bbox,
        "geometry": mapping(box(*bbox)), "links": [], "assets": assets,
        "stac_extensions": ["https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
        "properties": {"datetime": when, "platform": "sentinel-2a", "constellation": "sentinel-2", "eo:cloud_cover": 7.5,
                       "s2:processing_baseline": "02.01", "s2:mgrs_tile": item_id.split("_")[1], "grid:code": "MGRS-18SVG"},
    }  # fmt: skip


@pytest.fixture(scope="module")
def stac_api(s2_scene, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("stac")
    cogs = root / "cogs"
    cogs.mkdir()
    for band in stac_ingest.EARTH_SEARCH_BANDS.values():  # the default scene's bands as COGs, DNs unchanged
        with rasterio.open(S2_DIR / f"s2_{band}.jp2") as src:
            _write_cog(cogs / f"{band}.tif", src.read(1), {**src.profile, "nodata": 0})
    partly = _partly_cloudy_cell(s2_scene)
    with rasterio.open(S2_DIR / "s2_B05.jp2") as src:  # SCL on the 20 m grid: vegetation, two clouds
        scl = np.full(src.shape, 4, np.uint8)
        scl[_cell_window(CLOUDY_CELL, src)] = 9
        scl[_cell_window(partly, src, rows_fraction=0.06)] = 8
        _write_cog(cogs / "SCL.tif", scl, {**src.profile, "dtype": "uint8", "nodata": None, "driver": "COG"})
    bbox = list(transform_bounds("EPSG:32618", "EPSG:4326", *rasterio.open(S2_DIR / "s2_B02.jp2").bounds))
    with servers.http_file_server(cogs) as files:
        items = [make_item(i, when, files, bbox) for i, when in DATES.items()]
        items.append(make_item(FAR_AWAY, "2016-01-15T10:30:00Z", files, [11.0, 45.0, 12.4, 46.0]))
        collection = {
            "type": "Collection", "stac_version": "1.0.0", "id": COLLECTION, "description": "Sentinel-2 L2A (test)",
            "license": "proprietary", "links": [], "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2015-06-27T00:00:00Z", None]]}},
        }  # fmt: skip
        (root / "collection.json").write_text(json.dumps(collection))
        (root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        with servers.rustac_serve([root / "collection.json", root / "items.json"]) as api:
            yield {"api": api, "bbox": bbox, "partly_cloudy": partly}


def evaluate(sensor, data_dir: Path, cursor: str | None, instance, **resources) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": GeoembedStorage(data_dir=str(data_dir)), **resources})
    return sensor(context)


def test_sensor_ingests_new_items_once_with_a_cursor(stac_api: dict, tmp_path: Path) -> None:
    servers.require_module("pystac_client")
    data_dir = tmp_path / "data"
    source = dict(api_url=stac_api["api"], bbox=stac_api["bbox"], start="2016-01-01")
    landing = data_dir / "landing"
    with dg.instance_for_test() as instance:
        january = evaluate(stac_sensor, data_dir, None, instance, stac_source=StacSource(**source, end="2016-01-31"))
        assert sorted(p.name for p in landing.iterdir()) == ["S2A_18SVG_20160112_0_L2A"]
        assert json.loads(january.cursor) == {"after": "2016-01-12T15:59:00+00:00", "ids": ["S2A_18SVG_20160112_0_L2A"]}

        later = evaluate(stac_sensor, data_dir, january.cursor, instance, stac_source=StacSource(**source))
        assert sorted(p.name for p in landing.iterdir()) == sorted(DATES)  # only the new Item, not the far one
        assert json.loads(later.cursor)["after"] == "2016-02-11T15:59:00+00:00"
        again = evaluate(stac_sensor, data_dir, later.cursor, instance, stac_source=StacSource(**source))
        assert again.skip_reason is not None and sorted(p.name for p in landing.iterdir()) == sorted(DATES)

        # the deliveries are ordinary landing-folder scenes: the landing sensor requests one run per month
        runs = evaluate(landing_sensor, data_dir, None, instance)
        assert sorted(r.partition_key for r in runs.run_requests) == ["2016-01-01|dqd", "2016-02-01|dqd"]

    delivery = landing / "S2A_18SVG_20160112_0_L2A"
    meta = json.loads((delivery / "scene.json").read_text())
    assert meta["product_type"] == "L2A" and meta["tile"] == "18SVG" and meta["scl"] == "SCL.tif"
    assert meta["sensor"] == "sentinel-2a" and meta["max_cloud_fraction"] == 0.15 and meta["offset"] == 0.0
    assert sorted(p.name for p in delivery.iterdir()) == sorted([*(f"{b}.tif" for b in stac_ingest.EARTH_SEARCH_BANDS.values()), "SCL.tif", "scene.json"])
    assert not [p for p in landing.iterdir() if p.name.startswith(".")]  # no partial download left behind


def test_clouds_are_masked_and_cloudy_cells_skipped(stac_api: dict, s2_scene, tmp_path: Path) -> None:
    servers.require_module("pystac_client")
    items = stac_ingest.search_new_items(stac_api["api"], tuple(stac_api["bbox"]), "2016-01-01", "2016-01-31", stac_ingest.StacCursor())
    assert [i.id for i in items] == ["S2A_18SVG_20160112_0_L2A"]
    scene = open_scene(stac_ingest.ingest_item(items[0], tmp_path / "landing"))
    assert scene.product_type == "L2A" and scene.extra["scl"].endswith("SCL.tif") and len(scene.bands) == 12

    cells = [g for g in scene_cells(s2_scene, 5) if g.startswith("dqd")]
    clear = {c.grid.geohash: c for c in chip_scene(s2_scene, cells, 64)}  # the same pixels, no SCL (L1C)
    masked = {c.grid.geohash: c for c in chip_scene(scene, cells, 64)}
    partly = stac_api["partly_cloudy"]
    assert CLOUDY_CELL in clear and CLOUDY_CELL not in masked  # 100 % cloud > 15 %: skipped
    assert set(masked) == set(clear) - {CLOUDY_CELL}
    cloud = masked[partly].cloud_fraction
    assert 0.02 < cloud < 0.12  # the 6 % strip of medium-probability cloud
    assert masked[partly].coverage == pytest.approx(clear[partly].coverage - cloud, abs=0.02)
    assert np.isnan(masked[partly].reflectance[:, :2]).all()  # northern rows masked in every band
    for g in set(masked) - {partly}:  # elsewhere the delivered COGs give the very same chips
        # (neighbours of the cloudy cell catch its edge: the cloud was painted on the UTM box around that cell)
        assert masked[g].cloud_fraction < 0.02
        # the L2A subset of the 13 L1C bands (no B10)
        l1c = clear[g].reflectance[[clear[g].band_names.index(b) for b in masked[g].band_names]]
        kept = ~np.isnan(masked[g].reflectance)
        np.testing.assert_array_equal(masked[g].reflectance[kept], l1c[kept])
        assert kept.mean() == pytest.approx(np.isfinite(l1c).mean() - masked[g].cloud_fraction, abs=0.01)
    assert sum(masked[g].cloud_fraction == 0.0 for g in masked) >= len(masked) - 6
