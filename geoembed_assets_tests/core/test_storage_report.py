"""Storage and rate-distortion report: codecs checked on known images, then the whole report on real chips."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geoembed_assets.core import storage_report as sr
from geoembed_assets.core.chipping import read_chip
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


def test_int8_latents_roundtrip_within_half_a_step() -> None:
    from geoembed_assets.core.codec import quantize

    z = np.random.default_rng(0).normal(size=(4, 8, 8)).astype(np.float32)
    grid = quantize(z)
    assert grid.values.dtype == np.int8 and grid.scale.shape == (4,)
    assert np.abs(grid.dequantize() - z).max() <= 0.5 * grid.scale.max() + 1e-7
    assert np.abs(grid.values).max() == 127  # every channel uses its full range


def test_comparison_takes_the_best_baseline_at_no_more_bytes() -> None:
    rd = pd.DataFrame(
        dict(
            geohash=["a"] * 4, cover=["land"] * 4, method=["embeddings (spatial VAE)", "JPEG2000", "JPEG2000", "block average (bilinear)"],
            setting=["s", "q1", "q2", "b"], bytes=[1000.0, 900.0, 5000.0, 1000.0], checkpoint_bytes=[500.0, 0, 0, 0],
            ratio=[100.0, 111.0, 20.0, 100.0], mse=[1e-4, 2e-4, 1e-6, 4e-4], ndvi_mae=[0.01, 0.02, 0.001, 0.03],
        )
    )  # fmt: skip
    row = sr.comparison(rd).iloc[0]
    assert row["baseline_mse"] == 2e-4 and row["worst_mse_over_baseline"] == pytest.approx(0.5)  # q2 is too big
    assert row["ratio_with_checkpoint"] == pytest.approx(100 * 1000 / 1500)


def test_report_on_real_chips(chips, s2_scene) -> None:
    config = sr.ReportConfig(n_cells=1, rates=((2, 2),), max_steps=3, base_channels=8, refine_steps=0, jp2_qualities=(1.0,))
    report = sr.build_report(chips, sr.raw_scene_files([s2_scene]), {}, Path("unused"), config)
    raw = sum(p.stat().st_size for p in S2_DIR.glob("s2_B*.jp2"))
    storage = report.storage.set_index("artefact")
    assert storage.loc["raw scene as delivered (band files)", "bytes"] == raw
    assert storage.loc["chips (ZSTD uint16 GeoTIFF, lossless)", "bytes"] == chips["bytes"].sum()
    assert storage.loc["chips as uint16 arrays", "bytes"] == len(chips) * 13 * 128 * 128 * 2
    methods = set(report.rate_distortion["method"])
    assert {"embeddings (spatial VAE)", "block average (nearest)", "block average (bilinear)", "JPEG2000",
            "GeoTIFF ZSTD (lossless)", "GeoTIFF DEFLATE (lossless)"} <= methods  # fmt: skip
    emb = report.rate_distortion[report.rate_distortion["method"] == "embeddings (spatial VAE)"]
    assert (emb["bytes"] > 2 * 32 * 32).all() and emb["checkpoint_bytes"].gt(0).all()  # int8 grid + the Parquet around it
    lossless = report.rate_distortion[report.rate_distortion["method"].str.contains("lossless")]
    assert lossless["mse"].eq(0).all() and lossless["ndvi_mae"].eq(0).all()
    assert set(report.rate_distortion["cover"]) <= {"land", "water"} and len(report.comparison) == 1
    assert "## Rate-distortion curve" in report.markdown() and report.plot("t")[:4] == b"\x89PNG"
