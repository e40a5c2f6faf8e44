"""The retraining schedule: picks the drifting partitions from the instance's materializations, off by default."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

from geoembed_assets.definitions import defs
from geoembed_assets.resources import QualityThresholds
from geoembed_assets.schedules import retrain_drifting_schedule

JAN, FEB, MAR = "2016-01-01|dqd", "2016-02-01|dqd", "2016-03-01|dqd"


def report(instance: dg.DagsterInstance, asset: str, partition: str, **metadata) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=partition, metadata=metadata))


def test_schedule_is_off_by_default_and_targets_retraining_and_catalog() -> None:
    schedule = defs.get_schedule_def("retrain_drifting_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    job = defs.resolve_job_def("retrain_and_refresh")
    assert {n.name for n in job.graph.nodes} == {"vae_checkpoints", "embeddings", "mlm_stac_items"}


def test_requests_a_run_per_drifting_partition_only() -> None:
    with dg.instance_for_test() as instance:
        for p in (JAN, FEB, MAR):
            report(instance, "geohash_chips", p)
            report(instance, "vae_checkpoints", p)
        report(instance, "embeddings", JAN, mean_recon_mse=0.0009)  # fits
        report(instance, "embeddings", FEB, mean_recon_mse=0.02)  # drifted: reconstruction error above the bound
        report(instance, "geohash_chips", MAR)  # new acquisitions chipped after the checkpoints
        report(instance, "embeddings", MAR, mean_recon_mse=0.001)
        context = dg.build_schedule_context(
            instance=instance, resources={"thresholds": QualityThresholds(max_rmse=0.005 ** 0.5)},
            scheduled_execution_time=datetime(2026, 11, 23, 3, tzinfo=timezone.utc),
        )  # fmt: skip
        requests = retrain_drifting_schedule(context)
        assert [r.partition_key for r in requests] == [FEB, MAR]
        assert requests[0].run_key == f"retrain:2026-11-23T03:00:{FEB}"
        assert "0.02" in requests[0].tags["geoembed/drift"] and "new acquisitions" in requests[1].tags["geoembed/drift"]

        report(instance, "vae_checkpoints", MAR)  # retrained: MAR no longer drifts
        report(instance, "embeddings", FEB, mean_recon_mse=0.001)
        assert isinstance(retrain_drifting_schedule(context), dg.SkipReason)
