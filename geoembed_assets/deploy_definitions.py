"""The project's definitions plus the scale-out jobs (deployment only: `pip install -e ".[deploy]"`).

- `embed_scenes_celery`: the per-partition assets on dagster-celery (Redis broker). The Celery executor ignores
  Dagster pools, so the GPU steps carry the `dagster-celery/queue: gpu` tag and run only on workers listening on
  the `gpu` queue; everything else goes to the default `dagster` queue.
- `published_outputs`: a partition's embeddings and checkpoints copied to object storage (GEOEMBED_PUBLISH_URL).
- `embed_scenes_k8s`: the same assets with one Kubernetes Job per step (dagster-k8s); the GPU steps' own
  `dagster-k8s/config` tag requests `nvidia.com/gpu: 1`, the others the defaults in `deploy/k8s_executor.yaml`.
"""

from __future__ import annotations

import dagster as dg
from dagster_celery import celery_executor
from dagster_k8s import k8s_job_executor

from geoembed_assets import definitions as base
from geoembed_assets.assets.publish_assets import ObjectStore, published_outputs

_selection = dg.AssetSelection.assets(*base.partitioned_assets)

embed_scenes_celery = dg.define_asset_job(
    "embed_scenes_celery",
    selection=_selection,
    executor_def=celery_executor,
    description="embed_scenes on Celery workers (run config: deploy/celery.yaml); GPU steps on the `gpu` queue.",
)

embed_scenes_k8s = dg.define_asset_job(
    "embed_scenes_k8s",
    selection=_selection,
    executor_def=k8s_job_executor,
    description="embed_scenes with one Kubernetes Job per step (run config: deploy/k8s_executor.yaml).",
)

defs = dg.Definitions.merge(
    base.defs,
    dg.Definitions(
        assets=[published_outputs],
        jobs=[embed_scenes_celery, embed_scenes_k8s],
        resources={"object_store": ObjectStore()},
    ),
)
