"""Cost of a training run: wall and CPU time and peak memory (process RSS above its level at the start, sampled by a
thread; Python-heap peak from tracemalloc; CUDA max allocated when on a GPU)."""

from __future__ import annotations

import os
import resource
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the peak so far from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(frozen=True)
class Cost:
    seconds: float  # wall clock
    cpu_seconds: float  # CPU time of this process (threads summed): robust to a machine shared with other work
    peak_rss_mb: float  # peak resident set above the level when the run started (torch CPU tensors included)
    peak_python_mb: float  # tracemalloc peak (numpy and Python objects; torch's allocator is not traced)
    peak_cuda_mb: float | None  # torch.cuda.max_memory_allocated when the run used CUDA

    def to_dict(self) -> dict[str, float | None]:
        return {"seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "peak_rss_mb": self.peak_rss_mb, "peak_python_mb": self.peak_python_mb,
                "peak_cuda_mb": self.peak_cuda_mb}  # fmt: skip


def measured(fn: Callable[[], T], device: str = "cpu", interval_s: float = 0.005) -> tuple[T, Cost]:
    """Run fn() and return its result with its cost."""
    base = rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            stop.wait(interval_s)

    cuda = device.startswith("cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    sampler = threading.Thread(target=sample, daemon=True)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    sampler.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        result = fn()
        if cuda:
            torch.cuda.synchronize()
    finally:
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        stop.set()
        sampler.join()
        _, py_peak = tracemalloc.get_traced_memory()
        if not tracing:
            tracemalloc.stop()
    peak[0] = max(peak[0], rss_bytes())
    cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return result, Cost(seconds, cpu_seconds, (peak[0] - base) / 2**20, py_peak / 2**20, cuda_mb)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS of this process (Linux: "5" to /proc/self/clear_refs); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int | None:
    """VmHWM (peak resident set since the last reset) from /proc/self/status."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _warm_up(device: str) -> None:
    """One tiny training step of the layers the models use, so lazy imports and first-call set-up (autograd,
    Adam's first step, kernels) are not charged to the measured run."""
    import torch.nn.functional as F

    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.LeakyReLU(0.2),
        torch.nn.ConvTranspose2d(4, 2, 4, 2, 1), torch.nn.PixelUnshuffle(2), torch.nn.Flatten(), torch.nn.Linear(8 * 16, 1),
    ).to(device)  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters())
    x = torch.randn(2, 2, 4, 4, device=device)
    loss = F.binary_cross_entropy_with_logits(net(torch.sigmoid(x) * torch.tanh(x)).squeeze(1), torch.ones(2, device=device))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    optimizer.step()


def _isolated_call(fn: Callable[..., T], args: tuple, kwargs: dict, device: str) -> tuple[T, Cost]:
    """Child side of `measured_isolated`: the fit's cost, its RSS peak from the kernel (VmHWM reset before the fit)."""
    torch.set_num_threads(int(os.environ.get("GEOEMBED_BENCH_THREADS", "1")))
    _warm_up(device)
    reset = _reset_peak_rss()
    base = rss_bytes()
    result, cost = measured(lambda: fn(*args, **kwargs), device)
    kernel_peak = _peak_rss_bytes() if reset else None
    peak_mb = max(cost.peak_rss_mb, (kernel_peak - base) / 2**20) if kernel_peak else cost.peak_rss_mb
    return result, Cost(cost.seconds, cost.cpu_seconds, peak_mb, cost.peak_python_mb, cost.peak_cuda_mb)


def measured_isolated(fn: Callable[..., T], *args, device: str = "cpu", **kwargs) -> tuple[T, Cost]:
    """fn(*args, **kwargs) in a fresh spawned process, so that no memory freed by an earlier run (kept by the
    allocator) hides this run's peak; fn and its arguments must pickle. Start-up is not counted."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_isolated_call, fn, args, kwargs, device).result()
