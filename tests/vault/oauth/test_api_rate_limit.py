"""The vendor API's per-client rate limit (vault.api.limits), over HTTP against a live
vault: counted per client, only for accepted tokens, answered with 429 problem+json and
Retry-After, and shared by the profile and consent endpoints of one client."""

from __future__ import annotations

from typing import Any

import pytest

from tests.vault.oauth.conftest import Vault

LIMIT = 3


@pytest.fixture
def live_config_overrides() -> dict[str, Any]:
    return {"VAULT_API_RATE_LIMIT": f"{LIMIT} per minute"}


def test_each_client_gets_its_own_budget_and_then_a_429_problem(vault: Vault):
    customer = vault.customer()
    browser = vault.browser(customer)
    first = vault.vendor("First Ltd")
    second = vault.vendor("Second Ltd")
    _, first_tokens = vault.connect(first, browser)
    _, second_tokens = vault.connect(second, browser)

    remaining = []
    for _ in range(LIMIT):
        response = vault.api(first_tokens["access_token"])
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == str(LIMIT)
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [LIMIT - 1, LIMIT - 2, 0]

    limited = vault.api(first_tokens["access_token"])
    assert limited.status_code == 429
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert limited.json()["type"].endswith("/rate-limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Nothing was read, so nothing was logged beyond the three answered reads.
    assert vault.sql(
        "SELECT count(*) FROM access_events WHERE client_id = :c AND endpoint != 'id_token'",
        c=first.client_id,
    ) == [(LIMIT,)]

    # Another business is not held back by the first one's traffic.
    assert vault.api(second_tokens["access_token"]).status_code == 200


def test_refused_tokens_do_not_spend_anyones_budget(vault: Vault):
    customer = vault.customer()
    client = vault.vendor("Shop Ltd")
    _, tokens = vault.connect(client, vault.browser(customer))
    for _ in range(LIMIT + 2):
        assert vault.api("not-a-token").status_code == 401
    for _ in range(LIMIT):
        assert vault.api(tokens["access_token"]).status_code == 200
    assert vault.api(tokens["access_token"]).status_code == 429


def test_the_consent_api_counts_against_the_same_budget(vault: Vault):
    from authlib.integrations.requests_client import OAuth2Session

    client = vault.vendor("Mailer Ltd", scopes=("openid", "consent:read"))
    session = OAuth2Session(
        client.client_id,
        client.client_secret,
        scope="consent:read",
        token_endpoint_auth_method="client_secret_basic",
    )
    session.fetch_token(vault.meta["token_endpoint"], grant_type="client_credentials")
    answers = [
        session.get(vault.base + "/api/v1/consents/unknown-subject").status_code
        for _ in range(LIMIT + 1)
    ]
    assert answers == [404] * LIMIT + [429]
    # The profile endpoint of the same client is over budget too (and says so before it
    # says the client-credentials token has no customer behind it).
    assert session.get(vault.base + "/api/v1/profile").status_code == 429
