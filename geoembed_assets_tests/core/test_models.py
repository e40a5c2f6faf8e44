"""Models trained on embeddings (issue 12): the missing-date ConvLSTM and the embedding GAN with their raw twins,
the baselines on a known series, masking of no data, and the real WorldCereal series through the pipeline's ingest."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

from geoembed_assets.core.models.gan import (
    DecodedGenerator,
    Discriminator,
    GANConfig,
    LatentGenerator,
    RawGenerator,
    band_stat_distance,
    run_gan_experiment,
    train_gan,
)
from geoembed_assets.core.models.measure import measured
from geoembed_assets.core.models.series import CellSeries, load_series, worldcereal_paths
from geoembed_assets.core.models.timeseries import (
    ConvLSTM,
    SeriesConfig,
    encode_series,
    fit_convlstm,
    linear_interpolation,
    masked_errors,
    persistence,
    previous_dates,
    run_series_experiment,
    split_cells,
    train_series_vae,
)
from geoembed_assets.core.training import TrainingConfig
from geoembed_assets.core.vae import VAEConfig, build_vae

TINY_VAE = TrainingConfig(latent_dim=4, patch_size=16, base_channels=8, depth=2, max_epochs=50, max_steps=25, batch_size=16)


@pytest.fixture(scope="module")
def series(one_torch_thread) -> CellSeries:
    """The real WorldCereal monthly series, precision-7 cells, 16 px chips (a few cells: tests stay fast)."""
    return load_series(worldcereal_paths(), precision=7, size_px=16, max_cells=12)


def test_shapes() -> None:
    seq = torch.randn(3, 2, 5, 8, 8)
    assert ConvLSTM(5, hidden=6)(seq).shape == (3, 5, 8, 8)
    vae = build_vae(VAEConfig(9, 16, 4, 8, 2, "spatial"))
    latent = LatentGenerator(7, (4, 4, 4), 8, np.zeros(4), np.ones(4))
    noise = torch.randn(5, 7)
    assert latent(noise).shape == (5, 4, 4, 4)
    assert DecodedGenerator(latent, vae)(noise).shape == (5, 9, 16, 16)
    assert RawGenerator(7, 9, 16, 8)(noise).shape == (5, 9, 16, 16)
    assert Discriminator(9, 16, 8)(torch.randn(5, 9, 16, 16)).shape == (5,)


def test_convlstm_starts_at_persistence() -> None:
    seq = torch.randn(2, 3, 4, 6, 6)
    torch.testing.assert_close(ConvLSTM(4, hidden=5)(seq), seq[:, -1])


def test_baselines_on_a_known_series() -> None:
    """Values linear in days, date 2 without data: persistence is the last usable date, interpolation is exact."""
    start = datetime(2021, 1, 1, tzinfo=timezone.utc)
    days = np.array([0.0, 31, 59, 90, 120])
    cube = np.stack([np.full((2, 3, 3), 0.1 + 0.002 * d, np.float32) for d in days])
    cube[2] = np.nan
    usable = ~np.isnan(cube).all(axis=(1, 2, 3))
    assert previous_dates(usable, 3, 2) == [0, 1]
    assert previous_dates(usable, 1, 2) is None
    np.testing.assert_array_equal(persistence(cube, usable, 3), cube[1])
    assert persistence(cube, usable, 0) is None
    np.testing.assert_allclose(linear_interpolation(cube, usable, days, 3), 0.1 + 0.002 * 90, rtol=1e-6)
    truth_2 = 0.1 + 0.002 * 59  # the missing date, interpolated between dates 1 and 3
    np.testing.assert_allclose(linear_interpolation(cube, usable, days, 2), truth_2, rtol=1e-6)
    assert linear_interpolation(cube, usable, days, 4) is None  # nothing after the last date
    _ = start + timedelta(days=1)


def test_errors_mask_nodata() -> None:
    truth = np.zeros((1, 2, 4, 4), np.float32)
    good = np.full_like(truth, 0.1)
    truth[0, :, 0, 0] = np.nan  # no data in the real image: a wild prediction there costs nothing
    good[0, :, 0, 0] = 100.0
    errors = masked_errors(truth, {"a": good, "b": np.full_like(truth, 0.2)})
    assert errors["a"] == pytest.approx({"mse": 0.01, "mae": 0.1, "n": 30})
    assert errors["b"]["mse"] == pytest.approx(0.04)
    holey = np.full_like(truth, 0.2)
    holey[0, 0, 3, 3] = np.nan  # a prediction with a hole: every method is scored on the same pixels
    assert masked_errors(truth, {"a": good, "b": holey})["a"]["n"] == 29


def test_seeded_convlstm_learns(one_torch_thread) -> None:
    """A sequence whose next frame is a fixed function of the last two: loss falls, and the same seed repeats it."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(48, 2, 3, 6, 6, generator=gen)
    y = 0.5 * x[:, 1] + 0.5 * x[:, 0].roll(1, dims=-1)
    cfg = SeriesConfig(hidden=8, epochs=15, batch_size=16, learning_rate=1e-2)
    fit = fit_convlstm(x, y, cfg)
    assert fit.epochs == 15
    assert fit.history[-1] < 0.5 * fit.history[0]
    assert fit_convlstm(x, y, cfg).history == fit.history
    masked = fit_convlstm(x, y, cfg, masks=torch.ones(48, 1, 6, 6), weights=torch.ones(1, 3, 1, 1))
    np.testing.assert_allclose(masked.history, fit.history, rtol=1e-5)


