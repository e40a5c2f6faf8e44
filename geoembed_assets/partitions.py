"""Partitions: a coarse geohash region (dynamic) x an acquisition month.

Precision-5 cells are rows and files inside a partition, not partitions: ten Sentinel-2 tiles (~6,000 cells)
over five years would be ~6,000 x 60 = 360k partitions per asset at cell x month, but only ~30 regions x 60
months = 1,800 at region (precision 3, ~156 km) x month.
"""

from __future__ import annotations

import dagster as dg

REGION_PRECISION = 3
FIRST_MONTH = "2013-04-01"  # Landsat-8 operations start; Sentinel-2A followed in 2015

region_partitions = dg.DynamicPartitionsDefinition(name="geohash_region")
month_partitions = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, end_offset=1)
scene_partitions = dg.MultiPartitionsDefinition({"region": region_partitions, "month": month_partitions})


def partition_key(region: str, month_start: str) -> str:
    """The string form Dagster uses (dimensions in alphabetical order): '2016-01-01|dqd'."""
    return dg.MultiPartitionKey({"region": region, "month": month_start})
