"""The Figure-5 benchmark stays runnable against the current training API (a tiny run on the default scene)."""

import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_transfer.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_transfer", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_to_target_takes_the_first_point_meeting_it(bench) -> None:
    points = [(0, 0.5, 0.0), (2, 0.2, 1.0), (4, 0.1, 2.0), (6, 0.05, 3.0)]
    assert bench.to_target(points, 0.11) == (4, 2.0, True)
    assert bench.to_target(points, 0.01) == (6, 3.0, False)


def test_tiny_run_on_the_default_scene(bench, tmp_path: Path, one_torch_thread) -> None:
    args = Namespace(size_px=64, max_cells=4, k=2, latent_dim=4, patch_size=16, base_channels=4, depth=2, batch_size=8,
                     max_epochs=4, step=2, seeds=[0], target_factor=1.1)  # fmt: skip
    results = bench.run_source("s2", args, tmp_path)
    assert set(results["arm"]) == {"scratch", "other-cluster", "same-cluster"}  # 3 land cells and 1 water cell
    assert results["epochs"].between(0, 4).all() and (results["seconds"] >= 0).all()
    scratch = results[results.arm == "scratch"]
    assert scratch["reached"].all()  # the target is 1.1x the best the scratch run itself reached
    assert results[results.arm != "scratch"]["donor"].notna().all()
    summary = bench.summarize(results)
    assert {"epochs", "epochs_median", "seconds", "reached"} <= set(summary.columns)
