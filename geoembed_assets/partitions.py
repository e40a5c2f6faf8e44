"""Partitions: a coarse geohash region x an acquisition month, both dynamic: registered when a scene lands.

Precision-5 cells are rows and files inside a partition, not partitions: ten Sentinel-2 tiles (~6,000 cells)
over five years would be ~6,000 x 60 = 360k partitions per asset at cell x month, but only ~30 regions x 60
months = 1,800 at region (precision 3, ~156 km) x month.

The month dimension is dynamic rather than a calendar (`MonthlyPartitionsDefinition`) so that the UI lists only
the months that have data: a calendar from the first Landsat-8 month showed "1 materialized / 163 missing" for
one scene. Registration (`geoembed register`, `geoembed run`, `landing_sensor`) adds a scene's regions and its
month; a backfill then offers exactly the registered (region, month) pairs, and an archive of many months is
registered in one call before backfilling them all.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

REGION_PRECISION = 3

region_partitions = dg.DynamicPartitionsDefinition(name="geohash_region")
month_partitions = dg.DynamicPartitionsDefinition(name="acquisition_month")
scene_partitions = dg.MultiPartitionsDefinition({"region": region_partitions, "month": month_partitions})


def partition_key(region: str, month_start: str) -> str:
    """The string form Dagster uses (dimensions in alphabetical order): '2016-01-01|dqd'."""
    return dg.MultiPartitionKey({"region": region, "month": month_start})


def split_key(key: str) -> tuple[str, str]:
    """(region, month) of a partition key '<month>|<region>'."""
    month, region = str(key).split("|")
    return region, month


def add_requests(keys: Iterable[str], known=lambda name, key: False) -> list[dg.AddDynamicPartitionsRequest]:
    """Requests adding the regions and months of `keys` that `known(partitions name, key)` says are missing."""
    regions, months = set(), set()
    for key in keys:
        region, month = split_key(key)
        regions.add(region)
        months.add(month)
    requests = []
    for definition, values in ((region_partitions, regions), (month_partitions, months)):
        new = sorted(v for v in values if not known(definition.name, v))
        if new:
            requests.append(definition.build_add_request(new))
    return requests


def register_keys(instance: dg.DagsterInstance, keys: Iterable[str]) -> None:
    """Add the regions and months of partition keys to the instance (idempotent)."""
    for request in add_requests(keys, instance.has_dynamic_partition):
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
