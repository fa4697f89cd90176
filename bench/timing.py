"""A small timing loop: run an operation for a fixed time and report its rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    operations: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds

    @property
    def seconds_each(self) -> float:
        return self.seconds / self.operations


def run_for(seconds: float, operation: Callable[[], object], *, min_operations: int = 3) -> Rate:
    """Call ``operation`` repeatedly for ``seconds`` (after one warm-up call), at least
    ``min_operations`` times, and return how many calls finished in how long."""
    operation()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        operation()
        count += 1
        now = time.perf_counter()
        if now >= deadline and count >= min_operations:
            return Rate(count, now - start)
