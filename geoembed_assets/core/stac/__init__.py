"""STAC catalog of the project's models, scenes and embeddings (MLM + embeddings extensions), validated offline.

Plain modules, no Dagster: `schemas` (offline JSON-schema validation), `items` (Item builders), `catalog`
(full, idempotent rebuild of `<data_dir>/catalog/`) and `search` (which models fit a bbox, period, task, bands).
"""
