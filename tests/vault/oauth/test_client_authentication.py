"""A request that authenticates the client twice (HTTP Basic and a secret in the body) is
refused at every endpoint that authenticates clients (RFC 6749 2.3; issue 9, item 5)."""

from __future__ import annotations

import pytest
import requests

from tests.vault.oauth.conftest import query_of


def test_token_request_with_basic_and_a_body_secret_is_refused_and_spends_nothing(vault):
    client = vault.vendor()
    browser = vault.browser(vault.customer(given_name="Ann"))
    auth = vault.authorization(client, "openid profile")
    location = vault.decide(browser, vault.consent_page(browser, auth.url)).headers["Location"]
    data = {
        "grant_type": "authorization_code",
        "code": query_of(location)["code"],
        "redirect_uri": client.redirect_uri,
        "code_verifier": auth.verifier,
    }
    both = requests.post(
        vault.meta["token_endpoint"],
        data={**data, "client_id": client.client_id, "client_secret": client.client_secret},
        auth=(client.client_id, client.client_secret),
        timeout=10,
    )
    assert both.status_code == 400
    assert both.headers["Content-Type"].startswith("application/json")
    assert both.json()["error"] == "invalid_request"
    assert "access_token" not in both.json()
    # Refused before the code was looked at: the honest retry with one method works.
    assert vault.token_request(data, client).status_code == 200


@pytest.mark.parametrize("endpoint", ["revocation_endpoint", "introspection_endpoint"])
def test_revocation_and_introspection_refuse_two_methods_too(vault, endpoint):
    client = vault.vendor()
    browser = vault.browser(vault.customer(given_name="Ann"))
    _, tokens = vault.connect(client, browser, "openid profile")
    both = requests.post(
        vault.meta[endpoint],
        data={"token": tokens["access_token"], "client_secret": client.client_secret},
        auth=(client.client_id, client.client_secret),
        timeout=10,
    )
    assert both.status_code == 400
    assert both.json()["error"] == "invalid_request"
    assert vault.api(tokens["access_token"]).status_code == 200  # nothing was revoked
