"""Watch the landing folder: new scenes add their region and month partitions and request one run per (region, month)."""

import json
import os
from pathlib import Path

import dagster as dg
import yaml

from geoembed_assets.assets.config import ChipsConfig
from geoembed_assets.core import workflow
from geoembed_assets.core.readers import open_scene
from geoembed_assets.core.scene import SceneError
from geoembed_assets.partitions import REGION_PRECISION, add_requests, partition_key
from geoembed_assets.resources import GeoembedStorage


RUN_CONFIG_ENV = "GEOEMBED_RUN_CONFIG"


def sensor_run_config() -> dict:
    """Run config the sensors attach to their runs: the YAML/JSON file named by $GEOEMBED_RUN_CONFIG, else none.

    Lets a deployment (or a test) pick e.g. a faster training preset for automatic runs without a code change.
    """
    path = os.environ.get(RUN_CONFIG_ENV)
    return (yaml.safe_load(Path(path).read_text()) or {}) if path else {}


def _fingerprint(path) -> str:
    return workflow.delivery_fingerprint(path)  # every file of the delivery, so in-place edits are seen


@dg.sensor(
    job_name="embed_scenes",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Registers new deliveries in the landing folder; a scene delivered twice is processed once.",
)
def landing_sensor(context: dg.SensorEvaluationContext, storage: GeoembedStorage) -> dg.SensorResult:
    seen: list[str] = json.loads(context.cursor) if context.cursor else []
    precision = ChipsConfig().precision
    requests, run_config = [], sensor_run_config()
    if storage.remote:
        storage.sync_landing()  # deliveries uploaded to the store's landing/ (unchanged files are not downloaded)
    for entry in workflow.landing_entries(storage.landing_dir):
        fingerprint = _fingerprint(entry)
        if fingerprint in seen:
            continue
        seen.append(fingerprint)
        try:
            scene = open_scene(entry)
        except SceneError as exc:
            context.log.warning(f"skipping {entry}: {exc}")
            continue
        month = workflow.month_of(scene.datetime)
        for region in workflow.scene_regions(scene, precision, REGION_PRECISION):
            key = partition_key(region, month)
            # The scene id comes from the data, so a second delivery of the same scene maps to the same run key.
            run_key = f"{scene.scene_id}:{key}"
            if run_key not in {r.run_key for r in requests}:
                requests.append(dg.RunRequest(
                    run_key=run_key, partition_key=key, tags={"scene_id": scene.scene_id}, run_config=run_config
                ))
    return dg.SensorResult(
        run_requests=requests,
        # the new regions and months: the UI's partitions are exactly the ones with data
        dynamic_partitions_requests=add_requests([r.partition_key for r in requests], context.instance.has_dynamic_partition),
        cursor=json.dumps(seen),
    )
