"""Models on embeddings vs on raw pixels (paper Tables 4-6), side by side in one run, on both real series.

    nice -n 15 python benchmarks/bench_models.py [--device cpu|cuda] [--datasets worldcereal,slovenia]
        [--after 0,1] [--vae-steps 300] [--gan-epochs 40] [--latent-loss decoder|uniform|pixel] [--latents int8|float]
        [--only both|series|gan] [--validate] [--json out.json]

Real data, through the pipeline's ingest (open_scene -> scene_cells -> chip_scene) at geohash precision 7 (16 px
chips):
- worldcereal: the twelve WorldCereal monthly L2A composites (9 bands, reflectance; errors in reflectance);
- slovenia: the 68 eo-learn NDVI dates (one descriptor per date, cloud probability >= 0.4 masked, dates less than
  90 % clear dropped; errors in NDVI units, [-1, 1]).
Per series, one shared spatial VAE trained with `train_cell_vae` on its chips (the test cells' held-back dates
excluded). For each family, the embeddings model and its raw twin: training seconds, epochs, peak memory (RSS
above the start of the run, each fit in a fresh spawned process; CUDA max allocated on a GPU) and test error, with
ratios raw / embeddings (> 1: embeddings cheaper or better). The ConvLSTMs run in each `--after` setting: 0 sees
only the previous dates (forecast, the paper's setting), 1 also the following date with data (gap filling: what
linear interpolation sees).

`--validate`: settings are chosen without the test cells or dates: the same run on the training cells only, split
again into inner training / validation cells, scored on validation dates (other than the test dates).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoembed_assets.core.models.downstream import gan_inputs  # noqa: E402
from geoembed_assets.core.models.gan import GANConfig, run_gan_experiment  # noqa: E402
from geoembed_assets.core.models.series import DATASETS, load_series, load_slovenia, worldcereal_paths  # noqa: E402
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
    lines = [f"\n== {label} ==", f"{'':30s}{'embeddings':>14s}{'raw':>14s}{'raw/emb':>10s}"]
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
        lines.append(f"{name:30s}{a:>14.4g}{b:>14.4g}{ratio(b, a):>10s}")
    return lines


def load(name: str, precision: int, size_px: int, landing: Path):
    if name == "worldcereal":
        return load_series(worldcereal_paths(), precision, size_px)
    if name == "slovenia":
        return load_slovenia(landing / "slovenia", precision, size_px)
    raise ValueError(f"unknown dataset {name!r}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--datasets", default="worldcereal,slovenia")
    ap.add_argument("--precision", type=int, default=7)
    ap.add_argument("--size-px", type=int, default=16)
    ap.add_argument("--vae-steps", type=int, default=300)
    ap.add_argument("--series-epochs", type=int, default=None, help="default: per dataset (60 WorldCereal, 20 Slovenia)")
    ap.add_argument("--after", default="0,1", help="following dates the ConvLSTMs see, one run per value")
    ap.add_argument("--refine-steps", type=int, default=10)
    ap.add_argument("--gan-epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)  # torch threads, also in the spawned training processes
    ap.add_argument("--latent-loss", default="decoder", choices=["decoder", "uniform", "pixel"])
    ap.add_argument("--latents", default="int8", choices=["int8", "float"], help="embedding ConvLSTM inputs/targets")
    ap.add_argument("--only", default="both", choices=["both", "series", "gan"])
    ap.add_argument("--validate", action="store_true", help="training cells only, validation dates (see above)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ["GEOEMBED_BENCH_THREADS"] = str(args.threads)
    start = time.perf_counter()
    out: dict = {"config": {"vae_steps": args.vae_steps, "device": args.device, "validate": args.validate}, "datasets": {}}
    with tempfile.TemporaryDirectory() as landing:
        for name in args.datasets.split(","):
            out["datasets"][name] = run_dataset(name, args, Path(landing))
    out["wall_s"] = time.perf_counter() - start
    print_goals(out)
    print(f"\nwall time of the whole run: {out['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return out


def run_dataset(name: str, args, landing: Path) -> dict:
    spec = DATASETS[name]
    series = load(name, args.precision, args.size_px, landing)
    epochs = args.series_epochs or spec["epochs"]
    base = SeriesConfig(epochs=epochs, seed=args.seed, latent_loss=args.latent_loss, latents=args.latents, holdout_dates=spec["holdout"], refine_steps=args.refine_steps)
    train_cells, test_cells = split_cells(len(series.geohashes), base.test_fraction, base.seed)
    if args.validate:  # never touch the test cells; validation cells and dates from the training cells
        series = series.subset(train_cells)
        base = replace(base, holdout_dates=spec["validation"])
        train_cells, test_cells = split_cells(len(series.geohashes), base.test_fraction, base.seed)
    heldout = [series.date_index(d) for d in base.holdout_dates]
    v_cfg = TrainingConfig(patch_size=args.size_px, max_steps=args.vae_steps, max_epochs=400, seed=args.seed)
    print(f"\n######## {name}{' (VALIDATION: training cells only)' if args.validate else ''}: {len(series.geohashes)} "
          f"precision-{args.precision} cells x {len(series.dates)} dates ({int(series.has_data.sum())} with data), "
          f"bands {list(series.bands)}, {args.size_px} px, values in {series.units}; device {args.device}", flush=True)  # fmt: skip
    vae = train_series_vae(series, train_cells, heldout, v_cfg, args.device)
    print(f"shared VAE: {vae.epochs} epochs ({args.vae_steps} steps), train MSE {vae.train_mse:.3g}, holdout MSE "
          f"{vae.holdout_mse:.3g} ({series.units}, standardised loss space aside)", flush=True)  # fmt: skip
    result: dict = {"cells": len(series.geohashes), "dates": len(series.dates), "dates_with_data": int(series.has_data.sum()),
                    "units": series.units, "series": {}}  # fmt: skip
    if args.only in ("both", "series"):
        latents = encode_series(vae.model, vae.normalizer, series.cube, series.has_data, base.refine_steps, quantized=base.latents == "int8")
        for after in [int(a) for a in args.after.split(",")]:
            s_cfg = replace(base, after=after)
            result["series"][after] = series_table(series, vae, s_cfg, train_cells, test_cells, args.device, latents)
    if args.only in ("both", "gan") and not args.validate:
        result["gan"] = gan_table(series, vae, GANConfig(epochs=args.gan_epochs, seed=args.seed), args.device)
    return result


def series_table(series, vae, s_cfg: SeriesConfig, train_cells, test_cells, device: str, latents) -> dict:
    """Train and score both ConvLSTMs; print their table."""
    ts = run_series_experiment(series, vae.model, vae.normalizer, s_cfg, train_cells, test_cells, device, isolate=True, latents=latents)
    setting = "previous dates only" if not s_cfg.after else f"previous + {s_cfg.after} following date(s)"
    lines = [f"\nTime series (Tables 5-6), {setting}: window {s_cfg.window}, after {s_cfg.after}, {ts.n_train} training "
             f"windows, {ts.n_test} test (cell, date) pairs, held-back dates {ts.test_dates}; input shapes {ts.shapes}"]  # fmt: skip
    lines += fmt_cost_rows(f"ConvLSTM (after={s_cfg.after}): embeddings vs raw", ts.costs, ts.epochs,
                           {k: ts.errors[k]["mse"] for k in ("embeddings", "raw")}, f"test MSE ({series.units})")  # fmt: skip
    lines.append(f"\n{'method (' + series.units + ')':24s}{'test MSE':>12s}{'test MAE':>12s}{'MSE / raw':>11s}{'MSE / emb':>11s}")
    for method, err in ts.errors.items():
        lines.append(f"{method:24s}{err['mse']:>12.3e}{err['mae']:>12.3e}{ratio(err['mse'], ts.errors['raw']['mse']):>11s}"
                     f"{ratio(err['mse'], ts.errors['embeddings']['mse']):>11s}")  # fmt: skip
    e = ts.errors
    goals = {
        "beats_persistence": e["embeddings"]["mse"] < e["persistence"]["mse"],
        "beats_linear": "linear" in e and e["embeddings"]["mse"] < e["linear"]["mse"],
        "within_1.5x_raw": e["embeddings"]["mse"] <= 1.5 * e["raw"]["mse"],
        "time_5x": ts.costs["raw"].cpu_seconds >= 5 * ts.costs["embeddings"].cpu_seconds,
        "memory_5x": ts.costs["raw"].peak_rss_mb >= 5 * ts.costs["embeddings"].peak_rss_mb,
    }
    lines.append("goals (MSE): " + ", ".join(f"{k} {'MET' if v else 'NOT met'}" for k, v in goals.items()))
    print("\n".join(lines), flush=True)
    return {"errors": ts.errors, "costs": {k: v.to_dict() for k, v in ts.costs.items()}, "epochs": ts.epochs, "goals": goals,
            "n_train": ts.n_train, "n_test": ts.n_test, "test_dates": ts.test_dates, "shapes": ts.shapes, "after": s_cfg.after}  # fmt: skip


def gan_table(series, vae, g_cfg: GANConfig, device: str) -> dict:
    """Train and score both GANs; print their table (overall, per band, per cell)."""
    chips, latents, cells = gan_inputs(series, vae.model, vae.normalizer)
    gan = run_gan_experiment(chips, latents, vae.model, vae.normalizer, series.bands, series.sensor, g_cfg, device,
                             isolate=True, cells=cells, cell_names=list(series.geohashes))  # fmt: skip
    lines = [f"\nGAN (Table 4): {gan.n_real} real chips (fully valid), {g_cfg.epochs} epochs"]
    lines += fmt_cost_rows("GAN: embeddings vs raw", gan.costs, {k: v.epochs for k, v in gan.results.items()}, gan.bce, "BCE 'real' via raw D")
    lines.append(f"raw discriminator BCE on real chips {gan.bce_real_chips:.3f}; BCE ratio embeddings/raw {gan.bce_ratio:.3f}")
    lines.append(f"\nper band (band b of real chips replaced by the generated band b, raw D):\n{'band':10s}{'BCE emb':>10s}{'BCE raw':>10s}{'emb/raw':>9s}")
    for row in gan.per_band:
        lines.append(f"{row['band']:10s}{row['bce_embeddings']:>10.3f}{row['bce_raw']:>10.3f}{row['ratio']:>9.3f}")
    summary = gan.cell_summary()
    lines.append(f"\nper cell (each generated image attributed to its nearest real chip's cell, raw D): {summary}")
    lines.append(f"{'cell':10s}{'n emb':>6s}{'n raw':>6s}{'BCE emb':>9s}{'BCE raw':>9s}{'emb/raw':>9s}   " * 2)
    rows = [f"{r['cell']:10s}{r['n_embeddings']:>6d}{r['n_raw']:>6d}{r['bce_embeddings']:>9.3f}{r['bce_raw']:>9.3f}{r['ratio']:>9.3f}   "
            for r in gan.per_cell]  # fmt: skip
    lines += ["".join(rows[i : i + 2]) for i in range(0, len(rows), 2)]
    for method, dist in gan.band_distance.items():
        lines.append(f"{method:12s} |mean| per band {np.round(dist['mean'], 4).tolist()}")
        lines.append(f"{'':12s} |std|  per band {np.round(dist['std'], 4).tolist()}")
    print("\n".join(lines), flush=True)
    return {"costs": {k: v.to_dict() for k, v in gan.costs.items()}, "bce": gan.bce, "bce_ratio": gan.bce_ratio,
            "bce_real_chips": gan.bce_real_chips, "band_distance": gan.band_distance, "config": asdict(g_cfg),
            "per_band": gan.per_band, "per_cell": gan.per_cell, "cell_summary": summary}  # fmt: skip


def print_goals(out: dict) -> None:
    """One line per dataset and setting: the issue's goals, met or not."""
    print("\n######## goals (ratios raw / embeddings for cost; embeddings MSE against the others)")
    for name, res in out["datasets"].items():
        for after, s in res.get("series", {}).items():
            e = s["errors"]
            c = s["costs"]
            print(f"{name:12s} ConvLSTM after={after}: CPU {c['raw']['cpu_seconds'] / c['embeddings']['cpu_seconds']:.2f}x, "
                  f"memory {c['raw']['peak_rss_mb'] / max(c['embeddings']['peak_rss_mb'], 1e-9):.2f}x, MSE emb/raw "
                  f"{e['embeddings']['mse'] / e['raw']['mse']:.2f}, emb/persistence {e['embeddings']['mse'] / e['persistence']['mse']:.2f}, "
                  f"emb/linear {e['embeddings']['mse'] / e['linear']['mse']:.2f}, floor/raw {e['vae_reconstruction']['mse'] / e['raw']['mse']:.2f}"
                  f" -> {', '.join(k for k, v in s['goals'].items() if not v) or 'all met'}{' not met' if not all(s['goals'].values()) else ''}")  # fmt: skip
        if "gan" in res:
            c = res["gan"]["costs"]
            print(f"{name:12s} GAN: CPU {c['raw']['cpu_seconds'] / c['embeddings']['cpu_seconds']:.2f}x, memory "
                  f"{c['raw']['peak_rss_mb'] / max(c['embeddings']['peak_rss_mb'], 1e-9):.2f}x, BCE ratio emb/raw {res['gan']['bce_ratio']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
