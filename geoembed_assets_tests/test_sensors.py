import json
import shutil
from pathlib import Path

import dagster as dg

from geoembed_assets.partitions import month_partitions, region_partitions, register_keys
from geoembed_assets.resources import GeoembedStorage
from geoembed_assets.sensors import landing_sensor
from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR, band_folder_copy


def evaluate(instance: dg.DagsterInstance, data_dir: Path, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": GeoembedStorage(data_dir=str(data_dir))})
    return landing_sensor(context)


def test_new_scene_adds_partitions_and_duplicates_run_once(landing: Path) -> None:
    data_dir = landing.parent
    shutil.copy(DEFAULT_DESCRIPTOR, landing / "same-scene-delivered-again.scene.json")
    with dg.instance_for_test() as instance:
        result = evaluate(instance, data_dir, None)
        assert [r.partition_key for r in result.run_requests] == ["2016-01-01|dqd"]
        assert result.run_requests[0].run_key.endswith(":2016-01-01|dqd")
        added = {r.partitions_def_name: list(r.partition_keys) for r in result.dynamic_partitions_requests}
        assert added == {region_partitions.name: ["dqd"], month_partitions.name: ["2016-01-01"]}
        assert len(json.loads(result.cursor)) == 2

        register_keys(instance, ["2016-01-01|dqd"])
        again = evaluate(instance, data_dir, result.cursor)
        assert again.run_requests == [] and again.dynamic_partitions_requests == []

        # the same bands delivered later in another shape are the same scene: same run key, so the daemon,
        # which keeps run keys across ticks, launches no second run
        band_folder_copy(landing / "folder-delivery")
        third = evaluate(instance, data_dir, again.cursor)
        assert [r.run_key for r in third.run_requests] == [result.run_requests[0].run_key]


def test_broken_delivery_is_skipped_not_fatal(landing: Path) -> None:
    band_folder_copy(landing / "broken", skip=("B04",))
    with dg.instance_for_test() as instance:
        result = evaluate(instance, landing.parent, None)
        assert len(result.run_requests) == 1  # the good scene still runs
        assert len(json.loads(result.cursor)) == 2  # the broken one is remembered, not retried every tick
