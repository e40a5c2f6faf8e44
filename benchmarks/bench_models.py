"""Models on embeddings vs on raw pixels (paper Tables 4-6), side by side in one run.

    nice -n 15 python benchmarks/bench_models.py [--device cpu|cuda] [--precision 7] [--size-px 16]
        [--series-epochs 60] [--gan-epochs 40] [--vae-steps 300] [--json out.json]

Real data: the twelve WorldCereal monthly L2A composites (../shared/data/worldcereal-monthly-s2l2a), through the
pipeline's ingest (open_scene -> scene_cells -> chip_scene) at geohash precision 7 (16 px chips), and one shared
spatial VAE trained with `train_cell_vae` on the series' chips (the test cells' held-back dates excluded).
For each family, the embeddings model and its raw twin: training seconds, epochs, peak memory (RSS above the start
of the run, each fit in a fresh spawned process; CUDA max allocated on a GPU) and test error, with ratios raw / embeddings (> 1: embeddings cheaper or
better).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoembed_assets.core.models.gan import GANConfig, run_gan_experiment  # noqa: E402
from geoembed_assets.core.models.series import load_series, worldcereal_paths  # noqa: E402
from geoembed_assets.core.models.timeseries import (  # noqa: E402
    SeriesConfig,
    encode_series,
    run_series_experiment,
    split_cells,
    train_series_vae,
)
from geoembed_assets.core.training import TrainingConfig  # noqa: E402


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b:
        return "n/a"
    return f"{a / b:.2f}x"


def fmt_cost_rows(label: str, costs: dict, epochs: dict, errors: dict[str, float], error_name: str) -> list[str]:
    e, r = costs["embeddings"], costs["raw"]
    lines = [f"\n== {label} ==", f"{'':28s}{'embeddings':>14s}{'raw':>14s}{'raw/emb':>10s}"]
    rows = [
        ("training wall time (s)", e.seconds, r.seconds),
        ("training CPU time (s)", e.cpu_seconds, r.cpu_seconds),
        ("epochs", epochs["embeddings"], epochs["raw"]),
        ("peak RSS above start (MB)", e.peak_rss_mb, r.peak_rss_mb),
        ("peak Python heap (MB)", e.peak_python_mb, r.peak_python_mb),
    ]
    if e.peak_cuda_mb is not None:
        rows.append(("peak CUDA allocated (MB)", e.peak_cuda_mb, r.peak_cuda_mb))
    rows.append((error_name, errors["embeddings"], errors["raw"]))
    for name, a, b in rows:
        lines.append(f"{name:28s}{a:>14.4g}{b:>14.4g}{ratio(b, a):>10s}")
    return lines


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--precision", type=int, default=7)
    ap.add_argument("--size-px", type=int, default=16)
    ap.add_argument("--vae-steps", type=int, default=300)
    ap.add_argument("--series-epochs", type=int, default=60)
    ap.add_argument("--gan-epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)  # torch threads, also in the spawned training processes
    ap.add_argument("--latent-loss", default="uniform", choices=["decoder", "uniform"])
    ap.add_argument("--only", default="both", choices=["both", "series", "gan"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ["GEOEMBED_BENCH_THREADS"] = str(args.threads)

    series = load_series(worldcereal_paths(args.data_dir), args.precision, args.size_px)
    s_cfg = SeriesConfig(epochs=args.series_epochs, seed=args.seed, latent_loss=args.latent_loss)
    train_cells, test_cells = split_cells(len(series.geohashes), s_cfg.test_fraction, s_cfg.seed)
    heldout = [series.date_index(d) for d in s_cfg.holdout_dates]
    v_cfg = TrainingConfig(patch_size=args.size_px, max_steps=args.vae_steps, max_epochs=400, seed=args.seed)
    print(f"series: {len(series.geohashes)} precision-{args.precision} cells x {len(series.dates)} dates "
          f"({int(series.has_data.sum())} with data), {len(series.bands)} bands, {args.size_px} px; "
          f"device {args.device}", flush=True)  # fmt: skip
    vae = train_series_vae(series, train_cells, heldout, v_cfg, args.device)
    print(f"shared VAE: {vae.epochs} epochs, train MSE {vae.train_mse:.3g}, holdout MSE {vae.holdout_mse:.3g}", flush=True)

    out: dict = {"config": {"series": asdict(s_cfg), "vae": asdict(replace(v_cfg)), "device": args.device}}
    if args.only in ("both", "series"):
        out["series"] = series_table(series, vae, s_cfg, train_cells, test_cells, args.device)
    if args.only in ("both", "gan"):
        out["gan"] = gan_table(series, vae, GANConfig(epochs=args.gan_epochs, seed=args.seed), args.device)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return out


def series_table(series, vae, s_cfg: SeriesConfig, train_cells, test_cells, device: str) -> dict:
    """Train and score both ConvLSTMs; print their table."""
    ts = run_series_experiment(series, vae.model, vae.normalizer, s_cfg, train_cells, test_cells, device, isolate=True)
    lines = [f"\nTime series (Tables 5-6): window {s_cfg.window}, {ts.n_train} training windows, {ts.n_test} test "
             f"(cell, date) pairs, held-back dates {ts.test_dates}; input shapes {ts.shapes}"]  # fmt: skip
    lines += fmt_cost_rows("ConvLSTM: embeddings vs raw", ts.costs, ts.epochs, {k: ts.errors[k]["mse"] for k in ("embeddings", "raw")}, "test MSE (reflectance)")
    lines.append(f"\n{'method':22s}{'test MSE':>12s}{'test MAE':>12s}{'MSE / raw':>11s}")
    for method, err in ts.errors.items():
        lines.append(f"{method:22s}{err['mse']:>12.3e}{err['mae']:>12.3e}{ratio(err['mse'], ts.errors['raw']['mse']):>11s}")
    print("\n".join(lines), flush=True)
    return {"errors": ts.errors, "costs": {k: v.to_dict() for k, v in ts.costs.items()}, "epochs": ts.epochs,
            "n_train": ts.n_train, "n_test": ts.n_test, "test_dates": ts.test_dates, "shapes": ts.shapes}  # fmt: skip


def gan_table(series, vae, g_cfg: GANConfig, device: str) -> dict:
    """Train and score both GANs; print their table."""
    usable = series.has_data
    chips = series.cube[:, usable].reshape(-1, *series.cube.shape[2:])
    latents = encode_series(vae.model, vae.normalizer, series.cube, usable)[:, usable]
    latents = latents.reshape(len(chips), *latents.shape[2:])
    gan = run_gan_experiment(chips, latents, vae.model, vae.normalizer, series.bands, series.sensor, g_cfg, device, isolate=True)
    lines = [f"\nGAN (Table 4): {gan.n_real} real chips, {g_cfg.epochs} epochs"]
    lines += fmt_cost_rows("GAN: embeddings vs raw", gan.costs, {k: v.epochs for k, v in gan.results.items()}, gan.bce, "BCE 'real' via raw D")
    lines.append(f"raw discriminator BCE on real chips {gan.bce_real_chips:.3f}; BCE ratio embeddings/raw {gan.bce_ratio:.3f}")
    for method, dist in gan.band_distance.items():
        lines.append(f"{method:12s} |mean| per band {np.round(dist['mean'], 4).tolist()}")
        lines.append(f"{'':12s} |std|  per band {np.round(dist['std'], 4).tolist()}")
    print("\n".join(lines), flush=True)
    return {"costs": {k: v.to_dict() for k, v in gan.costs.items()}, "bce": gan.bce, "bce_ratio": gan.bce_ratio,
            "bce_real_chips": gan.bce_real_chips, "band_distance": gan.band_distance, "config": asdict(g_cfg)}  # fmt: skip


if __name__ == "__main__":
    main()
