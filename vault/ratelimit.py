"""Rate-limit counters kept in the process, without a timer thread (``vault-memory://``).

A storage backend of ``limits``, written against its public extension point: a subclass
of ``limits.storage.Storage`` whose ``STORAGE_SCHEME`` registers the URI scheme, so
Flask-Limiter builds it from ``RATELIMIT_STORAGE_URI`` like any other.

Why not ``limits``' own ``memory://``: it starts a ``threading.Timer`` 10 ms after a hit to
purge expired counters, so a busy worker starts a thread about every 10 ms and hands the
GIL back and forth with it (the API bench shows the cost: ``python -m bench --only api``).
These counters need no thread: a counter past its window reads as zero, and the ones
nobody reads again are swept inline, at most every ``SWEEP_SECONDS``.

Fixed windows only (Flask-Limiter's default strategy, the one the vault uses). Counters in
memory are per process: with several workers, each counts on its own. Use ``redis://``
(``VAULT_RATELIMIT_STORAGE_URI``) when the limits must hold across processes.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from limits.storage import Storage

SWEEP_SECONDS = 10.0


class InProcessStorage(Storage):
    """Fixed-window counters in a dict of this process: key -> (count, window end)."""

    STORAGE_SCHEME = ["vault-memory"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._counters: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()  # for threaded servers: one storage, many requests
        self._next_sweep = time.time() + SWEEP_SECONDS

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            count, ends = self._counters.get(key, (0, 0.0))
            if ends <= now:  # a new window starts with this hit
                count, ends = 0, now + expiry
            count += amount
            self._counters[key] = (count, ends)
            return count

    def get(self, key: str) -> int:
        count, ends = self._counters.get(key, (0, 0.0))
        return count if ends > time.time() else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        _, ends = self._counters.get(key, (0, 0.0))
        return ends if ends > now else now

    def check(self) -> bool:
        return True

    def reset(self) -> int:
        with self._lock:
            count = len(self._counters)
            self._counters.clear()
            return count

    def clear(self, key: str) -> None:
        with self._lock:
            self._counters.pop(key, None)

    def _sweep(self, now: float) -> None:
        """Drop the counters whose window has ended (called with the lock held)."""
        self._next_sweep = now + SWEEP_SECONDS
        for key in [key for key, (_, ends) in self._counters.items() if ends <= now]:
            del self._counters[key]
