"""Models that pay for themselves: a new region starts from a model of the same land-cover cluster, a new
acquisition reuses the current model while its error stays within the bound or near the model's own, drift trains
a new version, old rows still decode."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geoembed_assets.core import workflow
from geoembed_assets.core.checkpoints import load_checkpoint
from geoembed_assets.core.embeddings import decode_cell, read_embeddings
from geoembed_assets.core.training import TrainingConfig
from geoembed_assets_tests.small_chips import shared_small_chips

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = TrainingConfig(latent_dim=4, patch_size=32, base_channels=8, max_epochs=20, max_steps=12)


@pytest.fixture(scope="module")
def chips(s2_scene) -> pd.DataFrame:
    return shared_small_chips(s2_scene, ("dqdnw", "dqdnm", "dqdnq"), 128)


def test_new_region_starts_from_a_model_of_the_same_cluster(chips, tmp_path: Path) -> None:
    first, second = chips[chips["geohash"].isin(["dqdnw", "dqdnm"])], chips[chips["geohash"] == "dqdnq"]
    clusters = pd.DataFrame({"geohash": ["dqdnw", "dqdnm", "dqdnq"], "cluster": [1, 1, 1]})
    a = workflow.train_partition(first, tmp_path, TINY, "cpu", region="dqdn", clusters=clusters)
    assert a["start"].eq("scratch").all() and a["donor"].isna().all()
    b = workflow.train_partition(second, tmp_path, TINY, "cpu", scope="cell", clusters=clusters)
    assert b["start"].iloc[0].startswith("same-cluster") and b["donor"].iloc[0] == a["checkpoint_id"].iloc[0]
    meta = load_checkpoint(b["path"].iloc[0]).meta
    assert meta["training"]["max_steps"] == TINY.max_steps // 4 and meta["donor"] == a["checkpoint_id"].iloc[0]
    other = pd.DataFrame({"geohash": ["dqdnw", "dqdnm", "dqdnq"], "cluster": [1, 1, 2]})
    fresh = tmp_path / "fresh"
    shutil.copytree(tmp_path / "dqdn", fresh / "dqdn")  # only the region model: no same-cluster cell model
    c = workflow.train_partition(second, fresh, TINY, "cpu", scope="cell", clusters=other)
    assert c["start"].iloc[0] == "other-cluster" and c["donor"].iloc[0] == a["checkpoint_id"].iloc[0]
    assert workflow.train_partition(second, tmp_path / "empty", TINY, "cpu", scope="cell")["start"].iloc[0] == "scratch"


def brighter(path: str, folder: Path) -> Path:
    """A copy of a real chip with drifted radiometry (DN x 1.6 + 500), as a hazy or miscalibrated acquisition."""
    import rasterio

    out = folder / Path(path).name
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path) as src:
        profile, data, tags, names = src.profile, src.read(), src.tags(), src.descriptions
    valid = data != profile.get("nodata")
    data = np.where(valid, np.clip(data * 1.6 + 500, 0, 65534), data).astype(data.dtype)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
        dst.descriptions = names
    return out


def test_new_acquisition_reuses_then_drift_retrains_and_old_rows_still_decode(chips, tmp_path: Path) -> None:
    cell = chips[chips["geohash"] == "dqdnw"]
    ckpts = tmp_path / "ckpt"
    v1 = workflow.train_partition(cell, ckpts, TINY, "cpu", region="dqdn")
    path1, _ = workflow.embed_partition(cell, v1, "dqdn", "2016-01-01", tmp_path / "emb1")
    rows1 = read_embeddings(path1)
    before = decode_cell(rows1, ckpts).image
    later = cell.assign(scene_id="later-acquisition", datetime=cell["datetime"] + pd.Timedelta(days=30))
    within = workflow.train_partition(later, ckpts, TINY, "cpu", region="dqdn", max_mse=0.0)
    assert within["action"].eq("reused").all() and set(within["checkpoint_id"]) == set(v1["checkpoint_id"])
    later = later.assign(path=[str(brighter(p, tmp_path / "drifted")) for p in later["path"]])  # haze: 1.6x + 0.05
    drift = workflow.train_partition(later, ckpts, TINY, "cpu", region="dqdn", max_mse=0.0)
    assert drift["action"].eq("fine-tuned").all() and drift["parent"].iloc[0] == v1["checkpoint_id"].iloc[0]
    assert drift["version"].iloc[0] == 2 and drift["checkpoint_id"].iloc[0] != v1["checkpoint_id"].iloc[0]
    path2, _ = workflow.embed_partition(later, drift, "dqdn", "2016-02-01", tmp_path / "emb2")
    assert set(read_embeddings(path2)["checkpoint_id"]) == set(drift["checkpoint_id"])
    again = decode_cell(rows1, ckpts).image  # old rows name version 1, which is kept
    assert np.array_equal(again, before, equal_nan=True)
    # once trained on these scenes, the new version is reused as it is
    assert workflow.train_partition(later, ckpts, TINY, "cpu", region="dqdn", max_mse=0.0)["action"].eq("reused").all()
