"""What a code, token, refresh, userinfo or id_token reveals is limited to the grant's scopes
as they are when it is used, not as they were when it was issued (issue 9, item 1).

The attack: the customer unticks scopes while an authorization code waits to be redeemed
(codes live 120 s); the code then redeemed for the old, wider scope, through three refreshes.
"""

from __future__ import annotations

import pytest

from tests.vault.oauth.conftest import query_of

PROFILE = {
    "given_name": "Ann",
    "family_name": "Lovelace",
    "phone_number": "+14155550123",
}


def _grant_id(vault, user_id):
    [(grant_id,)] = vault.sql("SELECT id FROM oauth_grants WHERE user_id = :u", u=user_id)
    return grant_id


def _narrow_on_connections(vault, browser, grant_id, keep):
    response = browser.post(
        f"{vault.base}/connections/{grant_id}/scopes",
        data={"csrf_token": vault.csrf(browser, "/connections"), "keep_scope": keep},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302


def _approve(vault, browser, auth, scopes=None):
    response = vault.decide(browser, vault.consent_page(browser, auth.url), scopes=scopes)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def test_a_code_waiting_while_the_customer_narrows_redeems_only_what_is_left(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    auth = vault.authorization(client)
    location = _approve(vault, browser, auth)  # everything ticked; the code is not redeemed yet
    _narrow_on_connections(vault, browser, _grant_id(vault, customer.id), keep=["email"])

    tokens = vault.exchange(auth, location)
    assert set(tokens["scope"].split()) == {"openid", "email"}
    read = vault.api(tokens["access_token"]).json()
    assert set(read) == {"sub", "email", "email_verified"}
    assert set(vault.api(tokens["access_token"], "/oauth/userinfo").json()) == {
        "sub",
        "email",
        "email_verified",
    }
    assert vault.introspect(client, tokens["access_token"])["scope"] == "openid email"
    for _ in range(3):
        refreshed = vault.refresh(auth)
        assert set(refreshed["scope"].split()) == {"openid", "email"}
        assert "phone_number" not in vault.api(refreshed["access_token"]).json()


def test_a_code_waiting_while_a_later_consent_screen_unticks_scopes_is_narrowed_too(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    first = vault.authorization(client)
    waiting = _approve(vault, browser, first)
    # The business asks again (prompt=consent); this time the customer unticks phone.
    second = vault.authorization(client, prompt="consent")
    _approve(vault, browser, second, scopes=["profile", "email"])

    tokens = vault.exchange(first, waiting)
    assert "phone" not in tokens["scope"].split()
    read = vault.api(tokens["access_token"]).json()
    assert "phone_number" not in read
    assert read["given_name"] == "Ann"


def test_a_token_issued_before_narrowing_cannot_refresh_back_to_the_old_scopes(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    _, tokens = vault.connect(client, browser)
    _narrow_on_connections(vault, browser, _grant_id(vault, customer.id), keep=["profile"])

    assert "phone_number" not in vault.api(tokens["access_token"]).json()
    # Asking for the dropped scope back by name is refused, not granted.
    widen = vault.token_request(
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "openid profile phone",
        },
        client,
    )
    assert widen.status_code == 400
    assert widen.json()["error"] == "invalid_scope"


@pytest.mark.parametrize("how", ["connections", "consent screen"])
def test_what_the_vendor_reads_matches_what_connections_shows(vault, how):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    auth = vault.authorization(client)
    location = _approve(vault, browser, auth)
    if how == "connections":
        _narrow_on_connections(vault, browser, _grant_id(vault, customer.id), keep=[])
    else:
        _approve(vault, browser, vault.authorization(client, prompt="consent"), scopes=[])

    [(grant_scope,)] = vault.sql("SELECT scope FROM oauth_grants WHERE user_id = :u", u=customer.id)
    assert grant_scope == "openid"
    assert query_of(location)["code"]
    tokens = vault.exchange(auth, location)
    assert tokens["scope"] == "openid"
    assert set(vault.api(tokens["access_token"]).json()) == {"sub"}
