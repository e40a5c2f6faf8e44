"""Which models were trained on data intersecting a bbox, in a period, for a task, with given bands.

Implementation: walk the static catalog with pystac and filter in Python (shapely for geometry). Chosen over a
stac-geoparquet index queried with DuckDB because the catalog holds one Item per trained model (a few per
geohash cell, thousands at most), which pystac reads in well under a second per thousand Items; it needs no
second, derived index to keep consistent with the catalog nor another dependency. Past ~10^5 Items, export the
same Items with stac-geoparquet and run these filters as one DuckDB query instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pystac
from shapely.geometry import box, shape

from geoembed_assets.core.safe_paths import inside
from geoembed_assets.core.stac.items import as_utc


def _period(item: pystac.Item) -> tuple[datetime, datetime]:
    start = item.common_metadata.start_datetime or item.datetime
    end = item.common_metadata.end_datetime or item.datetime
    return start, end


def model_bands(item: pystac.Item) -> set[str]:
    """Band names of every MLM input (string or Model Band Object entries)."""
    names = set()
    for model_input in item.properties.get("mlm:input", []):
        for band in model_input.get("bands") or []:
            names.add(band if isinstance(band, str) else band["name"])
    return names


def matches(
    item: pystac.Item,
    bbox: Sequence[float] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    task: str | None = None,
    bands: Sequence[str] | None = None,
) -> bool:
    """True when the model Item meets every given criterion (unset criteria match everything)."""
    if "mlm:name" not in item.properties:
        return False
    if bbox is not None and not shape(item.geometry).intersects(box(*bbox)):
        return False
    first, last = _period(item)
    if start is not None and last < start:
        return False
    if end is not None and first > end:
        return False
    if task is not None and task not in item.properties.get("mlm:tasks", []):
        return False
    return not bands or set(bands) <= model_bands(item)


def search_models(
    catalog_dir: str | Path,
    bbox: Sequence[float] | None = None,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    task: str | None = None,
    bands: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Model Items (any family) trained on data intersecting `bbox` (W, S, E N; EPSG:4326) within [start, end],
    for `task` (an `mlm:tasks` value) and with all `bands` among their inputs; sorted by id.

    Each match: id, collection, cell (geohash), mlm:name, tasks, bands, start/end datetime, bbox and the model asset's href.
    """
    catalog = pystac.Catalog.from_file(str(Path(catalog_dir) / "catalog.json"))
    models_root = Path(catalog_dir).resolve().parent / "checkpoints"
    t0, t1 = (as_utc(t) if t is not None else None for t in (start, end))
    found = []
    for item in catalog.get_items(recursive=True):
        if not matches(item, bbox, t0, t1, task, bands):
            continue
        first, last = _period(item)
        model = next((a for a in item.assets.values() if "mlm:model" in (a.roles or [])), None)
        if model is not None:  # a tampered href must not be handed to whoever loads the model
            inside(model.get_absolute_href(), models_root, f"model asset of STAC Item {item.id!r}")
        found.append(
            {
                "id": item.id,
                "collection": item.collection_id,
                "cell": item.properties.get("geoembed:geohash"),
                "mlm:name": item.properties["mlm:name"],
                "tasks": item.properties.get("mlm:tasks", []),
                "bands": list(dict.fromkeys(  # input order (B01 ... B8A ... B12), each band once
                    b if isinstance(b, str) else b["name"]
                    for model_input in item.properties.get("mlm:input", []) for b in model_input.get("bands") or []
                )),
                "start_datetime": first.isoformat(),
                "end_datetime": last.isoformat(),
                "bbox": item.bbox,
                "model_href": model.get_absolute_href() if model else None,
            }
        )
    return sorted(found, key=lambda m: m["id"])
