"""Turn a delivered scene into a :class:`~geoembed_assets.core.scene.Scene`, whatever shape it arrived in.

:func:`open_scene` accepts, by what the path is:

1. ``*.scene.json`` descriptor: metadata plus ``href`` to a folder of per-band rasters (``pkg://package/sub/dir``
   for a folder inside an installed package, or a path relative to the descriptor);
2. a folder of per-band rasters (``s2_B01.jp2``, ``l8_B1.tif``, ...) with an optional ``scene.json`` sidecar;
3. a multi-band GeoTIFF/COG, with an optional ``<file>.scene.json`` or ``<stem>.scene.json`` sidecar;
4. a Sentinel-2 SAFE product, as a ``.SAFE`` folder or a ``.zip`` of one (read in place through ``/vsizip/``).

Metadata keys of descriptors and sidecars: ``sensor``, ``product_type``, ``datetime`` (ISO 8601), and optionally
``tile``, ``cloud_cover``, ``processing_baseline``, ``scale``, ``offset``, ``nodata``, and ``bands``
(band name -> file name; for a multi-band raster a list of names in file order, or ``{name: 1-based band index}``
to take a subset of its bands, e.g. one date of a time stack). ``nodata`` may be ``"nan"`` (float rasters whose NaN
marks no data, and no in-range value does). A descriptor may name a per-pixel cloud probability layer,
``"cloud_probability": {"href": ..., "band": 1-based index, "threshold": 0.4}``: chipping masks pixels at or above
the threshold as cloud (see :mod:`geoembed_assets.core.cloud_mask`).

Every band is opened and its last block read before the scene is accepted, so a truncated download, a missing
band or a band in the wrong CRS fails at registration with a :class:`SceneError` naming the file, not mid-run.
"""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import rasterio
import shapely
from pyproj import Transformer
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window
from shapely.geometry import box

from geoembed_assets.core.safe_paths import (
    UnsafePathError,
    inside_any,
    package_data_roots,
    resolve_package_href,
    safe_name,
)
from geoembed_assets.core.scene import BandFile, Scene, SceneError

__all__ = ["open_scene", "validate_readable"]

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
S2_L2A_BANDS = tuple(b for b in S2_BANDS if b != "B10")  # L2A products drop the cirrus band B10
LANDSAT8_REQUIRED = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")

# Landsat-8 Level-1 DN: 1e-4 is only an approximation used when the delivery gives no scale; the exact TOA
# rescaling is in the product's MTL (REFLECTANCE_MULT_BAND_x / REFLECTANCE_ADD_BAND_x) and should be put in
# the descriptor. Collection-2 Level-2 surface reflectance (L2SP) has the fixed 2.75e-5 / -0.2.
LANDSAT_L1_SCALING = (2e-5, -0.1)  # USGS Level-1 reflectance rescaling (REFLECTANCE_MULT/ADD)
LANDSAT_L2SP_SCALING = (2.75e-5, -0.2)
SENTINEL2_SCALING = (1e-4, 0.0)

_RASTER_SUFFIXES = {".tif", ".tiff", ".jp2"}
_BAND_RE = re.compile(r"(?<![A-Za-z0-9])(B\d{1,2}A?|BQA)(?![A-Za-z0-9])")
_NOT_FOR_EMBEDDING = {"BQA"}
# Acquisition time tags, best first; TIFFTAG_DATETIME is often the file's write time, so it comes last.
_DATETIME_TAGS = (
    "ACQUISITION_DATE",
    "DATATAKE_1_DATATAKE_SENSING_START",
    "DATETIME",
    "ACQUISITION_MONTH",
    "TIFFTAG_DATETIME",
)
_L1C_BAND_RE = re.compile(r"^GRANULE/[^/]+/IMG_DATA/[^/]*_(B\d[\dA])\.jp2$")
_L2A_BAND_RE = re.compile(r"^GRANULE/[^/]+/IMG_DATA/R(\d+)m/[^/]*_(B\d[\dA])_\d+m\.jp2$")
_MTD_RE = re.compile(r"^(?:(?P<safe>[^/]+)/)?MTD_MSIL(?:1C|2A)\.xml$")
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class _OpenedBand:
    """What open_scene needs from one band's header."""

    band: BandFile
    crs: CRS | None
    bounds: BoundingBox
    nodata: float | None
    tags: dict[str, str]


