"""Publishing a partition's embeddings and the checkpoints that decode them to a second object store (deployment).

The data root itself may be an object store (`GEOEMBED_DATA_DIR=s3://...`, see resources.GeoembedStorage): every
step then commits its outputs there already; this copies one partition's embeddings and models to another store
(a public bucket, another region), fetching them from the data root first when they are not in the scratch.
"""

import os

import dagster as dg
import pandas as pd

from geoembed_assets.core.checkpoints import checkpoint_path

from geoembed_assets.core.object_store import publish
from geoembed_assets.partitions import scene_partitions
from geoembed_assets.resources import GeoembedStorage


class ObjectStore(dg.ConfigurableResource):
    """Where outputs are published: an fsspec URL (s3://bucket/prefix); S3-compatible servers via `endpoint_url`."""

    url: str = os.environ.get("GEOEMBED_PUBLISH_URL", "")
    endpoint_url: str | None = os.environ.get("GEOEMBED_S3_ENDPOINT_URL")

    def storage_options(self) -> dict:
        return {"client_kwargs": {"endpoint_url": self.endpoint_url}} if self.endpoint_url else {}


@dg.asset(
    partitions_def=scene_partitions,
    group_name="publish",
    kinds={"s3"},
    deps=[dg.AssetKey("embeddings"), dg.AssetKey("vae_checkpoints")],
    description="Copies the partition's GeoParquet embeddings and the checkpoints its rows name to a (second) object "
    "store, same layout as the data root; unchanged objects are not uploaded again.",
)
def published_outputs(context: dg.AssetExecutionContext, storage: GeoembedStorage, object_store: ObjectStore) -> dg.MaterializeResult:
    if not object_store.url:
        raise ValueError("ObjectStore.url is empty: set GEOEMBED_PUBLISH_URL (e.g. s3://bucket/geoembed)")
    keys = context.partition_key.keys_by_dimension
    region, month = keys["region"], keys["month"]
    storage.fetch(*(storage.embeddings_dir / region / f"{month}{s}.parquet" for s in ("", "-single")))
    root = storage.local_dir
    files = [p for p in storage.embeddings_dir.joinpath(region).glob(f"{month}*.parquet")]
    relative = [p.relative_to(root) for p in files]
    for path in files:
        rows = pd.read_parquet(path, columns=["geohash", "checkpoint_id"]).drop_duplicates()
        models = [checkpoint_path(storage.checkpoints_dir, c) for c in rows["checkpoint_id"].unique()]
        storage.fetch(*models)
        relative += [p.relative_to(root) for p in models]
    written = publish(root, relative, object_store.url, object_store.storage_options())
    return dg.MaterializeResult(
        metadata={"url": object_store.url, "files": len(relative), "uploaded": len(written),
                  "embeddings": dg.MetadataValue.json([f"{object_store.url.rstrip('/')}/{p.relative_to(root).as_posix()}" for p in files])}
    )  # fmt: skip
