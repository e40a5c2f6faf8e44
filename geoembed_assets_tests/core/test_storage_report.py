"""Storage and rate-distortion report: codecs checked on known images, then the whole report on real chips."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geoembed_assets.core import storage_report as sr
from geoembed_assets.core.chipping import read_chip
from geoembed_assets.core.patches import cut_patches
from geoembed_assets.core.training import TrainingConfig, train_cell_vae
from geoembed_assets_tests.conftest import S2_DIR
from geoembed_assets_tests.small_chips import shared_small_chips


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def chips(s2_scene) -> pd.DataFrame:
    return shared_small_chips(s2_scene)


@pytest.fixture(scope="module")
def chip(chips) -> tuple[np.ndarray, tuple[str, ...]]:
    refl, bands, _ = read_chip(chips["path"].iloc[0])
    return refl, bands


def test_block_average_of_constant_image_is_exact_and_counts_bytes() -> None:
    image = np.full((13, 100, 90), 0.1234, np.float32)
    for up in ("nearest", "bilinear"):
        recon, nbytes = sr.block_average(image, 8, up)
        assert recon.shape == image.shape and sr.valid_mse(image, recon) == pytest.approx(0.0, abs=1e-12)
        assert nbytes == 13 * 13 * 12 * 2  # ceil(100/8) x ceil(90/8) uint16 means per band


def test_block_for_budget_is_the_smallest_block_that_fits() -> None:
    block = sr.block_for_budget(28_800, 13, 480, 480)
    assert 13 * (480 / block) ** 2 * 2 <= 28_800 < 13 * np.ceil(480 / (block - 1)) ** 2 * 2
    assert sr.block_for_budget(10**9, 13, 480, 480) == 1


def test_block_average_recovers_block_means(chip) -> None:
    refl, _ = chip
    recon, _ = sr.block_average(refl, 4, "nearest")
    means = refl.reshape(13, 32, 4, 32, 4).mean(axis=(2, 4))
    assert np.allclose(recon[:, ::4, ::4], means, atol=0.5e-4 + 1e-7)  # uint16 rounding of 1e-4 steps


def test_jpeg2000_rates_and_lossless_geotiff(chip, tmp_path: Path) -> None:
    refl, _ = chip
    lossless, lossless_bytes = sr.jp2_roundtrip(refl, 100, tmp_path)
    assert sr.valid_mse(refl, lossless) == pytest.approx(0.0, abs=1e-12)
    near, near_bytes = sr.jp2_roundtrip(refl, 25, tmp_path)
    low, low_bytes = sr.jp2_roundtrip(refl, 1, tmp_path)
    assert low_bytes < near_bytes < lossless_bytes
    assert sr.valid_mse(refl, near) < 1e-5 and sr.valid_mse(refl, near) < sr.valid_mse(refl, low) / 10
    for compress in ("ZSTD", "DEFLATE"):
        recon, nbytes = sr.geotiff_roundtrip(refl, compress, tmp_path)
        assert sr.valid_mse(refl, recon) == 0.0 and nbytes < refl.size * 2


def test_embedding_bytes_and_quantisation() -> None:
    z = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    for dtype, expected, tol in (("float32", 16 * 8 * 4, 0), ("float16", 16 * 8 * 2, 1e-2), ("uint8", 16 * 8 + 2 * 8 * 4, 0.02)):
        stored, nbytes = sr.quantise_embedding(z, dtype)
        assert nbytes == expected and np.abs(stored - z).max() <= tol


def test_embedding_roundtrip_matches_training_reconstruction(chip) -> None:
    refl, bands = chip
    patches = cut_patches(refl, 32)
    result = train_cell_vae(patches, bands, "sentinel-2a", TrainingConfig(latent_dim=4, base_channels=8, max_epochs=2))
    recon, nbytes = sr.embedding_roundtrip(result.model, result.normalizer, patches, refl.shape[1:])
    assert nbytes == len(patches) * 4 * 4 and recon.shape == refl.shape
    assert 0 < sr.valid_mse(refl, recon) < float(np.nanvar(refl))
    assert sr.checkpoint_bytes(result.model, result.normalizer) > nbytes  # the decoder outweighs one cell's embeddings


def test_verdicts_compare_at_no_more_bytes() -> None:
    summary = pd.DataFrame(
        dict(
            method=["embeddings (multi-band)", "JPEG2000", "JPEG2000"], setting=["size 8", "q1", "q2"],
            bytes_per_cell=[1000.0, 900.0, 5000.0], checkpoint_bytes=[10_000.0, 0, 0], mse=[1e-4, 2e-4, 1e-6],
            ndvi_mae=[0.1, 0.1, 0.01],
        )
    )  # fmt: skip
    summary["bytes_with_checkpoint"] = summary["bytes_per_cell"] + summary["checkpoint_bytes"]
    v = sr.verdicts(summary).iloc[0]
    assert v["verdict without checkpoint"] == "wins" and "q1" in v["best baseline without checkpoint"]
    assert v["verdict with checkpoint"] == "loses" and "q2" in v["best baseline with checkpoint"]
    assert v["baseline bytes for same MSE"] == 5000 and v["break-even acquisitions"] == 3  # 10000 / (5000 - 1000)


def test_report_on_real_chips(chips, s2_scene) -> None:
    config = sr.ReportConfig(n_cells=1, multi_sizes=(4,), single_sizes=(), max_epochs=2, base_channels=8, jp2_qualities=(1.0,))
    report = sr.build_report(chips, sr.raw_scene_files([s2_scene]), {}, Path("unused"), config)
    raw = sum(p.stat().st_size for p in S2_DIR.glob("s2_B*.jp2"))
    storage = report.storage.set_index("artefact")
    assert storage.loc["raw scene as delivered (band files)", "bytes"] == raw
    assert storage.loc["chips (ZSTD uint16 GeoTIFF)", "bytes"] == chips["bytes"].sum()
    methods = set(report.summary["method"])
    assert {"embeddings (multi-band)", "block average (nearest)", "block average (bilinear)", "JPEG2000",
            "GeoTIFF ZSTD (lossless)", "GeoTIFF DEFLATE (lossless)"} <= methods  # fmt: skip
    emb = report.summary[report.summary["method"] == "embeddings (multi-band)"].set_index("setting")
    assert emb.loc["size 4, float32", "bytes_per_cell"] == 16 * 4 * 4 and emb["checkpoint_bytes"].gt(0).all()
    lossless = report.summary[report.summary["method"].str.contains("lossless")]
    assert lossless["mse"].eq(0).all() and lossless["ndvi_mae"].eq(0).all()
    assert len(report.verdicts) == len(emb) and "## Rate-distortion" in report.markdown()