def open_scene(path: str | Path, roots: Iterable[str | Path] | None = None) -> Scene:
    """Open a delivered scene (descriptor, band folder, multi-band GeoTIFF, SAFE folder or SAFE zip).

    Scaling (reflectance = DN * scale + offset): descriptor/sidecar/MTD values always win. Otherwise
    Sentinel-2 uses 1e-4 / 0; Landsat-8 ``L2SP`` products 2.75e-5 / -0.2; other Landsat-8 (Level-1 DN) use
    1e-4 / 0 as a documented approximation (the exact values are in the MTL file; put them in the descriptor).
    Nodata: metadata, else the file's nodata, else 0 for Sentinel-2/Landsat DN.

    Every file the delivery names (descriptor href, band map, band files, symlink targets) must resolve inside
    `roots` (default: the folder holding `path`, i.e. the landing folder) or inside the data of an allow-listed
    package (see :mod:`geoembed_assets.core.safe_paths`); the scene id must be a safe file name. A refusal is a
    :class:`SceneError` naming the input.
    """
    p = Path(path).absolute()
    if not p.exists():
        raise SceneError(f"{p}: no such file or folder")
    allowed = tuple(Path(r).resolve() for r in (roots if roots is not None else [p.parent])) + tuple(
        package_data_roots()
    )
    try:
        inside_any(p, allowed, "delivery")
        if p.is_file() and p.name.endswith(".scene.json"):
            return _open_descriptor(p, allowed)
        if p.is_dir() and (p.suffix.upper() == ".SAFE" or any(p.glob("MTD_MSIL*.xml"))):
            return _open_safe_folder(p, allowed)
        if p.is_file() and p.suffix.lower() == ".zip":
            return _open_safe_zip(p, allowed)
        if p.is_dir():
            sidecar = p / "scene.json"
            return _open_band_folder(p, _read_json(sidecar) if sidecar.is_file() else {}, source=p, allowed=allowed)
        return _open_multiband(p, _file_sidecar(p), source=p, allowed=allowed)
    except UnsafePathError as e:
        raise SceneError(f"{p}: refused: {e}") from e


def validate_readable(band: BandFile) -> None:
    """Read the band's last block so a truncated or corrupt file fails now, not halfway through chipping."""
    try:
        with rasterio.open(band.path) as ds:
            block_h, block_w = ds.block_shapes[band.index - 1]
            row = (ds.height - 1) // block_h * block_h
            col = (ds.width - 1) // block_w * block_w
            ds.read(band.index, window=Window(col, row, ds.width - col, ds.height - row))
    except RasterioError as e:
        raise SceneError(f"{band.path}: cannot read band {band.name} (truncated or corrupt?): {_reason(e)}") from e


# --- cases 1-3: descriptor, band folder, multi-band GeoTIFF ---------------------------------------------------


def _open_descriptor(path: Path, allowed: tuple[Path, ...]) -> Scene:
    """A ``*.scene.json`` names a band folder (or one raster) elsewhere and carries the metadata."""
    meta = _read_json(path)
    if meta.get("cloud_probability"):
        meta = {**meta, "cloud_probability": _cloud_probability_layer(meta["cloud_probability"], path, allowed)}
    href = meta.get("href")
    if not href:
        raise SceneError(f"{path}: descriptor has no 'href'")
    target = _resolve_href(str(href), path.parent)
    if not str(href).startswith("pkg://"):
        inside_any(target, allowed, f"{path}: href {href!r}")
    if target.is_dir():
        sidecar = target / "scene.json"
        merged = {**(_read_json(sidecar) if sidecar.is_file() else {}), **meta}
        return _open_band_folder(target, merged, source=path, allowed=allowed)
    if target.is_file():
        return _open_multiband(target, meta, source=path, allowed=allowed)
    raise SceneError(f"{path}: href {href!r} resolves to {target}, which does not exist")


def _cloud_probability_layer(spec: Any, descriptor: Path, allowed: tuple[Path, ...]) -> dict[str, Any]:
    """{"path", "band", "threshold"} of a descriptor's cloud probability layer, its file checked like a band's."""
    if not isinstance(spec, dict) or not spec.get("href"):
        raise SceneError(f"{descriptor}: 'cloud_probability' must be an object with 'href', 'band' and 'threshold'")
    target = _resolve_href(str(spec["href"]), descriptor.parent)
    inside_any(target, allowed, f"{descriptor}: cloud_probability href {spec['href']!r}")
    try:
        band, threshold = int(spec.get("band", 1)), float(spec.get("threshold", 0.4))
    except (TypeError, ValueError) as e:
        raise SceneError(f"{descriptor}: cloud_probability band/threshold are not numbers: {e}") from e
    if not 0.0 < threshold <= 1.0:
        raise SceneError(f"{descriptor}: cloud_probability threshold {threshold} is not in (0, 1]")
    opened = _open_band("cloud_probability", str(target), band)
    validate_readable(opened.band)
    return {"path": str(target), "band": band, "threshold": threshold}


