"""Sentinel-2 L2A from a STAC API: new Items over an area and period are delivered into the landing folder.

The sensor only ingests; `landing_sensor` then registers the deliveries and requests their runs as for any other
delivery, so one scene is processed once whichever way it arrived. Its cursor is the acquisition time of the
newest Item ingested.
"""

from __future__ import annotations

import os

import dagster as dg

from geoembed_assets.core import stac_ingest
from geoembed_assets.core.cloud_mask import DEFAULT_MAX_CLOUD_FRACTION
from geoembed_assets.resources import GeoembedStorage


class StacSource(dg.ConfigurableResource):
    """Which STAC API, collection, area and period to watch (defaults: Earth Search, the default scene's area)."""

    api_url: str = os.environ.get("GEOEMBED_STAC_API", "https://earth-search.aws.element84.com/v1")
    collection: str = stac_ingest.DEFAULT_COLLECTION
    bbox: list[float] = [-75.9, 37.4, -75.5, 37.8]  # west, south, east, north (EPSG:4326)
    start: str = "2016-01-01"
    end: str | None = None  # open-ended
    max_items: int = 20  # per tick
    max_item_cloud_cover: float | None = None  # skip whole Items above this eo:cloud_cover (percent)
    max_cloud_fraction: float = DEFAULT_MAX_CLOUD_FRACTION  # per cell, from the SCL layer (paper: 15 %)


@dg.sensor(
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Searches a STAC API for new Sentinel-2 L2A Items over the configured area and period and delivers "
    "their band COGs (and SCL cloud mask) into the landing folder, where landing_sensor picks them up.",
)
def stac_sensor(context: dg.SensorEvaluationContext, storage: GeoembedStorage, stac_source: StacSource) -> dg.SensorResult:
    cursor = stac_ingest.StacCursor.from_json(context.cursor)
    items = stac_ingest.search_new_items(
        stac_source.api_url, tuple(stac_source.bbox), stac_source.start, stac_source.end, cursor,
        collection=stac_source.collection, max_items=stac_source.max_items,
        max_item_cloud_cover=stac_source.max_item_cloud_cover,
    )  # fmt: skip
    delivered = []
    for item in items:
        try:
            delivered.append(stac_ingest.ingest_item(item, storage.landing_dir, stac_source.max_cloud_fraction))
        except (OSError, ValueError) as exc:
            # not advancing past a failed Item: it (and what follows) is retried on the next tick
            context.log.warning(f"STAC Item {item.id}: {exc}")
            items = items[: items.index(item)]
            break
    for path in delivered:
        context.log.info(f"delivered {path}")
    if delivered and storage.remote and not storage.landing_folder:
        storage.commit(*delivered)  # the landing folder of a URL data root is on the store
    return dg.SensorResult(
        cursor=cursor.advance(items).to_json(),
        skip_reason=None if delivered else dg.SkipReason(f"no new {stac_source.collection} Items"),
    )