def test_gan_trains(one_torch_thread) -> None:
    """A raw DCGAN on two-band images with distinct band levels moves its generated band means toward the real ones."""
    gen = torch.Generator().manual_seed(1)
    real = torch.cat([torch.full((64, 1, 8, 8), 1.5), torch.full((64, 1, 8, 8), -1.0)], 1) + 0.1 * torch.randn(64, 2, 8, 8, generator=gen)
    cfg = GANConfig(noise_dim=8, width=16, epochs=30, batch_size=32, learning_rate=2e-3)
    torch.manual_seed(cfg.seed)
    generator = RawGenerator(cfg.noise_dim, 2, 8, cfg.width)
    with torch.no_grad():
        before = band_stat_distance(generator(torch.randn(64, 8)).numpy(), real.numpy())["mean"]
    result = train_gan(generator, real, cfg)
    assert result.epochs == 30 and len(result.history) == 30
    with torch.no_grad():
        after = band_stat_distance(result.generator(torch.randn(64, 8)).numpy(), real.numpy())["mean"]
    assert after.max() < 0.5 * before.max()


def test_decoder_stays_frozen(one_torch_thread) -> None:
    vae = build_vae(VAEConfig(3, 8, 2, 4, 1, "spatial"))
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    gen = DecodedGenerator(LatentGenerator(4, (2, 4, 4), 8, np.zeros(2), np.ones(2)), vae)
    train_gan(gen, torch.randn(16, 3, 8, 8), GANConfig(noise_dim=4, width=8, epochs=2, batch_size=8))
    for k, v in vae.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_measured_reports_cost() -> None:
    value, cost = measured(lambda: np.ones((2000, 2000)).sum())
    assert value == 4e6 and cost.seconds > 0 and cost.peak_python_mb > 25  # the 32 MB array is traced
    assert cost.peak_cuda_mb is None


def test_worldcereal_series_through_ingest(series: CellSeries) -> None:
    assert len(series.dates) == 12 and series.bands == ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
    assert [d.strftime("%Y-%m") for d, ok in zip(series.dates, series.has_data) if not ok] == ["2020-12", "2021-01"]
    assert series.cube.shape == (12, 12, 9, 16, 16)
    assert all(len(g) == 7 for g in series.geohashes)
    dated = series.cube[:, series.has_data]
    assert not np.isnan(dated).any() and 0.0 < np.nanmean(dated) < 0.5  # reflectance, every kept cell fully valid


