"""deploy/dagster.yaml against a real PostgreSQL server: a partition materialized through it is stored there."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd

from geoembed_assets.definitions import defs
from geoembed_assets.partitions import partition_key, register_keys
from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR
from geoembed_assets_tests.ops.conftest import tiny_run_config

KEY = partition_key("dqd", "2016-01-01")


def test_instance_config_is_postgres_with_run_monitoring(postgres_home: Path) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert instance.run_monitoring_enabled
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"


def test_partition_materialized_through_postgres(postgres, postgres_home: Path, tmp_path: Path, monkeypatch) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "landing").mkdir(parents=True)
    shutil.copy(DEFAULT_DESCRIPTOR, data_dir / "landing" / DEFAULT_DESCRIPTOR.name)
    monkeypatch.setenv("GEOEMBED_DATA_DIR", str(data_dir))
    run_config = tiny_run_config()
    with dg.DagsterInstance.get() as instance:
        register_keys(instance, [partition_key("dqd", "2016-01-01")])
        job = defs.resolve_job_def("embed_scenes")
        resources = {"storage": {"config": {"data_dir": str(data_dir)}}, "torch_device": {"config": {"prefer": "cpu", "cpu_threads": 1}},
                     "thresholds": {"config": {"max_rmse": 0.5, "max_ndvi_mae": 1.0}}}  # fmt: skip
        result = job.execute_in_process(
            run_config={**run_config, "resources": resources}, instance=instance, partition_key=KEY
        )
        assert result.success
        run_id = result.run_id

    # what the instance wrote is in PostgreSQL, and a fresh instance (another process would do the same) reads it
    assert postgres.query(f"select status from runs where run_id = '{run_id}'") == "SUCCESS"
    events = int(postgres.query(f"select count(*) from event_logs where run_id = '{run_id}' and dagster_event_type = 'ASSET_MATERIALIZATION'"))
    assert events == 9  # raw_tiles .. embeddings, the two land-cover assets included
    with dg.DagsterInstance.get() as instance:
        # (the session's server is shared with the other operations tests: look at this partition only)
        latest = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("embeddings"), asset_partitions=[KEY]), limit=1)
        assert [r.run_id for r in latest.records] == [run_id]
        assert KEY in instance.get_materialized_partitions(dg.AssetKey("embeddings"))
    frame = pd.read_parquet(data_dir / "embeddings" / "dqd" / "2016-01-01.parquet")
    assert len(frame) > 0 and (frame["embedding"].map(len) == frame["latent_channels"] * frame["latent_height"] * frame["latent_width"]).all()
