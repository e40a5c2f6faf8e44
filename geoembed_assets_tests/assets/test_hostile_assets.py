"""Hostile inputs through real Dagster runs: bad settings fail the first step, a corrupt checkpoint fails a
catalog check without taking the catalog down, a scene of another region names its region."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from geoembed_assets.assets import embedding_assets
from geoembed_assets.assets.catalog_assets import INPUTS_READABLE_CHECK, STAC_VALID_CHECK, mlm_stac_items
from geoembed_assets.partitions import partition_key, register_keys
from geoembed_assets.resources import GeoembedStorage, QualityThresholds, TorchDevice
from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR

ASSETS = dg.load_assets_from_modules([embedding_assets])


def landing(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "landing").mkdir(parents=True)
    shutil.copy(DEFAULT_DESCRIPTOR, data / "landing" / DEFAULT_DESCRIPTOR.name)
    return data


def run(data: Path, region: str, run_config: dict) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    register_keys(instance, [partition_key(region, "2016-01-01")])
    return dg.materialize(
        ASSETS,
        partition_key=partition_key(region, "2016-01-01"),
        instance=instance,
        run_config=run_config,
        raise_on_error=False,
        resources={
            "storage": GeoembedStorage(data_dir=str(data)),
            "torch_device": TorchDevice(prefer="cpu"),
            "thresholds": QualityThresholds(),
        },
    )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.is_step_failure]
    return f"{event.step_key}: {event.step_failure_data.error.to_string()}"


def test_out_of_range_settings_fail_the_first_step_before_any_work(tmp_path: Path) -> None:
    data = landing(tmp_path)
    config = {"ops": {"vae_checkpoints": {"config": {"latent_dim": 0, "patch_size": 1000}}}}
    result = run(data, "dqd", config)
    assert not result.success
    message = failure_message(result)
    assert message.startswith("raw_tiles:")
    assert "vae_checkpoints: latent_dim=0" in message and "patch_size=1000 is larger than the cell" in message
    assert not (data / "chips").exists() and not (data / "checkpoints").exists()


def test_scene_of_another_region_names_its_region(tmp_path: Path) -> None:
    result = run(landing(tmp_path), "u33", {})
    message = failure_message(result)
    assert message.startswith("raw_tiles:") and "belongs to region(s) dqd, month 2016-01-01" in message


def test_corrupt_checkpoint_fails_a_check_and_the_catalog_is_still_written(tmp_path: Path) -> None:
    data = landing(tmp_path)
    corrupt = data / "checkpoints" / "dqdnw" / "dqdnw-0123456789ab.pt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"PK\x03\x04 not a torch file")
    result = dg.materialize([mlm_stac_items], resources={"storage": GeoembedStorage(data_dir=str(data))})
    assert result.success  # the catalog is written
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks[STAC_VALID_CHECK.name].passed
    unreadable = checks[INPUTS_READABLE_CHECK.name]
    assert not unreadable.passed and str(corrupt) in unreadable.description
    assert (data / "catalog" / "catalog.json").exists()