def test_series_experiment_on_real_series(series: CellSeries) -> None:
    """Embedding and raw ConvLSTMs and both baselines scored on held-back dates of unseen cells."""
    cfg = SeriesConfig(hidden=8, epochs=4, test_fraction=0.25)
    train_cells, test_cells = split_cells(len(series.geohashes), cfg.test_fraction, cfg.seed)
    heldout = [series.date_index(d) for d in cfg.holdout_dates]
    vae = train_series_vae(series, train_cells, heldout, TINY_VAE)
    assert vae.n_train + vae.n_holdout == 12 * 10 - len(test_cells) * 2  # no chip of a test cell's held-back date
    result = run_series_experiment(series, vae.model, vae.normalizer, cfg, train_cells, test_cells)
    assert result.n_test == len(test_cells) * 2 and result.test_dates == ["2021-05-01", "2021-08-01"]
    assert set(result.errors) == {"embeddings", "raw", "persistence", "linear", "vae_reconstruction", "latent_persistence"}
    for err in result.errors.values():
        assert np.isfinite(err["mse"]) and err["mse"] > 0 and err["n"] == result.n_test * 9 * 16 * 16
    assert result.shapes == {"embeddings": [2, 4, 4, 4], "raw": [2, 9, 16, 16]}
    assert result.epochs == {"embeddings": 4, "raw": 4}
    latents = encode_series(vae.model, vae.normalizer, series.cube, series.has_data)
    assert np.isnan(latents[:, ~series.has_data]).all() and np.isfinite(latents[:, series.has_data]).all()


def test_gan_experiment_on_real_chips(series: CellSeries) -> None:
    usable = series.has_data
    chips = series.cube[:, usable].reshape(-1, 9, 16, 16)[:64]
    vae = train_series_vae(series, np.arange(len(series.geohashes)), [], TINY_VAE)
    latents = encode_series(vae.model, vae.normalizer, series.cube, usable)[:, usable].reshape(-1, 4, 4, 4)[:64]
    out = run_gan_experiment(chips, latents, vae.model, vae.normalizer, series.bands, series.sensor,
                             GANConfig(noise_dim=8, width=16, epochs=2, batch_size=32), n_eval=16)  # fmt: skip
    assert set(out.bce) == {"embeddings", "raw"} and out.bce_ratio == pytest.approx(out.bce["embeddings"] / out.bce["raw"])
    assert all(len(d["mean"]) == 9 and len(d["std"]) == 9 for d in out.band_distance.values())
    assert out.png.startswith(b"\x89PNG") and out.n_real == 64
    assert out.costs["embeddings"].seconds > 0 and out.results["raw"].epochs == 2


def test_stored_models_get_valid_mlm_items(series: CellSeries, tmp_path) -> None:
    """Both families stored beside their decoder checkpoint; the catalog validates offline and links them."""
    import json

    from geoembed_assets.core.models.downstream import run_gan, run_timeseries, split_for, store_series_vae
    from geoembed_assets.core.models.store import load_model, model_files
    from geoembed_assets.core.stac.catalog import write_catalog
    from geoembed_assets.core.stac.schemas import validate_tree

    small = series.subset(np.arange(6))
    cfg = SeriesConfig(hidden=8, epochs=2, test_fraction=0.34)
    train_cells, test_cells, heldout = split_for(small, cfg)
    decoder = store_series_vae(tmp_path, small, train_cells, heldout, TINY_VAE)
    ts, ts_ids = run_timeseries(tmp_path, small, decoder, cfg, train_cells, test_cells)
    _, gan_ids = run_gan(tmp_path, small, decoder, GANConfig(noise_dim=8, width=16, epochs=1))
    assert [p.stem for p in model_files(tmp_path, "timeseries")] == sorted(ts_ids.values())
    reloaded = load_model(model_files(tmp_path, "timeseries")[0])
    assert reloaded.meta["scores"]["persistence"]["mse"] == pytest.approx(ts.errors["persistence"]["mse"])
    counts = write_catalog(tmp_path)
    assert counts == {"vae": 1, "timeseries": 2, "gan": 2}
    assert validate_tree(tmp_path / "catalog") == {}
    for family, ids in (("timeseries", ts_ids), ("gan", gan_ids)):
        for variant, model_id in ids.items():
            item = json.loads((tmp_path / "catalog" / family / model_id / f"{model_id}.json").read_text())
            derived = {Path(link["href"]).stem for link in item["links"] if link["rel"] == "derived_from"}
            assert (decoder in derived) == (variant == "embeddings")
            assert item["properties"]["geoembed:variant"] == variant
            assert item["properties"]["start_datetime"].startswith("2020-11-01")
            assert item["properties"]["end_datetime"].startswith("2021-10-01")
    # Once embeddings exist, only checkpoints in use are listed: a downstream model's decoder is in use.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from geoembed_assets.core.stac.items import vae_items

    (tmp_path / "embeddings" / "u1").mkdir(parents=True)
    pq.write_table(pa.table({"checkpoint_id": ["u1-0123456789ab"]}), tmp_path / "embeddings" / "u1" / "2021-01.parquet")
    assert [b.item.id for b in vae_items(tmp_path)] == [decoder]


