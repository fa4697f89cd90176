"""vault-memory://, the default rate-limit storage: limits' memory counters without the
timer thread limits starts after every hit (see vault.ratelimit)."""

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


def test_counting_starts_no_threads_and_still_limits():
    storage = storage_from_string("vault-memory://")
    assert isinstance(storage, ratelimit.SweptMemoryStorage)
    before = len(_timers())
    strategy = FixedWindowRateLimiter(storage)
    item = parse("5 per minute")
    answers = [strategy.hit(item, "client-a") for _ in range(7)]
    assert answers == [True] * 5 + [False] * 2
    assert strategy.hit(item, "client-b")  # another key has its own count
    assert len(_timers()) == before


def test_expired_counters_are_swept_inline(monkeypatch):
    storage = ratelimit.SweptMemoryStorage()
    clock = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr("limits.storage.memory.time.time", lambda: clock[0])
    storage._next_sweep = clock[0] + ratelimit.SWEEP_SECONDS
    storage.incr("gone-soon", expiry=1)
    assert "gone-soon" in storage.storage
    clock[0] += 2  # expired, but nobody reads that key again
    storage.incr("other", expiry=60)
    assert "gone-soon" in storage.storage  # no sweep before SWEEP_SECONDS have passed
    clock[0] += ratelimit.SWEEP_SECONDS
    storage.incr("other", expiry=60)
    assert "gone-soon" not in storage.storage
    assert storage.get("other") == 2


def test_the_app_uses_it_by_default(sqlite_database, keyring_text):
    config = _app_config(sqlite_database, keyring_text)
    config.pop("RATELIMIT_STORAGE_URI")
    app = create_app(config)
    assert app.config["RATELIMIT_STORAGE_URI"] == "vault-memory://"
    with app.app_context():
        assert isinstance(limiter.storage, ratelimit.SweptMemoryStorage)
