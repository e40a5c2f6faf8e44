"""Temporal reuse and drift (paper Figure 6) on a real monthly series, measured in one run.

    python benchmarks/bench_temporal.py

The WorldCereal L2A monthly composites of ../shared/data (12 months, 9 bands; 2020-12 and 2021-01 have no data)
go through the pipeline's reader and chipper (precision-6 cells, 64 px). Two measurements:
1. generalisation: one shared model trained on four months spread over the year, then MSE on those months
   against MSE on the six months it never saw (goal: unseen within 1.5x of seen);
2. the pipeline's own reuse / drift policy month by month (`workflow.train_partition` with the quality target):
   which months reuse the current model, which train a new version, the MSE of each month and the bytes.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from geoembed_assets.core import workflow
from geoembed_assets.core.checkpoints import load_checkpoint
from geoembed_assets.core.chipping import read_chip
from geoembed_assets.core.codec import decode_grid, encode_chip
from geoembed_assets.core.quality import QualityTarget
from geoembed_assets.core.training import TrainingConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embeddings import worldcereal_chips  # noqa: E402

TRAIN_MONTHS = ("2020-11", "2021-03", "2021-06", "2021-09")
CONFIG = TrainingConfig(patch_size=32, max_steps=300)


def month(chips: pd.DataFrame) -> pd.Series:
    return chips["datetime"].dt.strftime("%Y-%m")


def mse_per_month(chips: pd.DataFrame, ckpt) -> pd.DataFrame:
    rows = []
    for chip in chips.itertuples():
        refl, _, _ = read_chip(chip.path)
        recon = decode_grid(ckpt.model, ckpt.normalizer, encode_chip(ckpt.model, ckpt.normalizer, refl, 10), refl.shape[1:])
        rows.append(dict(month=f"{chip.datetime:%Y-%m}", geohash=chip.geohash, mse=float(np.nanmean((refl - recon) ** 2))))
    return pd.DataFrame(rows)


def main() -> int:
    start = time.perf_counter()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        chips = worldcereal_chips(tmp / "chips")
        chips = chips[chips["coverage"] >= 0.4].reset_index(drop=True)
        print(f"{len(chips)} chips: cells {sorted(chips['geohash'].unique())}, months {sorted(month(chips).unique())}\n")
        train = chips[month(chips).isin(TRAIN_MONTHS)]
        ckpts = workflow.train_partition(train, tmp / "ckpt", CONFIG, "cpu", region="u0")
        ckpt = load_checkpoint(ckpts["path"].iloc[0])
        per = mse_per_month(chips, ckpt)
        per["seen"] = per["month"].isin(TRAIN_MONTHS)
        table = per.groupby(["month", "seen"], as_index=False)["mse"].mean()
        print("## 1. One model trained on 4 months, applied to all\n")
        print(table.to_markdown(index=False, floatfmt=".3g"))
        seen, unseen = per[per["seen"]]["mse"].mean(), per[~per["seen"]]["mse"].mean()
        print(f"\nmean MSE on trained months {seen:.3g}, on unseen months {unseen:.3g}: ratio {unseen / seen:.2f} "
              f"(goal <= 1.5); checkpoint {Path(ckpt.path).stat().st_size:,} B shared by {len(chips)} cell-dates\n")

        print("## 2. The pipeline's policy, month by month (quality target MSE "
              f"{QualityTarget().max_mse:.2e})\n")
        rows = []
        for m in sorted(month(chips).unique()):
            part = chips[month(chips) == m]
            t = time.perf_counter()
            ck = workflow.train_partition(part, tmp / "policy", CONFIG, "cpu", region="u0", max_mse=QualityTarget().max_mse)
            path, frame = workflow.embed_partition(part, ck, "u0", f"{m}-01", tmp / "emb", refine_steps=10)
            rows.append(dict(month=m, action=ck["action"].iloc[0], version=int(ck["version"].iloc[0]),
                             seconds=time.perf_counter() - t, cells=len(part), mean_mse=float(frame["recon_mse"].mean()),
                             embedding_bytes=path.stat().st_size))  # fmt: skip
        policy = pd.DataFrame(rows)
        print(policy.to_markdown(index=False, floatfmt=".3g"))
        versions = sorted((tmp / "policy" / "u0").glob("*.pt"))
        ckpt_bytes = sum(p.stat().st_size for p in versions)
        raw = sum(len(str(c.bands).split(",")) * c.size_px**2 * 2 for c in chips.itertuples())
        emb = int(policy["embedding_bytes"].sum())
        print(f"\n{len(versions)} model version(s), {ckpt_bytes:,} B; embeddings {emb:,} B; uint16 chips {raw:,} B: "
              f"{raw / emb:.0f}x without checkpoints, {raw / (emb + ckpt_bytes):.1f}x with them "
              f"(amortised {(emb + ckpt_bytes) / len(chips):,.0f} B per cell-date)")
    print(f"\n({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