def test_decoder_response_is_the_linear_map() -> None:
    """A decoder that is exactly linear (1x1 conv, no residual path): the response is its weight times the z-score."""
    from geoembed_assets.core.models.timeseries import decoder_response
    from geoembed_assets.core.training import Normalizer

    class Linear1x1(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 1)

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return self.conv(z)

    model = Linear1x1()
    norm = Normalizer(np.zeros(3, np.float32), np.array([1.0, 2.0, 0.5], np.float32))
    response = decoder_response(model, norm, np.array([0.3, -0.1]), np.array([2.0, 0.5]))
    expected = model.conv.weight[:, :, 0, 0].detach() * torch.tensor([2.0, 0.5])[None] * torch.tensor([1.0, 2.0, 0.5])[:, None]
    torch.testing.assert_close(response, expected, rtol=1e-4, atol=1e-5)


def test_measured_isolated_sees_a_fresh_peak() -> None:
    """In a spawned process an 8 MB allocation shows as RSS, whatever this process freed before."""
    from geoembed_assets.core.models.measure import measured_isolated

    array, cost = measured_isolated(np.ones, (1024, 1024))
    assert array.shape == (1024, 1024) and array.sum() == 1024 * 1024
    assert 7.5 < cost.peak_rss_mb < 64 and cost.cpu_seconds >= 0


# --- gap filling (`after`), Slovenia NDVI through the ingest, GAN BCE per cell and per band -------------------


def test_context_dates_and_interpolation_start() -> None:
    """`after` following dates join the window; the untrained model is the interpolation of its frames in time."""
    from geoembed_assets.core.models.timeseries import context_dates

    usable = np.array([True, True, False, True, True, False, True])
    assert context_dates(usable, 3, 2, 0) == [0, 1]
    assert context_dates(usable, 3, 2, 1) == [0, 1, 4]  # date 2 has no data: skipped
    assert context_dates(usable, 4, 2, 2) is None  # only one usable date after 4
    assert context_dates(usable, 6, 2, 1) is None  # nothing after the last date
    seq = torch.randn(3, 3, 4, 5, 5)
    offsets = torch.tensor([[-3.0, -1.0, 3.0], [-2.0, -1.0, 1.0], [-5.0, -4.0, 1.0]])
    model = ConvLSTM(4, hidden=6, window=2, after=1, time_channel=True)
    w = torch.tensor([1 / 4, 1 / 2, 4 / 5]).view(3, 1, 1, 1)  # -before / (after - before)
    torch.testing.assert_close(model(seq, offsets), seq[:, 1] + w * (seq[:, 2] - seq[:, 1]))
    with pytest.raises(ValueError, match="time offsets"):
        model(seq)
    persist = ConvLSTM(4, hidden=6, window=3, after=0, time_channel=True)
    torch.testing.assert_close(persist(seq, offsets - 4.0), seq[:, -1])


