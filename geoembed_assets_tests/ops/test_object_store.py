"""Outputs published to an S3 API (moto in server mode on localhost) and read back with DuckDB through fsspec."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from geoembed_assets.assets import embedding_assets
from geoembed_assets.partitions import partition_key, register_keys
from geoembed_assets.resources import GeoembedStorage, QualityThresholds, TorchDevice
from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR
from geoembed_assets_tests.ops.conftest import tiny_run_config

KEY = partition_key("dqd", "2016-01-01")


@pytest.fixture(scope="module")
def s3(s3_endpoint: str) -> Iterator[dict]:
    import s3fs

    s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}).mkdir("geoembed-test")
    yield {"endpoint": s3_endpoint, "url": "s3://geoembed-test/prod"}


def test_partition_published_to_s3_and_read_back_with_duckdb(s3: dict, tmp_path: Path) -> None:
    from geoembed_assets.assets.publish_assets import ObjectStore, published_outputs
    from geoembed_assets.core.object_store import duckdb_connection

    data_dir = tmp_path / "data"
    (data_dir / "landing").mkdir(parents=True)
    shutil.copy(DEFAULT_DESCRIPTOR, data_dir / "landing" / DEFAULT_DESCRIPTOR.name)
    store = ObjectStore(url=s3["url"], endpoint_url=s3["endpoint"])
    ops = {k: v for k, v in tiny_run_config()["ops"].items() if not k.startswith("embedding_size")}
    resources = {"storage": GeoembedStorage(data_dir=str(data_dir)), "torch_device": TorchDevice(prefer="cpu", cpu_threads=1),
                 "thresholds": QualityThresholds(max_rmse=0.5, max_ndvi_mae=1.0), "object_store": store}  # fmt: skip
    instance = dg.DagsterInstance.ephemeral()
    register_keys(instance, [partition_key("dqd", "2016-01-01")])
    assets = [*dg.load_assets_from_modules([embedding_assets]), published_outputs]
    result = dg.materialize(assets, partition_key=KEY, instance=instance, run_config={"ops": ops}, resources=resources)
    assert result.success
    meta = result.asset_materializations_for_node("published_outputs")[0].metadata
    local = pd.read_parquet(data_dir / "embeddings" / "dqd" / "2016-01-01.parquet")
    n_checkpoints = local["checkpoint_id"].nunique()
    assert meta["files"].value == meta["uploaded"].value == 1 + n_checkpoints

    con = duckdb_connection(s3["url"], store.storage_options())
    remote = f"{s3['url']}/embeddings/dqd/2016-01-01.parquet"
    rows, cells, mse = con.execute(f"select count(*), count(distinct geohash), avg(recon_mse) from read_parquet('{remote}')").fetchone()
    assert (rows, cells) == (len(local), local["geohash"].nunique()) and mse == pytest.approx(local["recon_mse"].mean())
    url = s3["url"]
    listed = con.execute(f"select count(*) from glob('{url}/checkpoints/*/*.pt')").fetchone()[0]
    assert listed == n_checkpoints

    # publishing again uploads nothing: the objects are unchanged
    again = dg.materialize([published_outputs], partition_key=KEY, instance=instance, resources=resources)
    assert again.asset_materializations_for_node("published_outputs")[0].metadata["uploaded"].value == 0
