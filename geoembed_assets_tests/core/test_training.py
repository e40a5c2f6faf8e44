"""Seeded VAE training on real patches, checkpoints that rebuild the same network, embeddings that decode."""

from pathlib import Path

import duckdb
import geopandas
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from geoembed_assets.core.checkpoints import load_checkpoint, save_checkpoint
from geoembed_assets.core.chipping import chip_scene
from geoembed_assets.core.embeddings import decode_cell, encode_patches, write_embeddings
from geoembed_assets.core.patches import assemble, cut_patches
from geoembed_assets.core.training import TrainingConfig, split_holdout, train_cell_vae
from geoembed_assets_tests.conftest import EDGE_CELL, INSIDE_CELL

TINY = TrainingConfig(latent_dim=8, patch_size=16, base_channels=8, depth=2, max_epochs=3, patience=3, batch_size=16)


@pytest.fixture(scope="module")
def chip(s2_scene):
    return chip_scene(s2_scene, [INSIDE_CELL], 128)[0]


@pytest.fixture(scope="module")
def trained(chip):
    patches = cut_patches(chip.reflectance, TINY.patch_size)
    return patches, train_cell_vae(patches, chip.band_names, "sentinel-2a", TINY)


def test_patches_tile_and_reassemble(chip, s2_scene) -> None:
    patches = cut_patches(chip.reflectance, 16)
    assert len(patches) == 64 and patches.grid_shape == (8, 8)
    assert np.array_equal(assemble(patches.data, patches.rows, patches.cols, (128, 128)), chip.reflectance, equal_nan=True)
    edge = chip_scene(s2_scene, [EDGE_CELL], 128)[0]
    partial = cut_patches(edge.reflectance, 16)
    assert 0 < len(partial) < 64 and (partial.valid_fraction > 0).all()


def test_holdout_split_is_disjoint_and_seeded() -> None:
    train, hold = split_holdout(100, 0.2, seed=3)
    assert len(hold) == 20 and not set(train) & set(hold) and len(train) + len(hold) == 100
    assert np.array_equal(hold, split_holdout(100, 0.2, seed=3)[1])
    assert not np.array_equal(hold, split_holdout(100, 0.2, seed=4)[1])


def test_training_is_seeded_and_learns(trained, chip) -> None:
    patches, result = trained
    again = train_cell_vae(patches, chip.band_names, "sentinel-2a", TINY)
    assert result.history == again.history
    for a, b in zip(result.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    assert result.history[-1] < result.history[0]
    assert result.n_train + result.n_holdout == len(patches) and result.n_holdout == round(0.2 * len(patches))
    variance = float(np.nanvar(chip.reflectance))
    assert 0 < result.holdout_mse < variance  # better than predicting the mean
    assert set(result.holdout_index_errors) == {"ndvi", "ndwi", "ndbi"}


def test_checkpoint_roundtrip_with_weights_only(trained, chip, tmp_path: Path) -> None:
    _, result = trained
    meta = {"geohash": INSIDE_CELL, "bands": list(chip.band_names), "sensor": "sentinel-2a"}
    ckpt_id, path = save_checkpoint(tmp_path, result.model, result.normalizer, meta)
    assert path == tmp_path / INSIDE_CELL / f"{ckpt_id}.pt" and ckpt_id.startswith(INSIDE_CELL + "-")
    assert save_checkpoint(tmp_path, result.model, result.normalizer, meta)[0] == ckpt_id  # content-addressed
    loaded = load_checkpoint(path)
    x = torch.randn(2, 13, 16, 16)
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model.decode(loaded.model.encode(x)[0]), result.model.decode(result.model.encode(x)[0]))
    assert loaded.band_names == chip.band_names and loaded.meta == meta


def test_embeddings_parquet_and_decode(trained, chip, s2_scene, tmp_path: Path) -> None:
    patches, result = trained
    meta = {"geohash": INSIDE_CELL, "bands": list(chip.band_names), "sensor": "sentinel-2a"}
    ckpt_id, path = save_checkpoint(tmp_path / "ckpt", result.model, result.normalizer, meta)
    frame = encode_patches(load_checkpoint(path), patches, INSIDE_CELL, 128, s2_scene.scene_id, s2_scene.datetime)
    out = tmp_path / "emb.parquet"
    write_embeddings(frame, out)

    schema = pq.read_schema(out)
    assert schema.field("embedding").type.list_size == 8 and str(schema.field("embedding").type.value_type) == "float"
    gdf = geopandas.read_parquet(out)
    assert gdf.crs == "OGC:CRS84" and len(gdf) == 64  # GeoParquet default: lon/lat WGS 84
    assert gdf.geometry.union_all().bounds == pytest.approx(chip.grid.bounds)
    rows = duckdb.sql(f"select count(*), count(distinct checkpoint_id), max(recon_mse) from '{out}'").fetchall()[0]
    assert rows[0] == 64 and rows[1] == 1 and rows[2] > 0

    image, bands, transform, crs = decode_cell(gdf, tmp_path / "ckpt")
    assert image.shape == chip.reflectance.shape and bands == chip.band_names
    assert transform == chip.grid.transform and crs == "EPSG:4326"
    mse = float(np.nanmean((image - chip.reflectance) ** 2))
    assert mse == pytest.approx(float(gdf["recon_mse"].mean()), rel=1e-3)