def test_fit_with_offsets_learns_and_stores(tmp_path) -> None:
    """A target that is the midpoint plus a fixed offset-dependent shift: the time channel lets the loss fall;
    the stored model rebuilds with its window/after/time channel and predicts the same."""
    from geoembed_assets.core.models.store import load_model, save_model

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, 2, 6, 6, generator=gen)
    off = torch.tensor([-2.0, -1.0, 1.0]).repeat(48, 1) * (1 + torch.rand(48, 1, generator=gen))
    y = x[:, 1] + 0.5 * (x[:, 2] - x[:, 1]) + 0.3 * off[:, :1, None, None]
    cfg = SeriesConfig(hidden=8, epochs=12, batch_size=16, learning_rate=1e-2, window=2, after=1)
    fit = fit_convlstm(x, y, cfg, offsets=off)
    assert fit.history[-1] < 0.5 * fit.history[0]
    arch = {"channels": 2, "hidden": 8, "kernel": 3, "window": 2, "after": 1, "time_channel": True}
    _, path = save_model(tmp_path, "timeseries", "raw", fit.model, arch, {"arch": arch})
    with torch.no_grad():
        torch.testing.assert_close(load_model(path).model(x[:4], off[:4]), fit.model(x[:4], off[:4]), atol=2e-2, rtol=1e-2)


@pytest.fixture(scope="module")
def slovenia(one_torch_thread, tmp_path_factory):
    from geoembed_assets.core.models.series import SLOVENIA_DIR, load_slovenia

    if not SLOVENIA_DIR.exists():
        pytest.skip("shared eo-learn Slovenia data not present")
    return load_slovenia(tmp_path_factory.mktemp("landing"), precision=7, size_px=16)


def test_slovenia_descriptors_open_one_date_each(tmp_path) -> None:
    import json

    from geoembed_assets.core.models.series import SLOVENIA_DIR, slovenia_descriptors
    from geoembed_assets.core.readers import open_scene

    if not SLOVENIA_DIR.exists():
        pytest.skip("shared eo-learn Slovenia data not present")
    paths = slovenia_descriptors(tmp_path, threshold=0.3)
    stamps = json.loads((SLOVENIA_DIR / "timestamps.json").read_text())
    assert len(paths) == len(stamps) == 68
    scene = open_scene(paths[4], roots=[tmp_path, SLOVENIA_DIR])
    assert scene.band_names == ["NDVI"] and scene.bands[0].index == 5 and scene.datetime.isoformat().startswith(stamps[4])
    assert (scene.scale, scene.offset) == (1.0, 0.0) and np.isnan(scene.nodata)
    assert scene.extra["cloud_probability"] == {"path": str(SLOVENIA_DIR / "cloud_probability_68dates.tif"), "band": 5, "threshold": 0.3}
    with pytest.raises(Exception, match="refused|outside"):
        open_scene(paths[4])  # the data folder is not an allowed root by default


def test_slovenia_series_dates_and_cloud_masks(slovenia) -> None:
    """68 dates in time order; a date clear over the whole raster keeps every pixel, a date cloudy over the whole
    raster has no data, and every kept value is NDVI."""
    import json

    import rasterio

    from geoembed_assets.core.models.series import SLOVENIA_CLOUD_THRESHOLD, SLOVENIA_DIR

    stamps = json.loads((SLOVENIA_DIR / "timestamps.json").read_text())
    assert [d.isoformat()[:19] for d in slovenia.dates] == stamps and slovenia.units == "NDVI" and slovenia.bands == ("NDVI",)
    with rasterio.open(SLOVENIA_DIR / "cloud_probability_68dates.tif") as ds:
        cloudy = ds.read() >= SLOVENIA_CLOUD_THRESHOLD
    clear_everywhere, cloudy_everywhere = ~cloudy.any(axis=(1, 2)), cloudy.all(axis=(1, 2))
    assert clear_everywhere.any() and cloudy_everywhere.any()
    assert slovenia.has_data[clear_everywhere].all() and not slovenia.has_data[cloudy_everywhere].any()
    assert not np.isnan(slovenia.cube[:, clear_everywhere]).any()
    dated = slovenia.cube[:, slovenia.has_data]
    assert np.nanmin(dated) >= -1 and np.nanmax(dated) <= 1
    assert slovenia.cube.shape[0] >= 20 and all(len(g) == 7 for g in slovenia.geohashes)