def _resolve_href(href: str, base: Path) -> Path:
    """``pkg://package/sub/dir`` -> folder inside an allow-listed package (nothing imported); other relative
    paths -> from ``base``."""
    if href.startswith("pkg://"):
        return resolve_package_href(href)
    p = Path(href).expanduser()
    return p if p.is_absolute() else base / p


def _open_band_folder(folder: Path, meta: dict[str, Any], *, source: Path, allowed: tuple[Path, ...]) -> Scene:
    """One raster per band; band names come from the file names (or the metadata's ``bands`` mapping)."""
    files = _folder_band_files(folder, meta.get("bands"))
    if meta.get("scl"):  # L2A scene classification, used to mask clouds (core/cloud_mask.py)
        meta = {**meta, "scl": str(_resolve_href(str(meta["scl"]), folder))}
    sensor = str(meta.get("sensor") or _guess_sensor(files.keys(), [p.name for p in files.values()]))
    named = {
        _normalise_band(name, sensor): (str(p), 1) for name, p in files.items() if name not in _NOT_FOR_EMBEDDING
    }
    return _assemble(
        source=source, label=str(folder), named=named, meta=meta, sensor=sensor, complete=True, allowed=allowed
    )


def _folder_band_files(folder: Path, mapping: dict[str, str] | None) -> dict[str, Path]:
    """Raw band name -> file; previews and non-raster files are skipped."""
    if mapping:
        return {name: folder / filename for name, filename in mapping.items()}
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in _RASTER_SUFFIXES or p.name.lower().startswith("preview"):
            continue
        matches = _BAND_RE.findall(p.stem)
        if not matches:
            continue
        name = matches[-1]
        if name in found:
            raise SceneError(f"{folder}: band {name} is delivered twice ({found[name].name}, {p.name})")
        found[name] = p
    if not found:
        raise SceneError(f"{folder}: no band rasters found (expected file names containing B01, B8A, B1, ...)")
    return found


def _open_multiband(path: Path, meta: dict[str, Any], *, source: Path, allowed: tuple[Path, ...]) -> Scene:
    """All bands in one file, named by the band descriptions (B1..Bn when unset)."""
    try:
        with rasterio.open(path) as ds:
            descriptions = list(ds.descriptions)
    except RasterioError as e:
        raise SceneError(f"{path}: cannot open as a raster: {_reason(e)}") from e
    described = [(d or "").strip() for d in descriptions]
    listed = meta.get("bands")
    if isinstance(listed, dict):  # a subset of the file's bands, named: {name: 1-based index}
        try:
            picks = {str(n).strip(): int(i) for n, i in listed.items()}
        except (TypeError, ValueError) as e:
            raise SceneError(f"{path}: the 'bands' map must be {{name: 1-based band index}}: {e}") from e
        outside = {n: i for n, i in picks.items() if not 1 <= i <= len(described)}
        if not picks or outside or not all(picks):
            raise SceneError(f"{path}: band indices {outside or picks} do not select bands of its {len(described)}")
        sensor = str(meta.get("sensor") or _guess_sensor(picks, [path.name]))
        named = {n: (str(path), i) for n, i in picks.items()}
        return _assemble(source=source, label=str(path), named=named, meta=meta, sensor=sensor, complete=False, allowed=allowed)
    if isinstance(listed, list):  # the sidecar names the bands in file order
        if len(listed) != len(described):
            raise SceneError(f"{path}: the sidecar lists {len(listed)} band names for {len(described)} bands")
        described = [str(b).strip() for b in listed]
    elif not all(described):
        missing = [i for i, d in enumerate(described, start=1) if not d]
        raise SceneError(
            f"{path}: band(s) {missing} have no band description, so their spectral meaning (and the NDVI "
            "bands) is unknown; set the descriptions or list the names in the sidecar as \"bands\": [...]"
        )
    sensor = str(meta.get("sensor") or _guess_sensor(described, [path.name]))
    names = [_multiband_name(d, i, sensor) for i, d in enumerate(described, start=1)]
    if len(set(names)) != len(names):
        raise SceneError(f"{path}: duplicate band names {names} (from the band descriptions)")
    named = {n: (str(path), i) for i, n in enumerate(names, start=1)}
    # A multi-band file is a deliberate band subset (e.g. 9-band L2A composites): no completeness check.
    return _assemble(
        source=source, label=str(path), named=named, meta=meta, sensor=sensor, complete=False, allowed=allowed
    )


