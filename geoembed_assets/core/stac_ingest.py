"""Sentinel-2 L2A Items from a STAC API -> deliveries in the landing folder (no Dagster here).

Modelled on Earth Search's ``sentinel-2-l2a`` collection: one Item per acquisition and tile, one COG asset per
band under common names (blue, green, red, nir, swir16, ...) plus ``scl``, the scene classification. An Item is
delivered as a band folder with a ``scene.json`` sidecar (README, "Scenes the pipeline reads"): ``B02.tif`` ...
``B12.tif`` and ``SCL.tif``, downloaded into a hidden temporary folder and renamed into place, so the landing
sensor never sees half a delivery.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pystac

# Earth Search asset key -> Sentinel-2 band name, in band order (L2A has no B10).
EARTH_SEARCH_BANDS: dict[str, str] = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "swir16": "B11", "swir22": "B12",
}  # fmt: skip
SCL_ASSET = "scl"
DEFAULT_COLLECTION = "sentinel-2-l2a"


@dataclass(frozen=True)
class StacCursor:
    """Acquisition time of the newest Item ingested, and the ids ingested at exactly that time."""

    after: datetime | None = None
    ids_at_after: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({"after": self.after.isoformat() if self.after else None, "ids": list(self.ids_at_after)})

    @classmethod
    def from_json(cls, text: str | None) -> StacCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(datetime.fromisoformat(data["after"]) if data["after"] else None, tuple(data["ids"]))

    def is_new(self, item: pystac.Item) -> bool:
        when = item_datetime(item)
        return self.after is None or when > self.after or (when == self.after and item.id not in self.ids_at_after)

    def advance(self, items: list[pystac.Item]) -> StacCursor:
        cursor = self
        for item in items:
            when = item_datetime(item)
            if cursor.after is None or when > cursor.after:
                cursor = StacCursor(when, (item.id,))
            elif when == cursor.after and item.id not in cursor.ids_at_after:
                cursor = StacCursor(when, (*cursor.ids_at_after, item.id))
        return cursor


def item_datetime(item: pystac.Item) -> datetime:
    when = item.datetime or datetime.fromisoformat(item.properties["start_datetime"].replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def search_new_items(
    api_url: str,
    bbox: tuple[float, float, float, float],
    start: str,
    end: str | None,
    cursor: StacCursor,
    collection: str = DEFAULT_COLLECTION,
    max_items: int = 100,
    max_item_cloud_cover: float | None = None,
) -> list[pystac.Item]:
    """Items of `collection` over `bbox` acquired in [start, end] and after the cursor, oldest first."""
    from pystac_client import Client

    first = start if cursor.after is None else max(start, cursor.after.strftime("%Y-%m-%dT%H:%M:%SZ"))
    search = Client.open(api_url).search(
        collections=[collection], bbox=list(bbox), datetime=f"{first}/{end or '..'}", max_items=max_items
    )
    items = [i for i in search.items() if cursor.is_new(i)]
    if max_item_cloud_cover is not None:
        items = [i for i in items if i.properties.get("eo:cloud_cover", 0.0) <= max_item_cloud_cover]
    return sorted(items, key=lambda i: (item_datetime(i), i.id))


def _download(href: str, dest: Path) -> None:
    """HTTP(S) or local file -> dest (streamed)."""
    parsed = urllib.parse.urlparse(href)
    if parsed.scheme in ("http", "https"):
        with urllib.request.urlopen(href, timeout=120) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    elif parsed.scheme in ("", "file"):
        shutil.copyfile(urllib.parse.unquote(parsed.path) if parsed.scheme else href, dest)
    else:
        raise ValueError(f"{href}: cannot download {parsed.scheme}:// hrefs (http, https or local files only)")


def _scaling(item: pystac.Item) -> tuple[float, float]:
    """DN -> reflectance from the assets' raster:bands, else from the processing baseline (>= 04.00: -0.1)."""
    for key in EARTH_SEARCH_BANDS:
        bands = item.assets[key].extra_fields.get("raster:bands") if key in item.assets else None
        if bands and "scale" in bands[0]:
            return float(bands[0]["scale"]), float(bands[0].get("offset", 0.0))
    baseline = float(item.properties.get("s2:processing_baseline", "0") or 0)
    return 1e-4, (-0.1 if baseline >= 4.0 else 0.0)


def scene_metadata(item: pystac.Item, max_cloud_fraction: float) -> dict:
    """The scene.json sidecar of a delivered Item."""
    scale, offset = _scaling(item)
    props = item.properties
    tile = props.get("s2:mgrs_tile") or str(props.get("grid:code", "")).removeprefix("MGRS-") or None
    meta = {
        "sensor": str(props.get("platform", "sentinel-2")).lower(),
        "product_type": "L2A",
        "datetime": item_datetime(item).isoformat(),
        "tile": tile,
        "processing_baseline": props.get("s2:processing_baseline"),
        "scale": scale,
        "offset": offset,
        "nodata": 0,
        "cloud_cover": props.get("eo:cloud_cover"),
        "stac_item": item.get_self_href() or item.id,
        "max_cloud_fraction": max_cloud_fraction,
    }
    if SCL_ASSET in item.assets:
        meta["scl"] = "SCL.tif"
    return {k: v for k, v in meta.items() if v is not None}


def ingest_item(item: pystac.Item, landing_dir: str | Path, max_cloud_fraction: float = 0.15) -> Path:
    """Download the Item's band COGs (and SCL) into ``landing/<item id>/``; an existing delivery is kept."""
    landing = Path(landing_dir)
    final = landing / item.id
    if final.exists():
        return final
    missing = [key for key in EARTH_SEARCH_BANDS if key not in item.assets]
    if missing:
        raise ValueError(f"STAC Item {item.id}: no asset(s) {', '.join(missing)} (Earth Search sentinel-2-l2a names)")
    landing.mkdir(parents=True, exist_ok=True)
    tmp = landing / f".{item.id}.{uuid.uuid4().hex[:8]}.partial"  # hidden: the landing sensor skips dot-names
    tmp.mkdir()
    try:
        wanted = {**EARTH_SEARCH_BANDS, **({SCL_ASSET: "SCL"} if SCL_ASSET in item.assets else {})}
        for key, band in wanted.items():
            _download(item.assets[key].get_absolute_href(), tmp / f"{band}.tif")
        (tmp / "scene.json").write_text(json.dumps(scene_metadata(item, max_cloud_fraction), indent=2))
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final
