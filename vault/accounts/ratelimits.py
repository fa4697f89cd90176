"""Limits counted on a key of our choosing (an address's blind index, an account), with the
counters Flask-Limiter built from ``RATELIMIT_*`` (Redis included), called directly like
``vault.api.limits``: a decorator only knows the request, not the address in the form."""

from __future__ import annotations

from functools import lru_cache

from limits import RateLimitItem, parse_many

from vault.extensions import limiter


@lru_cache(maxsize=16)
def _items(text: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(text))


def allow(limit: str, namespace: str, key: str) -> bool:
    """Count one event for ``key`` unless that would exceed ``limit``; False if it would."""
    strategy = limiter.limiter
    items = _items(limit)
    if not all(strategy.test(item, namespace, key) for item in items):
        return False
    return all([strategy.hit(item, namespace, key) for item in items])