def _multiband_name(description: str, index: int, sensor: str) -> str:
    """The band description (normalised if it is a band code), else ``B<index>``.

    Positional fallback names carry no spectral meaning, so they are never normalised (B1 stays B1).
    """
    if not description:
        return f"B{index}"
    return _normalise_band(description, sensor) if _BAND_RE.fullmatch(description) else description


def _file_sidecar(path: Path) -> dict[str, Any]:
    """Metadata from ``<file>.scene.json`` or ``<stem>.scene.json`` next to a raster, if any."""
    for candidate in (path.with_name(path.name + ".scene.json"), path.with_name(path.stem + ".scene.json")):
        if candidate.is_file():
            return _read_json(candidate)
    return {}


# --- case 4: Sentinel-2 SAFE ------------------------------------------------------------------------------


def _open_safe_folder(folder: Path, allowed: tuple[Path, ...]) -> Scene:
    """An unpacked ``.SAFE`` folder."""
    mtd = sorted(folder.glob("MTD_MSIL*.xml"))
    if not mtd:
        raise SceneError(f"{folder}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml in the SAFE folder")
    members = [p.relative_to(folder).as_posix() for p in folder.glob("GRANULE/*/IMG_DATA/**/*.jp2")]
    return _open_safe(
        source=folder,
        product=folder.name.removesuffix(".SAFE"),
        mtd_xml=mtd[0].read_bytes(),
        members=members,
        to_path=lambda m: str(folder / m),
        allowed=allowed,
    )


