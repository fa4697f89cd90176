"""The per-business-and-customer limit on new consent requests holds under parallel
requests: real threads against a live vault, counters in Redis as in production with
several workers, on SQLite and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from itertools import combinations
from typing import Any

import pytest

from tests.vault.consents.test_vendor_api import _connect, _session, _shop
from tests.vault.oauth.conftest import Vault
from tests.vault.test_rate_limit_shared import redis_url  # noqa: F401  (a fixture)

LIMIT = 3


@pytest.fixture
def live_config_overrides(redis_url: str) -> dict[str, Any]:  # noqa: F811
    # No RATELIMIT_KEY_PREFIX: Flask-Limiter keeps the first prefix it is given for good
    # (one Limiter for every app of the test run). The counters' keys hold the vendor id,
    # new in each test, and are removed afterwards.
    return {
        "RATELIMIT_STORAGE_URI": redis_url,
        "VAULT_CONSENT_REQUEST_RATE_LIMIT": f"{LIMIT} per day",
    }


def test_parallel_new_requests_stop_exactly_at_the_limit(vault: Vault, redis_url: str) -> None:  # noqa: F811
    import redis

    shop = _shop(vault, "Acme", {"news": "marketing"})
    customer = vault.customer()
    sub = _connect(vault, customer.id, shop)
    session = _session(vault, shop, "consent:request")
    token = session.token["access_token"]
    # Twelve different requests (so none is a repeat of a pending one), sent at once.
    channel_sets = [list(c) for c in combinations(["email", "sms", "post", "push"], 2)] + [
        list(c) for c in combinations(["email", "sms", "post", "push", "phone"], 3)
    ][:6]
    assert len({tuple(c) for c in channel_sets}) == 12

    import requests

    def ask(channels: list[str]) -> int:
        response = requests.post(
            vault.base + "/api/v1/consent-requests",
            json={"sub": sub, "topics": ["news"], "channels": channels},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(ask, channel_sets))
    assert sorted(statuses) == [201] * LIMIT + [429] * (12 - LIMIT), statuses
    assert vault.sql("SELECT count(*) FROM consent_requests")[0][0] == LIMIT
    store = redis.Redis.from_url(redis_url)
    counters = list(store.scan_iter(f"*consent-request*{shop.client.vendor_id}*"))
    assert counters, "the counter is in Redis, where every worker reads it"
    store.delete(*counters)
