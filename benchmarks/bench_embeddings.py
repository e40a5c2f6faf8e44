"""Embedding quality, rate-distortion and speed, measured side by side in one run.

    python benchmarks/bench_embeddings.py [--data-dir data] [--out data/reports] [--skip-worldcereal]

Needs `make demo` first (the default scene's chips and embeddings). Prints:
1. training seconds per cell of the shared model (the "fast" preset) with 1 and 2 torch threads, wall and CPU
   seconds, and encode / decode throughput (cells/s and 32x32-px patch equivalents/s);
2. the default scene's rate-distortion from about 100x to 10,000x (bytes as stored, whole GeoParquet) against block
   averaging and JPEG2000 at no more bytes, per cover (land / water), and the plot;
3. the same on the WorldCereal L2A monthly composites of ../shared/data (precision-6 cells, 64 px, every month with
   data: a cell-date is the unit, the checkpoint is shared by all of them).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from geoembed_assets.core import storage_report as sr
from geoembed_assets.core.checkpoints import load_checkpoint, save_checkpoint
from geoembed_assets.core.chipping import chip_scene, read_chip, scene_cells, write_chip
from geoembed_assets.core.codec import decode_grid, encode_chip
from geoembed_assets.core.readers import open_scene
from geoembed_assets.core.training import TrainingConfig, train_cell_vae
from geoembed_assets.core.workflow import cell_patches

WORLDCEREAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "worldcereal-monthly-s2l2a"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timings(chips: pd.DataFrame, steps: int) -> None:
    print(f"## Speed (shared model, 'fast' preset architecture, {steps} steps measured, extrapolated to 300)\n")
    patches, bands = cell_patches(chips["path"].tolist(), 48)
    cells = chips["geohash"].nunique()
    rows, model = [], None
    for threads in (1, 2):
        torch.set_num_threads(threads)
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = train_cell_vae(patches, bands, str(chips["sensor"].iloc[0]), TrainingConfig(max_steps=steps))
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        scale = 300 / steps
        rows.append(dict(threads=threads, wall_s_per_300_steps=wall * scale, cpu_s_per_300_steps=cpu * scale,
                         train_s_per_cell=wall * scale / cells))  # fmt: skip
        model = result
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g"))
    print(f"\n(CPU seconds with 2 threads / with 1 thread: {rows[1]['cpu_s_per_300_steps'] / rows[0]['cpu_s_per_300_steps']:.2f}; "
          f"wall: {rows[1]['wall_s_per_300_steps'] / rows[0]['wall_s_per_300_steps']:.2f})")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        _, path = save_checkpoint(tmp, model.model, model.normalizer, {"geohash": "dqd", "bands": list(bands)})
        ckpt = load_checkpoint(path)
    refl = [read_chip(p)[0] for p in chips["path"].head(6)]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for refine in (0, 10):
            start = time.perf_counter()
            grids = [encode_chip(ckpt.model, ckpt.normalizer, r, refine) for r in refl]
            enc = time.perf_counter() - start
            start = time.perf_counter()
            for g, r in zip(grids, refl):
                decode_grid(ckpt.model, ckpt.normalizer, g, r.shape[1:])
            dec = time.perf_counter() - start
            patches_per_cell = refl[0].shape[1] * refl[0].shape[2] / 32**2
            print(f"threads {threads}, refine {refine:2d}: encode {len(refl) / enc:.2f} cells/s "
                  f"({len(refl) * patches_per_cell / enc:.0f} patches/s), decode {len(refl) / dec:.2f} cells/s "
                  f"({len(refl) * patches_per_cell / dec:.0f} patches/s)")  # fmt: skip
    print()


def worldcereal_chips(folder: Path, size_px: int = 64, precision: int = 6) -> pd.DataFrame:
    """The monthly composites through the pipeline's own reader and chipper (precision-6 cells, 64 px)."""
    rows = []
    for tif in sorted(WORLDCEREAL.glob("*.tif")):
        scene = open_scene(tif)
        for chip in chip_scene(scene, scene_cells(scene, precision), size_px):
            if chip.coverage <= 0:
                continue  # the two months without data
            path = folder / chip.grid.geohash / f"{scene.scene_id}.tif"
            write_chip(chip, path)
            rows.append(dict(geohash=chip.grid.geohash, scene_id=scene.scene_id, datetime=pd.Timestamp(scene.datetime),
                             sensor=scene.sensor, path=str(path), coverage=chip.coverage, size_px=size_px,
                             bands=",".join(chip.band_names)))  # fmt: skip
    return pd.DataFrame(rows)


def show(title: str, report_rd: pd.DataFrame, out: Path, name: str) -> None:
    comparison = sr.comparison(report_rd)
    print(f"## {title}: embeddings against the best of block averaging and JPEG2000 at no more bytes\n")
    cols = ["method", "setting", "cover", "cells", "ratio", "ratio_with_checkpoint", "mse", "baseline_mse",
            "mean_mse_over_baseline", "worst_mse_over_baseline", "ndvi_mae"]  # fmt: skip
    print(comparison[cols].to_markdown(index=False, floatfmt=".3g"))
    print(f"\n## {title}: rate-distortion curve (mean per cover)\n")
    print(sr.curve(report_rd).sort_values(["cover", "method", "ratio"]).to_markdown(index=False, floatfmt=".3g"))
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{name}.png"
    png.write_bytes(sr.StorageReport(pd.DataFrame(), report_rd, comparison).plot(title))
    report_rd.to_csv(out / f"{name}.csv", index=False)
    print(f"\nplot: {png}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="data/reports")
    parser.add_argument("--timing-steps", type=int, default=40)
    parser.add_argument("--skip-worldcereal", action="store_true")
    args = parser.parse_args(argv)
    data, out = Path(args.data_dir), Path(args.out)
    indexes = sorted((data / "chips").glob("*/index_*.parquet"))
    if not indexes:
        raise SystemExit(f"no chip index under {data / 'chips'}: run `make demo` first")
    region, month = indexes[0].parent.name, indexes[0].stem.removeprefix("index_")
    chips = pd.read_parquet(indexes[0])
    start = time.perf_counter()
    timings(chips, args.timing_steps)
    torch.set_num_threads(2)
    report = sr.partition_report(data, region, month, sr.ReportConfig(), progress=lambda m: print(f"  {m}", flush=True))
    print("## Default scene: storage\n")
    print(report.storage.to_markdown(index=False, floatfmt=".4g"), "\n")
    show(f"Default scene {region} {month}", report.rate_distortion, out, "rate_distortion_default_scene")
    if not args.skip_worldcereal and WORLDCEREAL.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            wc = worldcereal_chips(Path(tmp))
            config = sr.ReportConfig(min_coverage=0.4, patch_size=32, rates=((2, 4), (3, 4), (4, 4)), jp2_qualities=())
            rd = sr.rate_distortion(wc, config, all_acquisitions=True, progress=lambda m: print(f"  {m}", flush=True))
            show("WorldCereal L2A monthly composites (cell-dates)", rd, out, "rate_distortion_worldcereal")
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
