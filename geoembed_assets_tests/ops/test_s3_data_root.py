"""The whole per-partition graph with its data root on an S3 API (moto in server mode on localhost).

Every writer commits to `s3://<bucket>/geoembed`; the outputs are read back from S3 itself (DuckDB for the
GeoParquet, torch with weights_only=True for the checkpoints). Then a second "worker" with an empty scratch
re-materializes `embeddings` from the inputs it fetches from S3.
"""

from __future__ import annotations

import io
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import torch

from geoembed_assets.core.checkpoints import load_checkpoint
from geoembed_assets.core.embeddings import EMBEDDING_COLUMNS
from geoembed_assets.core.object_store import duckdb_connection
from geoembed_assets.definitions import partitioned_assets
from geoembed_assets.partitions import partition_key, register_keys
from geoembed_assets.resources import GeoembedIOManager, GeoembedStorage, QualityThresholds, TorchDevice
from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR
from geoembed_assets_tests.ops.conftest import tiny_run_config

REGION, MONTH = "dqd", "2016-01-01"
KEY = partition_key(REGION, MONTH)
BUCKET = "geoembed-data"
ROOT = f"s3://{BUCKET}/geoembed"
PARTITIONED = ["raw_tiles", "geohash_chips", "complexity_scores", "embedding_size_calibration",
               "embedding_size_predictions", "landcover_proportions", "landcover_clusters", "vae_checkpoints",
               "embeddings"]  # fmt: skip


def resources(endpoint: str, cache_dir: Path) -> dict:
    storage = GeoembedStorage(data_dir=ROOT, cache_dir=str(cache_dir), endpoint_url=endpoint)
    return {
        "storage": storage,
        "io_manager": GeoembedIOManager(storage=storage),
        "torch_device": TorchDevice(prefer="cpu", cpu_threads=1),
        "thresholds": QualityThresholds(**tiny_run_config()["resources"]["thresholds"]["config"]),
    }


def test_graph_on_s3_data_root_and_a_second_worker(s3_endpoint: str, tmp_path: Path) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    fs.mkdir(BUCKET)
    fs.put_file(str(DEFAULT_DESCRIPTOR), f"{BUCKET}/geoembed/landing/{DEFAULT_DESCRIPTOR.name}")  # landing on S3 too

    instance = dg.DagsterInstance.ephemeral()
    register_keys(instance, [KEY])
    ops = tiny_run_config()["ops"]
    first = resources(s3_endpoint, tmp_path / "worker-1")
    result = dg.materialize(partitioned_assets, partition_key=KEY, instance=instance, run_config={"ops": ops},
                            resources=first)  # fmt: skip
    assert result.success
    fs.invalidate_cache()
    url = f"{ROOT}/embeddings/{REGION}/{MONTH}.parquet"
    meta = result.asset_materializations_for_node("embeddings")[0].metadata
    assert meta["path"].value == url

    # the GeoParquet, read back from S3 with DuckDB
    con = duckdb_connection(ROOT, first["storage"].store.storage_options)
    remote = con.execute(f"select * from read_parquet('{url}')").df()
    assert set(EMBEDDING_COLUMNS) <= set(remote.columns)
    assert len(remote) == meta["rows"].value > 0 and remote["geohash"].str.startswith(REGION).all()
    assert set(remote["scene_id"]) and remote["embedding"].map(len).gt(0).all()

    # the checkpoints its rows name: on S3, loadable with weights_only=True (no pickled code)
    checkpoint_ids = sorted(remote["checkpoint_id"].unique())
    assert checkpoint_ids
    for checkpoint_id in checkpoint_ids:
        key = f"{BUCKET}/geoembed/checkpoints/{checkpoint_id.rsplit('-', 1)[0]}/{checkpoint_id}.pt"
        payload = torch.load(io.BytesIO(fs.cat_file(key)), map_location="cpu", weights_only=True)
        assert payload["meta"]["owner"] == REGION and "state_dict" in payload
        local = tmp_path / "check" / f"{checkpoint_id}.pt"
        local.parent.mkdir(exist_ok=True)
        fs.get_file(key, str(local))
        assert load_checkpoint(local).checkpoint_id == checkpoint_id

    # the chip index and the IO manager's checkpoints table name S3 URLs that exist
    index = con.execute(f"select * from read_parquet('{ROOT}/chips/{REGION}/index_{MONTH}.parquet')").df()
    assert len(index) and index["path"].str.startswith(f"{ROOT}/chips/{REGION}/").all()
    assert all(fs.exists(p) for p in index["path"])
    assert set(zip(remote["geohash"], remote["scene_id"])) <= set(zip(index["geohash"], index["scene_id"]))
    table = con.execute(f"select * from read_parquet('{ROOT}/dagster/vae_checkpoints/**/*.parquet')").df()
    assert set(table["checkpoint_id"]) == set(checkpoint_ids) and table["path"].str.startswith(f"{ROOT}/checkpoints/").all()

    # every other writer's files, and each asset's IO-manager output
    for rel in (f"size_predictions/{REGION}/{MONTH}.parquet", f"landcover/proportions/{REGION}/{MONTH}.parquet",
                f"landcover/clusters/{REGION}/{MONTH}.parquet", "landcover/clusters_latest.parquet"):  # fmt: skip
        assert fs.exists(f"{BUCKET}/geoembed/{rel}"), rel
    stored = fs.find(f"{BUCKET}/geoembed/dagster")
    for asset in PARTITIONED:
        assert any(k.startswith(f"{BUCKET}/geoembed/dagster/{asset}/") for k in stored), asset
    chips_meta = result.asset_materializations_for_node("geohash_chips")[0].metadata
    assert chips_meta["path"].value.startswith(f"{ROOT}/dagster/geohash_chips/")

    # another worker: a new, empty scratch; `embeddings` alone fetches its chips and checkpoints from S3
    before = fs.info(url)["LastModified"]
    second = resources(s3_endpoint, tmp_path / "worker-2")
    again = dg.materialize(partitioned_assets, selection=["embeddings"], partition_key=KEY, instance=instance,
                           run_config={"ops": {"embeddings": ops["embeddings"]}}, resources=second)  # fmt: skip
    assert again.success
    scratch = tmp_path / "worker-2"
    fetched_chips = sorted(p.relative_to(scratch).as_posix() for p in scratch.glob("chips/**/*.tif"))
    assert fetched_chips == sorted(p.removeprefix(f"{ROOT}/") for p in index["path"])
    assert sorted(p.stem for p in scratch.glob("checkpoints/*/*.pt")) == checkpoint_ids
    assert not (scratch / "landing").exists()  # embeddings needs no scene
    fs.invalidate_cache()
    assert fs.info(url)["LastModified"] >= before
    rows = con.execute(f"select count(*), count(distinct checkpoint_id) from read_parquet('{url}')").fetchone()
    assert rows == (len(remote), len(checkpoint_ids))
    assert pd.read_parquet(scratch / "embeddings" / REGION / f"{MONTH}.parquet")["geohash"].tolist() == remote["geohash"].tolist()

