"""Embedding-size calibration and prediction: fits on synthetic data, calibration and single-band mode on real chips."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geoembed_assets.core import size_prediction as sp
from geoembed_assets.core import workflow
from geoembed_assets.core.embeddings import decode_cell
from geoembed_assets.core.training import TrainingConfig
from geoembed_assets_tests.small_chips import shared_small_chips



pytestmark = pytest.mark.usefixtures("one_torch_thread")


SIZES = np.array([2, 4, 8, 16, 32, 64, 128])
TRUE_EXP = (-5.0, -0.45, 0.6, 0.03)  # loss = exp(t0 + t1*log2(size) + t2*s + t3*log2(size)*s)


def synthetic_points(coef=TRUE_EXP, noise: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i, s in enumerate([1.2, 1.8, 2.5, 3.1, 3.9]):
        for size in SIZES:
            u = np.log2(size)
            loss = np.exp(coef[0] + coef[1] * u + coef[2] * s + coef[3] * u * s) * (1 + noise * rng.standard_normal())
            rows.append(dict(geohash=f"cell{i}", mode="multi", size=size, loss=loss, gzip_ratio=s, pca_components=10 * s,
                             kernel_pca_components=rng.uniform(50, 150)))  # fmt: skip
    return pd.DataFrame(rows)


def test_exponential_fit_recovers_known_parameters() -> None:
    model = sp.fit_size_model("exponential", "gzip_ratio", synthetic_points())
    assert np.allclose(model.coef, TRUE_EXP, atol=1e-6)
    assert model.r2 == pytest.approx(1.0, abs=1e-9) and model.cv_r2 == pytest.approx(1.0, abs=1e-6)
    assert model.predict(2.5, 16)[0] == pytest.approx(np.exp(TRUE_EXP[0] + 4 * TRUE_EXP[1] + 2.5 * TRUE_EXP[2] + 10 * TRUE_EXP[3]))


def test_linear_fit_is_exact_on_linear_data() -> None:
    points = synthetic_points()
    points["loss"] = 0.01 - 0.001 * np.log2(points["size"]) + 0.002 * points["gzip_ratio"]
    model = sp.fit_size_model("linear", "gzip_ratio", points)
    assert np.allclose(model.coef, (0.01, -0.001, 0.002)) and model.r2 == pytest.approx(1.0)


def test_r2_table_and_best_pair_on_noisy_exponential_data() -> None:
    models = sp.fit_all(synthetic_points(noise=0.02))
    table = sp.r2_table(models)
    assert list(table.index) == list(sp.FUNCTIONS) and list(table.columns) == list(sp.SCORES)
    assert table.loc["exponential", "gzip_ratio"] > 0.99 and table.loc["exponential", "gzip_ratio"] > table.loc["linear", "gzip_ratio"]
    assert table.loc["exponential", "kernel_pca_components"] < 0.9  # a score unrelated to the loss explains less
    best = sp.choose_best(models, synthetic_points())
    assert best.function == "exponential" and best.score in {"gzip_ratio", "pca_components"}  # pca = 10 x gzip here


def test_implausible_models_are_not_chosen() -> None:
    points = synthetic_points()
    rising = sp.SizeModel("linear", "gzip_ratio", (0.001, 0.002, 0.0), r2=0.99, n_points=1, cv_r2=0.99)  # loss grows
    negative = sp.SizeModel("linear", "pca_components", (0.001, -0.01, 0.0), r2=0.98, n_points=1, cv_r2=0.98)
    exp = sp.fit_size_model("exponential", "gzip_ratio", points)
    assert not sp.is_plausible(rising, points["gzip_ratio"]) and not sp.is_plausible(negative, points["pca_components"])
    assert sp.choose_best([rising, negative, exp], points) == exp
    assert sp.choose_best([rising, negative]) == rising  # without the cells to check, the best R^2


def test_predicted_size_meets_the_bound_and_is_monotone_in_it() -> None:
    model = sp.fit_size_model("exponential", "gzip_ratio", synthetic_points())
    bounds = np.geomspace(1e-6, 1e-1, 30)
    sizes = [sp.predict_size(model, 2.5, tuple(SIZES), b) for b in bounds]
    assert all(a >= b for a, b in zip(sizes, sizes[1:]))  # looser bound -> no larger size
    assert sizes[0] == 128 and sizes[-1] == 2
    for bound, size in zip(bounds, sizes):
        if size < 128:
            assert model.predict(2.5, size)[0] <= bound
            smaller = [s for s in SIZES if s < size]
            assert all(model.predict(2.5, s)[0] > bound for s in smaller)
    # a more complex cell (higher score -> higher loss here) never needs a smaller size
    assert sp.predict_size(model, 3.9, tuple(SIZES), 0.002) >= sp.predict_size(model, 1.2, tuple(SIZES), 0.002)


def test_fit_no_better_than_a_constant_falls_back_to_the_measured_size() -> None:
    points = synthetic_points()
    rng = np.random.default_rng(1)
    points["loss"] = rng.uniform(1e-4, 3e-4, len(points))  # no size or score effect: nothing to predict from
    fitted = sp.fit_all(points)
    assert max(m.cv_r2 for m in fitted) < 0.1  # every fit is about as good as the mean, or worse
    best = sp.SizeModel("exponential", "gzip_ratio", fitted[0].coef, r2=0.05, n_points=len(points), cv_r2=-0.4)
    assert best.skill <= sp.MIN_R2 and not best.informative
    fallback = sp.with_fallback(best, points, bound=2.5e-4, candidates=tuple(SIZES))
    worst = points.groupby("size")["loss"].max()
    expected = int(worst[worst <= 2.5e-4].index.min()) if (worst <= 2.5e-4).any() else int(worst.index.max())
    assert fallback.fallback_size == expected
    assert sp.predict_size(fallback, 1.0, tuple(SIZES), 2.5e-4) == expected == sp.predict_size(fallback, 9.0, tuple(SIZES), 1.0)
    table = sp.predict_cell_sizes({"multi": fallback}, pd.DataFrame({"geohash": ["a"], "gzip_ratio": [2.0]}), tuple(SIZES))
    assert table["function"].iloc[0].startswith("fallback") and table["latent_dim"].iloc[0] == expected
    good = sp.fit_size_model("exponential", "gzip_ratio", synthetic_points())
    assert good.informative and sp.with_fallback(good, synthetic_points(), 2.5e-4) is good


def test_sample_cells_is_seeded() -> None:
    cells = [f"c{i}" for i in range(20)]
    assert sp.sample_cells(cells, 5, 1) == sp.sample_cells(cells, 5, 1) != sp.sample_cells(cells, 5, 2)
    assert sp.sample_cells(cells[:3], 5, 1) == sorted(cells[:3])
    scores = pd.DataFrame({"geohash": cells, **{name: np.arange(20.0) for name in sp.SCORES}})
    strata = sp.sample_cells(cells, 4, 1, scores)
    assert [int(c[1:]) // 5 for c in sorted(strata, key=lambda c: int(c[1:]))] == [0, 1, 2, 3]  # one per quarter


def test_loss_curve_png() -> None:
    model = sp.fit_size_model("exponential", "gzip_ratio", synthetic_points())
    png = sp.loss_curve_png({"multi": model}, {"multi": 2.5}, "cell")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def chips(s2_scene) -> pd.DataFrame:
    return shared_small_chips(s2_scene)


def test_calibration_on_real_chips_with_ndvi_ablation(chips) -> None:
    config = sp.CalibrationConfig(sizes=(2, 8), n_cells=1, max_epochs=2, patience=2, base_channels=8, single_bands=("B04",),
                                  modes=sp.MODES)  # fmt: skip
    runs = sp.run_calibration(chips, config)
    assert runs["geohash"].nunique() == 1
    multi, single = runs[runs["mode"] == "multi"], runs[runs["mode"] == "single"]
    assert sorted(multi[multi["ndvi_weight"] == 0.1]["size"]) == [2, 8] and list(single["band"]) == ["B04", "B04"]
    assert (runs["holdout_mse"] > 0).all() and (runs["epochs"] <= 2).all()
    ablation = sp.ndvi_ablation(runs)  # NDVI error recorded with and without the NDVI term
    assert list(ablation["size"]) == [8]
    assert {"holdout_ndvi_mae@ndvi_w=0", "holdout_ndvi_mae@ndvi_w=0.1"} <= set(ablation.columns)
    scores = workflow.score_partition(chips, 32)
    points = sp.calibration_points(runs, scores, ndvi_weight=0.1)
    assert len(points) == 4 and set(sp.SCORES) <= set(points.columns)  # (multi, single) x 2 sizes, one cell


def test_single_band_mode_rows_carry_band_names_and_decode(chips, tmp_path: Path) -> None:
    chips = chips.iloc[:1]
    config = TrainingConfig(latent_dim=4, base_channels=8, max_epochs=1, patience=1, index_weights={})
    ckpts = workflow.train_partition(
        chips, tmp_path / "ckpt", config, "cpu", mode="single", latent_dims={chips["geohash"].iloc[0]: 2}, scope="cell"
    )
    bands = tuple(chips["bands"].iloc[0].split(","))
    assert list(ckpts["band"]) == list(bands) and ckpts["latent_dim"].eq(2).all()
    path, frame = workflow.embed_partition(chips, ckpts, "dqd", "2016-01-01", tmp_path / "emb", mode="single")
    assert path.name == "2016-01-01-single.parquet"
    assert frame.groupby("band").size().eq(1).all() and set(frame["band"]) == set(bands)  # one row per band
    stored = pd.read_parquet(path)
    assert stored["embedding"].map(len).eq(2 * 32 * 32).all()  # 2 channels on the 1/4 grid of 128 px
    decoded = decode_cell(stored, tmp_path / "ckpt")
    assert decoded.bands == bands and decoded.image.shape == (13, 128, 128) and np.isfinite(decoded.image).all()
    assert decoded.crs == "EPSG:4326"