def _open_safe_zip(path: Path, allowed: tuple[Path, ...]) -> Scene:
    """A zipped SAFE product, read in place through GDAL's ``/vsizip/``."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            hits = [(n, m) for n in names if (m := _MTD_RE.match(n))]
            if not hits:
                raise SceneError(f"{path}: zip holds no MTD_MSIL1C.xml or MTD_MSIL2A.xml")
            mtd_name, match = hits[0]
            mtd_xml = zf.read(mtd_name)
    except zipfile.BadZipFile as e:
        raise SceneError(f"{path}: not a readable zip: {e}") from e
    safe = match["safe"]
    prefix = f"{safe}/" if safe else ""
    members = [n.removeprefix(prefix) for n in names if n.startswith(prefix)]
    return _open_safe(
        source=path,
        product=(safe or path.stem).removesuffix(".SAFE"),
        mtd_xml=mtd_xml,
        members=members,
        to_path=lambda m: f"/vsizip/{path}/{prefix}{m}",
        allowed=allowed,
    )


def _open_safe(
    *, source: Path, product: str, mtd_xml: bytes, members: Iterable[str], to_path: Callable[[str], str],
    allowed: tuple[Path, ...],
) -> Scene:
    """Shared SAFE logic: metadata from the MTD file, bands from GRANULE/*/IMG_DATA."""
    meta = _parse_mtd(mtd_xml, f"{source}: MTD")
    if tile := re.search(r"_T(\d{2}[A-Z]{3})_", product):
        meta["tile"] = tile[1]
    if meta["product_type"] == "L2A":
        # Each band at its native resolution: the finest R<res>m folder that holds it (TCI/AOT/WVP/SCL skipped).
        best: dict[str, tuple[int, str]] = {}
        for m in members:
            if hit := _L2A_BAND_RE.match(m):
                res, name = int(hit[1]), hit[2]
                if name not in best or res < best[name][0]:
                    best[name] = (res, m)
        chosen = {name: m for name, (_, m) in best.items()}
    else:
        chosen = {}
        for m in members:
            if hit := _L1C_BAND_RE.match(m):
                if hit[1] in chosen:
                    raise SceneError(f"{source}: band {hit[1]} found in several granules (multi-tile product)")
                chosen[hit[1]] = m
    named = {name: (to_path(m), 1) for name, m in chosen.items()}
    return _assemble(
        source=source, label=str(source), named=named, meta=meta, sensor=meta["sensor"], complete=True,
        scene_id=product, allowed=allowed,
    )  # fmt: skip


def _parse_mtd(xml: bytes, where: str) -> dict[str, Any]:
    """Scene metadata from MTD_MSIL1C.xml / MTD_MSIL2A.xml (namespaces ignored: tag local names only)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise SceneError(f"{where}: not valid XML: {e}") from e
    elements: dict[str, list[ET.Element]] = {}
    for el in root.iter():
        elements.setdefault(el.tag.rpartition("}")[2], []).append(el)

    def text(tag: str) -> str | None:
        found = elements.get(tag)
        return found[0].text.strip() if found and found[0].text else None

    start = text("PRODUCT_START_TIME")
    if not start:
        raise SceneError(f"{where}: no PRODUCT_START_TIME")
    level = text("PROCESSING_LEVEL") or text("PRODUCT_TYPE") or ""
    product_type = "L2A" if "2A" in level else "L1C"
    quant_tag = "BOA_QUANTIFICATION_VALUE" if product_type == "L2A" else "QUANTIFICATION_VALUE"
    quantification = float(text(quant_tag) or 10000)
    offset_tag = "BOA_ADD_OFFSET" if product_type == "L2A" else "RADIO_ADD_OFFSET"
    offsets = {float(el.text) for el in elements.get(offset_tag, []) if el.text}
    if len(offsets) > 1:
        raise SceneError(f"{where}: per-band {offset_tag} values differ ({sorted(offsets)}); not supported")
    nodata = 0.0
    for special in elements.get("Special_Values", []):
        kind = special.findtext("SPECIAL_VALUE_TEXT") or ""
        if kind.strip() == "NODATA":
            nodata = float(special.findtext("SPECIAL_VALUE_INDEX") or 0)
    cloud = text("Cloud_Coverage_Assessment")
    return {
        "sensor": (text("SPACECRAFT_NAME") or "Sentinel-2").lower(),
        "product_type": product_type,
        "datetime": start,
        "processing_baseline": text("PROCESSING_BASELINE"),
        "cloud_cover": float(cloud) if cloud else None,
        "scale": 1.0 / quantification,
        "offset": offsets.pop() / quantification if offsets else 0.0,
        "nodata": nodata,
    }


# --- shared assembly ---------------------------------------------------------------------------------------


def _assemble(
    *,
    source: Path,
    label: str,
    named: dict[str, tuple[str, int]],
    meta: dict[str, Any],
    sensor: str,
    complete: bool,
    allowed: tuple[Path, ...],
    scene_id: str | None = None,
) -> Scene:
    """Validate the bands and build the Scene; ``label`` names the scene in error messages."""
    product_type = str(meta.get("product_type") or "unknown")
    for name, (band_path, _) in named.items():
        if not band_path.startswith("/vsi"):  # /vsizip/ members live inside the zip checked by open_scene
            inside_any(band_path, allowed, f"{label}: band {name}")
    if complete:
        _check_complete(label, sensor, product_type, named.keys())
    order = sorted(named, key=_band_sort_key) if complete else list(named)  # multi-band: file order
    opened = [_open_band(name, *named[name]) for name in order]
    for o in opened:
        validate_readable(o.band)
    crs = _common_crs(opened)
    _check_same_grid(opened)
    when = _parse_datetime(str(meta["datetime"]), label) if meta.get("datetime") else _datetime_from_tags(opened)
    if when is None:
        raise SceneError(
            f"{label}: no acquisition datetime (no 'datetime' in the descriptor/scene.json sidecar and no "
            f"{'/'.join(_DATETIME_TAGS)} tag in the rasters)"
        )
    default_scale, default_offset = _default_scaling(sensor, product_type, meta.get("processing_baseline"))
    file_nodata = opened[0].nodata
    default_nodata = file_nodata if file_nodata is not None else _default_nodata(sensor)
    tile = meta.get("tile")
    bands = tuple(o.band for o in opened)
    if scene_id is None:
        scene_id = f"{sensor}_{product_type}_{when:%Y%m%dT%H%M%S}_{tile or 'x'}_{_content_hash(bands)}"
    scene_id = safe_name(scene_id, f"{label}: scene id (from sensor, product_type, tile or product name)")
    extra_keys = ("tile", "processing_baseline", "scl", "cloud_probability", "max_cloud_fraction", "stac_item")
    extra = {k: meta[k] for k in extra_keys if meta.get(k) is not None}
    return Scene(
        scene_id=scene_id,
        sensor=sensor,
        product_type=product_type,
        datetime=when,
        crs=crs,
        footprint_wkt=_footprint_wkt([o.bounds for o in opened], crs),
        bands=bands,
        source=str(source),
        scale=_number(meta, "scale", default_scale),
        offset=_number(meta, "offset", default_offset),
        nodata=_number(meta, "nodata", default_nodata),
        cloud_cover=_number(meta, "cloud_cover", None),
        extra=extra,
    )


def _open_band(name: str, path: str, index: int) -> _OpenedBand:
    """Read one band's header; any rasterio failure becomes a SceneError naming the file."""
    try:
        with rasterio.open(path) as ds:
            if not 1 <= index <= ds.count:
                raise SceneError(f"{path}: has {ds.count} band(s), band index {index} ({name}) does not exist")
            return _OpenedBand(
                band=BandFile(name=name, path=path, resolution_m=abs(ds.transform.a), index=index),
                crs=ds.crs,
                bounds=ds.bounds,
                nodata=ds.nodatavals[index - 1],
                tags=ds.tags(),
            )
    except RasterioError as e:
        raise SceneError(f"{path}: cannot open band {name} as a raster: {_reason(e)}") from e


def _check_complete(label: str, sensor: str, product_type: str, names: Iterable[str]) -> None:
    """Sentinel-2 needs all 13 bands (12 for L2A, which has no B10); Landsat-8 needs B1-B7."""
    if sensor.startswith("sentinel-2"):
        required = S2_L2A_BANDS if "2A" in product_type.upper() else S2_BANDS
    elif sensor.startswith("landsat-8"):
        required = LANDSAT8_REQUIRED
    else:
        return
    present = set(names)
    missing = [b for b in required if b not in present]
    if missing:
        raise SceneError(f"{label}: {sensor} scene is missing band(s) {', '.join(missing)}")


def _common_crs(opened: list[_OpenedBand]) -> str:
    """The one projected CRS all bands share; a band without one, or with a geographic/other one, is named."""
    for o in opened:
        if o.crs is None:
            raise SceneError(f"{o.band.path}: wrong CRS: band {o.band.name} has no CRS")
        if not o.crs.is_projected:
            raise SceneError(
                f"{o.band.path}: wrong CRS: band {o.band.name} is in {o.crs.to_string()}, "
                "not a projected CRS in metres"
            )
    counts = Counter(o.crs.to_string() for o in opened)
    scene_crs = counts.most_common(1)[0][0]
    for o in opened:
        if o.crs.to_string() != scene_crs:
            raise SceneError(
                f"{o.band.path}: wrong CRS: band {o.band.name} is in {o.crs.to_string()}, the scene in {scene_crs}"
            )
    return scene_crs


def _check_same_grid(opened: list[_OpenedBand]) -> None:
    """Every band must cover the same ground: extents agree to within the coarsest band's pixel.

    A band on a shifted grid (right CRS, wrong transform) would otherwise be resampled misregistered with full
    coverage.
    """
    tolerance = max(o.band.resolution_m for o in opened)
    reference = min(opened, key=lambda o: o.band.resolution_m)
    ref = reference.bounds
    for o in opened:
        b = o.bounds
        shifts = (b.left - ref.left, b.bottom - ref.bottom, b.right - ref.right, b.top - ref.top)
        if max(abs(s) for s in shifts) > tolerance:
            raise SceneError(
                f"{o.band.path}: band {o.band.name} is on another grid than band {reference.band.name}: its extent "
                f"edges (left, bottom, right, top) differ by {tuple(round(s, 1) for s in shifts)} m, more than "
                f"one {tolerance:g} m pixel (misregistered band?)"
            )


def _footprint_wkt(bounds: list[BoundingBox], crs: str) -> str:
    """Union of the band extents as an EPSG:4326 polygon (edges densified so the reprojection stays true)."""
    left, bottom = min(b.left for b in bounds), min(b.bottom for b in bounds)
    right, top = max(b.right for b in bounds), max(b.top for b in bounds)
    rect = box(left, bottom, right, top).segmentize(max(right - left, top - bottom) / 4)
    to_wgs84 = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    footprint = shapely.transform(rect, to_wgs84.transform, interleaved=False)
    return shapely.to_wkt(footprint, rounding_precision=7)


def _content_hash(bands: Iterable[BandFile]) -> str:
    """First 10 hex chars of a sha256 over the band files' bytes (by band name): same data, same id."""
    digest = hashlib.sha256()
    seen: set[str] = set()
    for band in sorted(bands, key=lambda b: b.name):
        if band.path in seen:
            continue
        seen.add(band.path)
        with open(band.path, "rb") as f:
            while block := f.read(_HASH_BLOCK):
                digest.update(block)
    return digest.hexdigest()[:10]


# --- small helpers -----------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    """A descriptor/sidecar as a dict; unreadable or non-object JSON is a SceneError."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SceneError(f"{path}: cannot read scene metadata JSON: {e}") from e
    if not isinstance(data, dict):
        raise SceneError(f"{path}: scene metadata must be a JSON object")
    return data


def _parse_datetime(value: str, where: str) -> datetime:
    """ISO 8601, TIFF ``YYYY:MM:DD HH:MM:SS`` or ``YYYY-MM`` (first of month) -> timezone-aware UTC."""
    text = value.strip()
    if m := re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}:\d{2}:\d{2})", text):
        text = f"{m[1]}-{m[2]}-{m[3]}T{m[4]}"
    elif re.fullmatch(r"\d{4}-\d{2}", text):
        text += "-01"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as e:
        raise SceneError(f"{where}: cannot parse datetime {value!r}") from e
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _datetime_from_tags(opened: list[_OpenedBand]) -> datetime | None:
    """First acquisition-time tag found in the bands' dataset tags (best tag first)."""
    for tag in _DATETIME_TAGS:
        for o in opened:
            if o.tags.get(tag):
                return _parse_datetime(o.tags[tag], f"{o.band.path}: tag {tag}")
    return None


def _guess_sensor(band_names: Iterable[str], file_names: Iterable[str]) -> str:
    """Sensor from naming conventions when no metadata says: zero-padded B01/B8A -> S2, l8_/LC08/BQA -> L8."""
    names = set(band_names)
    if "B8A" in names or any(re.fullmatch(r"B0\d", n) for n in names):
        return "sentinel-2"
    if "BQA" in names or any(f.lower().startswith(("l8_", "lc08", "lc8")) for f in file_names):
        return "landsat-8"
    return "unknown"


def _normalise_band(name: str, sensor: str) -> str:
    """Sentinel-2 band names are two-digit (B1 -> B01, B8A stays); other sensors keep theirs."""
    if sensor.startswith("sentinel-2") and (m := re.fullmatch(r"B(\d{1,2})", name)):
        return f"B{int(m[1]):02d}"
    return name


def _band_sort_key(name: str) -> tuple[int, int, str]:
    """Spectral order: B01 < B02 < ... < B08 < B8A < B09 < B10 (and B1 < B2 < ... < B11 for Landsat)."""
    if m := re.fullmatch(r"B(\d+)(A?)", name):
        return (0, int(m[1]), m[2])
    return (1, 0, name)


def _default_scaling(sensor: str, product_type: str, baseline: object = None) -> tuple[float, float]:
    """Scale/offset used only when the delivery's metadata gives none (see :func:`open_scene`).

    Sentinel-2 processing baseline 04.00 and later (L1C and L2A) add 1000 to every DN: offset -0.1.
    """
    if sensor.startswith("landsat"):
        return LANDSAT_L2SP_SCALING if "L2SP" in product_type.upper() else LANDSAT_L1_SCALING
    if baseline is not None and sensor.startswith("sentinel-2"):
        try:
            if float(str(baseline)) >= 4.0:
                return SENTINEL2_SCALING[0], -0.1
        except ValueError as e:
            raise SceneError(f"processing_baseline {baseline!r} is not a number like '04.00'") from e
    return SENTINEL2_SCALING


def _default_nodata(sensor: str) -> float | None:
    """Sentinel-2 and Landsat DN use 0 for fill; unknown sensors have no assumed nodata."""
    return 0.0 if sensor.startswith(("sentinel-2", "landsat")) else None


def _number(meta: dict[str, Any], key: str, default: float | None) -> float | None:
    """A numeric metadata value, or ``default`` when absent/null."""
    value = meta.get(key)
    return default if value is None else float(value)


def _reason(error: Exception) -> str:
    """GDAL's own message (rasterio often wraps it as 'see previous exception')."""
    return str(error.__cause__ or error)