def test_slovenia_threshold_changes_the_mask(tmp_path) -> None:
    """Without masking (threshold above every probability, no date dropped), every date has data and no pixel is NaN."""
    from geoembed_assets.core.models.series import SLOVENIA_DIR, load_slovenia

    if not SLOVENIA_DIR.exists():
        pytest.skip("shared eo-learn Slovenia data not present")
    raw = load_slovenia(tmp_path, max_cells=3, threshold=1.0, min_clear=0.0)
    assert raw.has_data.all() and not np.isnan(raw.cube).any()


def test_series_experiment_gap_filling_on_slovenia(slovenia) -> None:
    """after=1 on the NDVI series: three frames, errors in NDVI units, everything finite; the following date is
    seen, so the untrained raw model (0 epochs) is exactly linear interpolation."""
    small = slovenia.subset(np.arange(8))
    cfg = SeriesConfig(hidden=8, epochs=0, after=1, test_fraction=0.25, holdout_dates=("2017-07-20", "2017-10-13"), refine_steps=2)
    train_cells, test_cells = split_cells(len(small.geohashes), cfg.test_fraction, cfg.seed)
    heldout = [small.date_index(d) for d in cfg.holdout_dates]
    vae = train_series_vae(small, train_cells, heldout, TINY_VAE)
    result = run_series_experiment(small, vae.model, vae.normalizer, cfg, train_cells, test_cells)
    assert result.shapes == {"embeddings": [3, 4, 4, 4], "raw": [3, 1, 16, 16]} and result.extra["units"] == "NDVI"
    assert result.n_test == len(test_cells) * 2
    assert result.errors["raw"]["mse"] == pytest.approx(result.errors["linear"]["mse"], rel=1e-4)
    for err in result.errors.values():
        assert np.isfinite(err["mse"]) and np.isfinite(err["mae"]) and err["mse"] > 0


def test_gan_bce_per_cell_and_band(series: CellSeries) -> None:
    from geoembed_assets.core.models.downstream import gan_inputs
    from geoembed_assets.core.models.gan import nearest_cells

    vae = train_series_vae(series, np.arange(len(series.geohashes)), [], TINY_VAE)
    chips, latents, cells = gan_inputs(series, vae.model, vae.normalizer)
    assert len(chips) == len(latents) == len(cells) == len(series.geohashes) * int(series.has_data.sum())
    real, _ = vae.normalizer.forward(chips)
    np.testing.assert_array_equal(nearest_cells(real[::7], real, cells), cells[::7])  # a real chip is its own nearest
    out = run_gan_experiment(chips, latents, vae.model, vae.normalizer, series.bands, series.sensor,
                             GANConfig(noise_dim=8, width=16, latent_width=8, epochs=1, batch_size=32), n_eval=40,
                             cells=cells, cell_names=list(series.geohashes))  # fmt: skip
    assert [r["band"] for r in out.per_band] == list(series.bands)
    for row in out.per_band:
        assert np.isfinite(row["bce_embeddings"]) and np.isfinite(row["bce_raw"]) and row["ratio"] > 0
    assert [r["cell"] for r in out.per_cell] == list(series.geohashes)
    for method in ("embeddings", "raw"):
        assert sum(r[f"n_{method}"] for r in out.per_cell) == 40
    for row in out.per_cell:
        both = row["n_embeddings"] > 0 and row["n_raw"] > 0
        assert np.isfinite(row["ratio"]) == both
        if both:
            assert row["ratio"] == pytest.approx(row["bce_embeddings"] / row["bce_raw"])
    summary = out.cell_summary()
    assert summary["cells"] == len(series.geohashes) and summary["cells_hit_raw"] >= 1


