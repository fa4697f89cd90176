"""With Redis as rate-limit storage, the login counts live in Redis, so every app process
behind a load balancer sees the same limit."""

from __future__ import annotations

import os
import secrets

import pytest

from tests import factories
from tests.conftest import _app_config, unavailable
from vault import create_app

REDIS_URL = os.environ.get("VAULT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError as exc:
        unavailable(
            f"Redis tests skipped: no Redis at {REDIS_URL} ({exc}); set VAULT_TEST_REDIS_URL"
        )
    return REDIS_URL


def test_login_limit_is_shared_by_two_app_instances(sqlite_database, keyring_text, redis_url):
    prefix = f"vault-test-{secrets.token_hex(4)}"
    config = _app_config(
        sqlite_database,
        keyring_text,
        RATELIMIT_STORAGE_URI=redis_url,
        RATELIMIT_KEY_PREFIX=prefix,
        VAULT_LOGIN_RATE_LIMIT="3 per minute",
    )
    first, second = create_app(config), create_app(config)  # two "processes", one Redis
    person = factories.customer(first)
    wrong = {"email": person.email, "password": "wrong password, long enough"}
    for app in (first, second, first):
        assert factories.post_form(app.test_client(), "/login", wrong).status_code == 401
    right = {"email": person.email, "password": person.password}
    assert factories.post_form(second.test_client(), "/login", right).status_code == 429
    # The counter is in Redis (not in this process's memory), where other processes read it.
    import redis

    store = redis.Redis.from_url(redis_url)
    keys = list(store.scan_iter(f"*{prefix}*"))
    assert keys, "no rate-limit counter was written to Redis"
    assert max(int(store.get(key) or 0) for key in keys) >= 3
    store.delete(*keys)
