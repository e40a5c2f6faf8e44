"""The `mlm_stac_items` asset materialized by Dagster on real pipeline outputs, with its blocking schema check."""

import json
from pathlib import Path

import dagster as dg
import pytest

from geoembed_assets.assets.catalog_assets import STAC_VALID_CHECK, mlm_stac_items
from geoembed_assets.resources import GeoembedStorage
from geoembed_assets_tests.core.test_stac import make_data_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("catalog_asset"), cells=1)


def materialize(data_dir: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [mlm_stac_items], resources={"storage": GeoembedStorage(data_dir=str(data_dir))}, raise_on_error=False
    )


def test_catalog_asset_writes_valid_catalog(data_dir):
    result = materialize(data_dir)
    assert result.success
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == STAC_VALID_CHECK.name]
    assert check.check_name == STAC_VALID_CHECK.name and check.passed
    (materialization,) = result.asset_materializations_for_node("mlm_stac_items")
    assert materialization.metadata["items_per_collection"].data == {"scenes": 1, "vae": 1, "embeddings": 1}  # v1 unused
    assert (data_dir / "catalog" / "catalog.json").exists()
    again = materialize(data_dir)  # re-materializing does not duplicate Items
    (materialization,) = again.asset_materializations_for_node("mlm_stac_items")
    assert materialization.metadata["items"].value == 3


def test_blocking_check_fails_with_schema_message(data_dir, monkeypatch):
    from geoembed_assets.core.stac import items

    real = items.vae_properties

    def cpu_accelerator(path):  # what a careless builder would write: "cpu" is not in the MLM enum
        properties, meta = real(path)
        return properties.model_copy(update={"accelerator": "cpu"}), meta

    monkeypatch.setattr(items, "vae_properties", cpu_accelerator)
    result = materialize(data_dir)
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == STAC_VALID_CHECK.name]
    assert not check.passed
    assert "'cpu' is not one of" in check.description
    errors = check.metadata["errors"].data
    assert len(errors) == 1 and all("mlm:accelerator" in json.dumps(e) for e in errors.values())
