"""Weekly retraining of drifting partitions and a catalog refresh (off by default).

A partition drifts when its embeddings no longer fit (mean reconstruction MSE of its latest embeddings above
the bound) or when its chips were re-made after its checkpoints (new acquisitions delivered in the month). Its
run re-materializes `vae_checkpoints` with `retrain: true` (a new version trained from the region's current
model), `embeddings` and then
`mlm_stac_items`, so the catalog lists the new model versions; the catalog is rebuilt from disk and swapped in by
rename, so concurrent refreshes are harmless.
"""

from __future__ import annotations

import os

import dagster as dg

from geoembed_assets.resources import QualityThresholds

CHIPS, CHECKPOINTS, EMBEDDINGS, CATALOG = (dg.AssetKey(k) for k in ("geohash_chips", "vae_checkpoints", "embeddings", "mlm_stac_items"))

retrain_and_refresh = dg.define_asset_job(
    "retrain_and_refresh",
    selection=dg.AssetSelection.assets(CHECKPOINTS, EMBEDDINGS, CATALOG),
    description="Retrain one partition's cell VAEs (warm start), re-embed, and refresh the STAC catalog.",
)


def _latest_by_partition(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, dg.EventLogRecord]:
    """The newest materialization record of each partition of `key`."""
    latest: dict[str, dg.EventLogRecord] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor, ascending=False)
        for record in page.records:
            partition = record.partition_key
            if partition is not None and partition not in latest:
                latest[partition] = record
        if not page.has_more:
            return latest
        cursor = page.cursor


def drifting_partitions(instance: dg.DagsterInstance, max_recon_mse: float) -> dict[str, str]:
    """{partition: reason} of the partitions to retrain."""
    embeddings = _latest_by_partition(instance, EMBEDDINGS)
    checkpoints = _latest_by_partition(instance, CHECKPOINTS)
    chips = _latest_by_partition(instance, CHIPS)
    reasons: dict[str, str] = {}
    for partition, record in embeddings.items():
        metadata = record.asset_materialization.metadata
        mse = metadata.get("mean_land_mse") or metadata.get("mean_recon_mse")  # land cells: water hides drift
        if mse is not None and float(mse.value) > max_recon_mse:
            reasons[partition] = f"mean reconstruction MSE {float(mse.value):.4g} > {max_recon_mse:g}"
        elif partition in chips and partition in checkpoints and chips[partition].storage_id > checkpoints[partition].storage_id:
            reasons[partition] = "chips re-made after the checkpoints (new acquisitions)"
    return dict(sorted(reasons.items()))


@dg.schedule(
    cron_schedule="0 3 * * 1",  # Mondays 03:00
    job=retrain_and_refresh,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Retrains the partitions whose embeddings drifted (reconstruction MSE above the bound, or new "
    "chips since the checkpoints) and refreshes the STAC catalog with the new model versions.",
)
def retrain_drifting_schedule(context: dg.ScheduleEvaluationContext, thresholds: QualityThresholds):
    bound = float(os.environ.get("GEOEMBED_DRIFT_MSE", thresholds.target().max_mse))
    drifting = drifting_partitions(context.instance, bound)
    if not drifting:
        return dg.SkipReason(f"no partition drifted (MSE bound {bound:g})")
    tick = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")  # one run per partition and tick
    return [
        dg.RunRequest(
            run_key=f"retrain:{tick}:{partition}", partition_key=partition, tags={"geoembed/drift": reason},
            run_config={"ops": {"vae_checkpoints": {"config": {"retrain": True}}}},  # a new version, not a reuse
        )
        for partition, reason in drifting.items()
    ]
