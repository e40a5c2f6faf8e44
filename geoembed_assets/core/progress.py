"""Progress of a long step (cells done of total, rate, time left) as one-line messages to any logger.

Plain module, no Dagster: the assets pass `context.log.info`, the command line a `logging` logger's `info`, tests
a list's `append`. Lines are throttled (at most one per `every_s` seconds, plus the first and the last), so a step
over thousands of cells writes a handful of lines, not one per cell:

    training 3/12 cells (25%), 0.41 cells/s, about 22 s left
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _duration(seconds: float) -> str:
    """'42 s', '3 min 5 s', '1 h 02 min': short enough for a log line."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class Progress:
    """Counts units of work done out of `total` and reports them through `log` (a `str -> None` callable)."""

    def __init__(
        self,
        step: str,
        total: int,
        log: Callable[[str], object],
        unit: str = "cells",
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.step, self.total, self.unit, self.every_s = step, int(total), unit, every_s
        self._log, self._clock = log, clock
        self.done = 0
        self.started = clock()
        self._last_report: float | None = None

    def line(self) -> str:
        """The progress line for the current count."""
        elapsed = self._clock() - self.started
        text = f"{self.step} {self.done}/{self.total} {self.unit}"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            text += f", {rate:.3g} {self.unit}/s" if rate >= 0.1 else f", {elapsed / self.done:.3g} s per {self.unit[:-1] or self.unit}"
            if self.done < self.total:
                text += f", about {_duration((self.total - self.done) / rate)} left"
            else:
                text += f", done in {_duration(elapsed)}"
        return text

    def advance(self, n: int = 1, detail: str | None = None) -> None:
        """Record `n` more units done; report when the throttle allows it, and always on the last one."""
        self.done += n
        now = self._clock()
        last = self.done >= self.total
        if last or self._last_report is None or now - self._last_report >= self.every_s:
            self._last_report = now
            self._log(self.line() + (f" ({detail})" if detail else ""))

    def start(self) -> None:
        """Announce the step (so a slow first unit is not silence)."""
        self._last_report = self._clock()
        self._log(f"{self.step}: {self.total} {self.unit} to do")


def track(
    items: Iterable[T], step: str, log: Callable[[str], object] | None, total: int | None = None, unit: str = "cells",
    every_s: float = 10.0,
) -> Iterator[T]:
    """Yield `items` and report progress after each one: `for cell in track(cells, "training", log): ...`.

    With `log=None` it only yields the items (callers that want no progress lines pay nothing)."""
    if log is None:
        yield from items
        return
    items = list(items) if total is None else items
    progress = Progress(step, len(items) if total is None else total, log, unit=unit, every_s=every_s)  # type: ignore[arg-type]
    progress.start()
    for item in items:
        yield item
        progress.advance()
