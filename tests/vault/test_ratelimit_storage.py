"""vault-memory://, the default rate-limit storage: fixed-window counters in the process,
a ``limits`` storage backend without the timer thread ``memory://`` starts after every hit
(see vault.ratelimit)."""

from __future__ import annotations

import threading

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from tests.conftest import _app_config
from vault import create_app, ratelimit
from vault.extensions import limiter


def _timers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]


class _Clock:
    """Stands in for the ``time`` module inside ``vault.ratelimit``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_counting_starts_no_threads_and_still_limits():
    storage = storage_from_string("vault-memory://")
    assert isinstance(storage, ratelimit.InProcessStorage)
    before = len(_timers())
    strategy = FixedWindowRateLimiter(storage)
    item = parse("5 per minute")
    answers = [strategy.hit(item, "client-a") for _ in range(7)]
    assert answers == [True] * 5 + [False] * 2
    assert strategy.hit(item, "client-b")  # another key has its own count
    assert len(_timers()) == before


def test_a_window_ends_and_the_next_one_counts_from_zero(monkeypatch):
    clock = _Clock(1000.0)
    monkeypatch.setattr(ratelimit, "time", clock)
    strategy = FixedWindowRateLimiter(ratelimit.InProcessStorage())
    item = parse("2 per minute")
    assert [strategy.hit(item, "k") for _ in range(3)] == [True, True, False]
    stats = strategy.get_window_stats(item, "k")
    assert (stats.remaining, stats.reset_time) == (0, 1060.0)
    clock.now = 1059.0
    assert not strategy.hit(item, "k")  # still the same window
    clock.now = 1060.0
    assert strategy.get_window_stats(item, "k").remaining == 2
    assert [strategy.hit(item, "k") for _ in range(3)] == [True, True, False]
    assert strategy.get_window_stats(item, "k").reset_time == 1120.0


def test_expired_counters_are_swept_inline(monkeypatch):
    clock = _Clock(1000.0)
    monkeypatch.setattr(ratelimit, "time", clock)
    storage = ratelimit.InProcessStorage()
    storage.incr("gone-soon", expiry=1)
    clock.now += 2  # expired, but nobody reads that key again
    storage.incr("other", expiry=60)
    assert "gone-soon" in storage._counters  # no sweep before SWEEP_SECONDS have passed
    clock.now += ratelimit.SWEEP_SECONDS
    storage.incr("other", expiry=60)
    assert "gone-soon" not in storage._counters
    assert storage.get("other") == 2


def test_clear_and_reset(monkeypatch):
    storage = ratelimit.InProcessStorage()
    storage.incr("a", expiry=60)
    storage.incr("b", expiry=60)
    storage.clear("a")
    assert (storage.get("a"), storage.get("b")) == (0, 1)
    assert storage.reset() == 1
    assert storage.get("b") == 0


def test_the_app_uses_it_by_default(sqlite_database, keyring_text):
    config = _app_config(sqlite_database, keyring_text)
    config.pop("RATELIMIT_STORAGE_URI")
    app = create_app(config)
    assert app.config["RATELIMIT_STORAGE_URI"] == "vault-memory://"
    with app.app_context():
        assert isinstance(limiter.storage, ratelimit.InProcessStorage)
