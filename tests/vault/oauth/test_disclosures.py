"""Every disclosure is recorded, and nothing comes from a revoked grant (issue 9, item 3).

id_tokens are minimal (sub, auth_time, nonce and the JWT's own claims): profile claims
leave only through userinfo and the API, each read on the access log and on /activity. The
sign-in itself (the pseudonymous id in the id_token) is recorded too, silent re-authorisations
included.
"""

from __future__ import annotations

import json

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.vault.oauth.conftest import query_of

PROFILE = {
    "given_name": "Ann",
    "family_name": "Lovelace",
    "phone_number": "+14155550123",
    "address": {"street_address": "1 Main St", "locality": "Springfield", "country": "US"},
}
ID_TOKEN_CLAIMS = {"iss", "aud", "iat", "exp", "sub", "nonce", "auth_time", "at_hash"}


def _claims(vault, id_token):
    jwks = KeySet.import_key_set(requests.get(vault.meta["jwks_uri"], timeout=10).json())
    return jwt.decode(id_token, jwks, algorithms=["ES256"]).claims


def _events(vault, user_id):
    rows = vault.sql(
        "SELECT endpoint, claims FROM access_events WHERE user_id = :u ORDER BY id", u=user_id
    )
    # JSON comes back as text from SQLite, decoded from PostgreSQL.
    return [(e, json.loads(c) if isinstance(c, str) else c) for e, c in rows]


def test_id_tokens_carry_no_profile_claims_also_on_silent_re_authorisation(vault):
    client = vault.vendor(scopes=("openid", "profile", "email", "phone", "address"))
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    scope = "openid profile email phone address"
    _, first = vault.connect(client, browser, scope)
    # The grant covers the request now, so the next sign-in passes without a screen.
    auth = vault.authorization(client, scope)
    silent = vault.consent_page(browser, auth.url)
    assert silent.status_code == 302 and "code=" in silent.headers["Location"]
    second = vault.exchange(auth, silent.headers["Location"])

    for tokens in (first, second):
        claims = _claims(vault, tokens["id_token"])
        assert set(claims) <= ID_TOKEN_CLAIMS
        for leaked in ("email", "phone_number", "address", "given_name", "name"):
            assert leaked not in claims
        assert PROFILE["phone_number"] not in tokens["id_token"]
    # Both sign-ins are on the access log and on /activity.
    assert [e for e in _events(vault, customer.id) if e[0] == "id_token"] == [
        ("id_token", []),
        ("id_token", []),
    ]
    activity = browser.get(vault.base + "/activity", timeout=10).text
    assert activity.count("<code>id_token</code>") == 2


def test_every_claim_read_through_userinfo_and_the_api_is_on_the_access_log(vault):
    client = vault.vendor(scopes=("openid", "profile", "email", "phone", "address"))
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    _, tokens = vault.connect(client, browser, "openid phone address")
    userinfo = vault.api(tokens["access_token"], "/oauth/userinfo").json()
    api = vault.api(tokens["access_token"]).json()
    recorded = {endpoint: set(claims) for endpoint, claims in _events(vault, customer.id)}
    # Every field read, without the flag that qualifies one (phone_number_verified).
    flags = {"sub", "phone_number_verified"}
    assert userinfo["phone_number_verified"] is False and api["phone_number_verified"] is False
    assert recorded["userinfo"] == set(userinfo) - flags == {"phone_number", "address"}
    assert recorded["GET /api/v1/profile"] == set(api) - flags


def test_a_code_issued_just_before_a_revoke_yields_nothing(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    auth = vault.authorization(client)
    page = vault.consent_page(browser, auth.url)
    location = vault.decide(browser, page).headers["Location"]
    [(grant_id,)] = vault.sql("SELECT id FROM oauth_grants WHERE user_id = :u", u=customer.id)
    revoked = browser.post(
        f"{vault.base}/connections/{grant_id}/revoke",
        data={"csrf_token": vault.csrf(browser, "/connections")},
        allow_redirects=False,
        timeout=10,
    )
    assert revoked.status_code == 302

    answer = vault.token_request(
        {
            "grant_type": "authorization_code",
            "code": query_of(location)["code"],
            "redirect_uri": client.redirect_uri,
            "code_verifier": auth.verifier,
        },
        client,
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert "id_token" not in answer.json() and "access_token" not in answer.json()
    assert _events(vault, customer.id) == []


def test_userinfo_of_a_revoked_grant_answers_nothing(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    _, tokens = vault.connect(client, browser)
    [(grant_id,)] = vault.sql("SELECT id FROM oauth_grants WHERE user_id = :u", u=customer.id)
    browser.post(
        f"{vault.base}/connections/{grant_id}/revoke",
        data={"csrf_token": vault.csrf(browser, "/connections")},
        timeout=10,
    )
    refused = vault.api(tokens["access_token"], "/oauth/userinfo")
    assert refused.status_code == 401
    assert "phone_number" not in refused.text
