"""Concurrent replays (issue 9, item 2): one authorization code or one refresh token sent by
several requests at the same moment, against a live threaded server, on SQLite and on
PostgreSQL. Exactly one request may win; every other one is a replay, and what was issued
is revoked, so no second working token set (or chain) survives.

Before the fix, the code check and the "used" mark were separate statements: two requests
both passed the check and two live token sets came out (6 of 8 trials under gunicorn).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from tests.vault.oauth.conftest import query_of

TRIALS = 4
RACERS = 4


def _race(send: Any, count: int = RACERS) -> list[requests.Response]:
    """Send ``count`` requests that leave their threads at the same instant."""
    start = threading.Barrier(count)
    results: list[requests.Response | BaseException] = [None] * count  # type: ignore[list-item]

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = send()
        except BaseException as exc:  # reported below, in the test's thread
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def _live(vault, client, tokens: list[dict[str, Any]]) -> list[str]:
    """Access tokens among ``tokens`` that still read the profile."""
    return [t["access_token"] for t in tokens if vault.api(t["access_token"]).status_code == 200]


@pytest.mark.parametrize("public", [False, True], ids=["confidential", "public"])
def test_one_code_redeemed_at_once_by_several_requests_yields_no_second_token_set(vault, public):
    client = vault.vendor(public=public)
    browser = vault.browser(vault.customer(given_name="Ann"))
    for _ in range(TRIALS):
        auth = vault.authorization(client, "openid profile", prompt="consent")
        page = vault.consent_page(browser, auth.url)
        location = vault.decide(browser, page).headers["Location"]
        data = {
            "grant_type": "authorization_code",
            "code": query_of(location)["code"],
            "redirect_uri": client.redirect_uri,
            "code_verifier": auth.verifier,
        }
        if public:
            data["client_id"] = client.client_id

        answers = _race(lambda data=data: vault.token_request(data, client))

        won = [a.json() for a in answers if a.status_code == 200]
        lost = [a for a in answers if a.status_code != 200]
        assert len(won) <= 1, "two requests redeemed one code"
        assert all(a.status_code == 400 and a.json()["error"] == "invalid_grant" for a in lost)
        # Every loser is a replay, and a replay kills what the code gave out.
        assert _live(vault, client, won) == []
        for tokens in won:
            again = vault.token_request(
                {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
                | ({"client_id": client.client_id} if public else {}),
                client,
            )
            assert again.status_code == 400


@pytest.mark.parametrize("public", [False, True], ids=["confidential", "public"])
def test_one_refresh_token_used_at_once_never_forks_into_two_chains(vault, public):
    client = vault.vendor(public=public)
    customer = vault.customer(given_name="Ann")
    browser = vault.browser(customer)
    for _ in range(TRIALS):
        _, tokens = vault.connect(client, browser, "openid profile")
        data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        if public:
            data["client_id"] = client.client_id

        answers = _race(lambda data=data: vault.token_request(data, client))

        won = [a.json() for a in answers if a.status_code == 200]
        assert len(won) <= 1, "one refresh token forked into two chains"
        # Whoever lost was a replay: the grant ended, and with it every token it issued.
        assert _live(vault, client, [tokens, *won]) == []
        for fresh in won:
            onward = vault.token_request(
                {"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]}
                | ({"client_id": client.client_id} if public else {}),
                client,
            )
            assert onward.status_code == 400
        reasons = vault.sql(
            "SELECT revoked_reason FROM oauth_grants WHERE user_id = :u AND revoked_at IS NOT NULL",
            u=customer.id,
        )
        assert ("refresh_token_replay",) in reasons


def test_a_single_refresh_still_rotates_and_works(vault):
    """The atomic claim must not refuse the honest, lone request."""
    client = vault.vendor()
    browser = vault.browser(vault.customer(given_name="Ann"))
    auth, tokens = vault.connect(client, browser, "openid profile")
    for _ in range(3):
        fresh = vault.refresh(auth)
        assert fresh["refresh_token"] != tokens["refresh_token"]
        assert vault.api(fresh["access_token"]).status_code == 200
        assert vault.api(tokens["access_token"]).status_code == 401
        tokens = fresh