def test_float_latents_are_the_int8_ones_before_quantisation(series: CellSeries) -> None:
    """`latents="float"` trains on the refined grids before the int8 rounding: within half a quantisation step."""
    from geoembed_assets.core.codec import encode_chip, encode_chip_float, quantize

    usable = series.has_data
    vae = train_series_vae(series, np.arange(len(series.geohashes)), [], TINY_VAE)
    z8 = encode_series(vae.model, vae.normalizer, series.cube[:3], usable, refine_steps=2)
    zf = encode_series(vae.model, vae.normalizer, series.cube[:3], usable, refine_steps=2, quantized=False)
    assert not np.array_equal(z8[:, usable], zf[:, usable])
    for i in range(3):
        for t in np.flatnonzero(usable):
            step = quantize(zf[i, t]).scale[:, None, None]
            assert np.all(np.abs(z8[i, t] - zf[i, t]) <= 0.5 * step + 1e-7)
    chip = series.cube[0, int(np.flatnonzero(usable)[0])]
    grid = encode_chip(vae.model, vae.normalizer, chip)
    np.testing.assert_array_equal(quantize(encode_chip_float(vae.model, vae.normalizer, chip)).values, grid.values)


def test_pixel_loss_trains_through_a_frozen_decoder(one_torch_thread) -> None:
    """latent_loss="pixel": the ConvLSTM's prediction is decoded before the masked, band-weighted error; the loss
    falls, the decoder does not move, and masked-out pixels do not count."""
    from geoembed_assets.core.models.timeseries import LatentDecoder

    torch.manual_seed(0)
    vae = build_vae(VAEConfig(3, 8, 2, 8, 1, "spatial"))
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    dec = LatentDecoder(vae, np.array([0.5, -0.5]), np.array([2.0, 1.0]), (8, 8))
    x = torch.randn(32, 2, 2, 4, 4)
    with torch.no_grad():
        y = dec(x[:, -1] + 0.5)  # the images of a shifted last frame
    mask = torch.ones(32, 1, 8, 8)
    mask[:, :, :4] = 0
    y_bad = y.clone()
    y_bad[:, :, :4] = 100.0  # garbage only where masked out
    cfg = SeriesConfig(hidden=8, epochs=15, batch_size=8, learning_rate=1e-2)
    fit = fit_convlstm(x, y_bad, cfg, masks=mask, weights=torch.ones(1, 3, 1, 1), decoder=dec)
    assert fit.history[-1] < 0.5 * fit.history[0] and fit.history[0] < 50  # the masked garbage never entered
    for k, v in vae.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert LatentDecoder(vae, np.zeros(2), np.ones(2), (6, 6))(x[:, 0]).shape == (32, 3, 6, 6)


@pytest.mark.parametrize("after", [0, 1])
def test_untrained_embedding_model_is_the_latent_baseline(series: CellSeries, after: int) -> None:
    """With no training the embedding ConvLSTM is the latent baseline (persistence or interpolation of the latent
    grids, decoded), which the experiment reports beside the pixel baselines; every loss option runs."""
    cfg = SeriesConfig(hidden=4, epochs=0, test_fraction=0.25, after=after)
    train_cells, test_cells = split_cells(len(series.geohashes), cfg.test_fraction, cfg.seed)
    heldout = [series.date_index(d) for d in cfg.holdout_dates]
    vae = train_series_vae(series, train_cells, heldout, TINY_VAE)
    result = run_series_experiment(series, vae.model, vae.normalizer, cfg, train_cells, test_cells, raw=False)
    assert "raw" not in result.errors and set(result.costs) == {"embeddings"}
    base = "latent_linear" if after else "latent_persistence"
    assert result.errors["embeddings"]["mse"] == pytest.approx(result.errors[base]["mse"], rel=1e-5)
    for loss in ("decoder", "pixel"):
        trained = run_series_experiment(series, vae.model, vae.normalizer, replace(cfg, epochs=2, latent_loss=loss), train_cells,
                                        test_cells, raw=False)  # fmt: skip
        assert np.isfinite(trained.errors["embeddings"]["mse"])
        assert trained.errors["embeddings"]["mse"] != result.errors["embeddings"]["mse"]
    with pytest.raises(ValueError, match="latent_loss"):
        run_series_experiment(series, vae.model, vae.normalizer, replace(cfg, latent_loss="bogus"), train_cells, test_cells, raw=False)
