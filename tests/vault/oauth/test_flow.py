"""The vendor's happy path, end to end over HTTP: Authlib's OAuth 2.0 client against the
live vault, the customer clicking through the consent screen in a ``requests`` session."""

from __future__ import annotations

import re
import time
from urllib.parse import urljoin

import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.vault.oauth.conftest import query_of

PROFILE = {
    "given_name": "Ann",
    "family_name": "Lovelace",
    "phone_number": "+14155550123",
}


def _grant_ids(vault, user_id: str) -> list[str]:
    rows = vault.sql(
        "SELECT id FROM oauth_grants WHERE user_id = :u ORDER BY created_at", u=user_id
    )
    return [row[0] for row in rows]


def test_code_flow_with_pkce_gives_exactly_the_approved_claims(vault):
    client = vault.vendor("Acme")
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)

    auth = vault.authorization(client, "openid profile email phone")
    query = query_of(auth.url)
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"]
    page = vault.consent_page(browser, auth.url)
    assert page.status_code == 200
    assert "Acme" in page.text
    assert "+14155550123" in page.text  # the customer sees what would be shared

    # The customer unticks the phone number.
    response = vault.decide(browser, page, scopes=["profile", "email"], duration="1y")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(client.redirect_uri + "?")
    assert query_of(location)["state"] == auth.state

    tokens = vault.exchange(auth, location)
    assert tokens["token_type"].lower() == "bearer"
    assert set(tokens["scope"].split()) == {"openid", "profile", "email"}
    assert tokens["refresh_token"] and tokens["id_token"]

    claims = auth.oauth.get(vault.base + "/api/v1/profile")
    assert claims.status_code == 200
    assert claims.headers["Cache-Control"] == "no-store"
    body = claims.json()
    assert set(body) == {"sub", "name", "given_name", "family_name", "email", "email_verified"}
    assert body["given_name"] == "Ann"
    assert body["name"] == "Ann Lovelace"
    assert body["email"] == customer.email
    assert "phone_number" not in body

    userinfo = auth.oauth.get(vault.meta["userinfo_endpoint"])
    assert userinfo.status_code == 200
    assert userinfo.json() == body
    assert userinfo.headers["Cache-Control"] == "no-store"

    # The id_token verifies against the served JWKS, for this client and this request.
    jwks = KeySet.import_key_set(requests.get(vault.meta["jwks_uri"], timeout=10).json())
    id_token = jwt.decode(tokens["id_token"], jwks, algorithms=["ES256"])
    assert id_token.header["alg"] == "ES256"
    assert id_token.header["kid"] in {key.kid for key in jwks.keys}
    jwt.JWTClaimsRegistry(
        now=int(time.time()),
        iss={"essential": True, "value": vault.base},
        aud={"essential": True, "value": client.client_id},
        nonce={"essential": True, "value": auth.nonce},
        sub={"essential": True, "value": body["sub"]},
        exp={"essential": True},
        iat={"essential": True},
    ).validate(id_token.claims)
    # Minimal id_token: who signed in, never profile claims (those go through userinfo).
    assert set(id_token.claims) <= {
        "iss",
        "aud",
        "iat",
        "exp",
        "sub",
        "nonce",
        "auth_time",
        "at_hash",
    }
    assert "email" not in id_token.claims and "name" not in id_token.claims

    # A JWKS that lacks the vault's key does not verify it: the check above means something.
    other = KeySet.generate_key_set("EC", "P-256", count=1)
    with pytest.raises(Exception):  # noqa: B017 - joserfc raises its own error types
        jwt.decode(tokens["id_token"], other, algorithms=["ES256"])


def test_a_logged_out_customer_logs_in_and_comes_back_to_the_consent_screen(vault):
    client = vault.vendor("Acme")
    customer = vault.customer(**PROFILE)
    auth = vault.authorization(client, "openid email")
    browser = requests.Session()
    to_login = browser.get(auth.url, allow_redirects=False, timeout=10)
    assert to_login.status_code == 302
    login_path = to_login.headers["Location"]
    assert login_path.startswith("/login?next=")
    page = browser.get(vault.base + login_path, timeout=10)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    back = browser.post(
        vault.base + login_path,
        data={"csrf_token": token, "email": customer.email, "password": customer.password},
        allow_redirects=False,
        timeout=10,
    )
    assert back.status_code == 302
    consent = browser.get(urljoin(vault.base, back.headers["Location"]), allow_redirects=False)
    assert consent.status_code == 200
    assert "Acme asks to see parts of your profile" in consent.text
    response = vault.decide(browser, consent)
    tokens = vault.exchange(auth, response.headers["Location"])
    assert vault.api(tokens["access_token"]).json()["email"] == customer.email


def test_refresh_rotates_the_refresh_token_and_keeps_working(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    auth, tokens = vault.connect(client, vault.browser(customer), approve=["profile"])

    refreshed = vault.refresh(auth)
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    assert refreshed["access_token"] != tokens["access_token"]
    assert set(refreshed["scope"].split()) == {"openid", "profile"}
    fresh = vault.api(refreshed["access_token"])
    assert fresh.status_code == 200
    assert set(fresh.json()) == {"sub", "name", "given_name", "family_name"}

    # The spent refresh token is refused.
    replay = vault.token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, client
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"


def test_revoking_in_connections_kills_every_token_at_once(vault):
    client = vault.vendor("Acme")
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    auth, tokens = vault.connect(client, browser)
    assert vault.api(tokens["access_token"]).status_code == 200
    assert vault.introspect(client, tokens["access_token"])["active"] is True
    [grant_id] = _grant_ids(vault, customer.id)

    connections = browser.get(vault.base + "/connections", timeout=10)
    assert f"/connections/{grant_id}/revoke" in connections.text
    revoked = browser.post(
        f"{vault.base}/connections/{grant_id}/revoke",
        data={"csrf_token": vault.csrf(browser, "/connections")},
        allow_redirects=False,
        timeout=10,
    )
    assert revoked.status_code == 302

    after = vault.api(tokens["access_token"])
    assert after.status_code == 401
    assert after.headers["Content-Type"].startswith("application/problem+json")
    assert after.json()["error"] == "invalid_token"
    assert after.json()["status"] == 401
    challenge = after.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer") and 'error="invalid_token"' in challenge

    assert vault.introspect(client, tokens["access_token"]) == {"active": False}
    assert vault.introspect(client, tokens["refresh_token"]) == {"active": False}
    with pytest.raises(OAuthError) as refused:
        vault.refresh(auth)
    assert refused.value.error == "invalid_grant"
    assert vault.api(tokens["access_token"], "/oauth/userinfo").status_code == 401


def test_vendor_revokes_its_own_refresh_token_rfc7009(vault):
    client = vault.vendor()
    auth, tokens = vault.connect(client, vault.browser(vault.customer(**PROFILE)))
    response = auth.oauth.revoke_token(
        vault.meta["revocation_endpoint"],
        tokens["refresh_token"],
        token_type_hint="refresh_token",
    )
    assert response.status_code == 200
    assert vault.api(tokens["access_token"]).status_code == 401
    assert vault.introspect(client, tokens["refresh_token"]) == {"active": False}
    with pytest.raises(OAuthError):
        vault.refresh(auth)


def test_revocation_without_csrf_token_revokes_nothing(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    _, tokens = vault.connect(client, browser)
    [grant_id] = _grant_ids(vault, customer.id)
    response = browser.post(
        f"{vault.base}/connections/{grant_id}/revoke", allow_redirects=False, timeout=10
    )
    assert response.status_code == 400
    assert vault.api(tokens["access_token"]).status_code == 200


def test_narrowing_a_grant_removes_claims_from_the_next_response(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    auth, tokens = vault.connect(client, browser)
    before = vault.api(tokens["access_token"]).json()
    assert {"email", "phone_number", "given_name"} <= set(before)
    [grant_id] = _grant_ids(vault, customer.id)

    response = browser.post(
        f"{vault.base}/connections/{grant_id}/scopes",
        data={"csrf_token": vault.csrf(browser, "/connections"), "keep_scope": ["email"]},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302

    after = vault.api(tokens["access_token"])
    assert after.status_code == 200
    assert set(after.json()) == {"sub", "email", "email_verified"}
    assert after.json()["sub"] == before["sub"]
    # A refresh cannot win the dropped scopes back.
    refreshed = vault.refresh(auth)
    assert set(refreshed["scope"].split()) == {"openid", "email"}
    assert set(vault.api(refreshed["access_token"]).json()) == {"sub", "email", "email_verified"}
    widen = vault.token_request(
        {
            "grant_type": "refresh_token",
            "refresh_token": refreshed["refresh_token"],
            "scope": "openid email phone",
        },
        client,
    )
    assert widen.status_code == 400
    assert widen.json()["error"] == "invalid_scope"


def test_every_api_read_is_shown_at_activity(vault):
    client = vault.vendor("Reader & Sons")
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    assert "No business has read your data yet." in browser.get(vault.base + "/activity").text
    _, tokens = vault.connect(client, browser, approve=["email"])
    assert vault.api(tokens["access_token"]).status_code == 200
    assert vault.api(tokens["access_token"], "/oauth/userinfo").status_code == 200

    rows = vault.sql(
        "SELECT endpoint, claims, vendor_id FROM access_events WHERE user_id = :u", u=customer.id
    )
    # The sign-in (id_token: the pseudonymous id only) is a disclosure as well.
    assert sorted(row[0] for row in rows) == ["GET /api/v1/profile", "id_token", "userinfo"]
    assert {row[2] for row in rows} == {client.vendor_id}

    activity = browser.get(vault.base + "/activity", timeout=10).text
    assert "Reader &amp; Sons" in activity
    assert "<code>GET /api/v1/profile</code>" in activity
    assert "<code>userinfo</code>" in activity
    assert "<code>id_token</code>" in activity
    assert "<td>email</td>" in activity
    assert "Reader &amp; Sons</strong>: 3 reads" in activity


def test_every_api_read_is_in_the_data_export(vault):
    client = vault.vendor("Reader")
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    _, tokens = vault.connect(client, browser, approve=["email"])
    for _ in range(2):
        assert vault.api(tokens["access_token"]).status_code == 200

    export = browser.get(vault.base + "/my-data/export.json", timeout=10)
    assert export.status_code == 200
    document = export.json()
    reads = [e for e in document["access_log"] if e["endpoint"] == "GET /api/v1/profile"]
    assert len(reads) == 2
    [grant] = document["grants"]
    for read in reads:
        assert read["business"] == "Reader"
        assert read["claims"] == ["email"]
        assert read["grant_id"] == grant["id"]
    assert grant["scopes"] == ["openid", "email"]
    assert grant["last_access_at"] is not None


def test_pairwise_sub_differs_between_vendors_and_is_stable_per_vendor(vault):
    acme = vault.vendor("Acme")
    globex = vault.vendor("Globex")
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)

    _, first = vault.connect(acme, browser, "openid email")
    _, other = vault.connect(globex, browser, "openid email")
    acme_sub = vault.api(first["access_token"]).json()["sub"]
    globex_sub = vault.api(other["access_token"]).json()["sub"]
    assert acme_sub != globex_sub
    assert customer.id not in (acme_sub, globex_sub)

    # A second, separate grant to the same vendor: revoke the first, connect again.
    [grant_id, _] = _grant_ids(vault, customer.id)
    browser.post(
        f"{vault.base}/connections/{grant_id}/revoke",
        data={"csrf_token": vault.csrf(browser, "/connections")},
        timeout=10,
    )
    assert vault.api(first["access_token"]).status_code == 401
    _, again = vault.connect(acme, browser, "openid email")
    assert len(_grant_ids(vault, customer.id)) == 3
    assert vault.api(again["access_token"]).json()["sub"] == acme_sub
    assert vault.introspect(acme, again["access_token"])["sub"] == acme_sub


def test_deny_redirects_with_access_denied_and_creates_no_grant(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    auth = vault.authorization(client)
    page = vault.consent_page(browser, auth.url)
    response = vault.decide(browser, page, decision="deny")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(client.redirect_uri + "?")
    query = query_of(location)
    assert query["error"] == "access_denied"
    assert query["state"] == auth.state
    assert "code" not in query
    assert _grant_ids(vault, customer.id) == []
    assert vault.sql("SELECT count(*) FROM oauth_codes")[0][0] == 0


def test_reauthorizing_granted_scopes_skips_the_screen_unless_prompt_consent(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    vault.connect(client, browser, "openid profile email phone", approve=["profile", "email"])

    # Already granted: straight back to the vendor with a code that works.
    auth = vault.authorization(client, "openid email")
    response = vault.consent_page(browser, auth.url)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert query_of(location)["state"] == auth.state
    tokens = vault.exchange(auth, location)
    assert set(tokens["scope"].split()) == {"openid", "email"}
    assert set(vault.api(tokens["access_token"]).json()) == {"sub", "email", "email_verified"}

    # prompt=consent asks again.
    asked = vault.consent_page(
        browser, vault.authorization(client, "openid email", prompt="consent").url
    )
    assert asked.status_code == 200
    assert 'name="decision" value="approve"' in asked.text

    # A scope the customer unticked before is not implied: the screen is shown.
    wider = vault.consent_page(browser, vault.authorization(client, "openid email phone").url)
    assert wider.status_code == 200
    assert "Your phone number" in wider.text
    assert len(_grant_ids(vault, customer.id)) == 1


def test_unticking_a_granted_scope_on_a_new_consent_screen_withdraws_it(vault):
    """The screen says "untick anything you do not want to share": that holds for scopes
    granted earlier too, not only for new ones."""
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    _, first = vault.connect(client, browser)
    assert "phone_number" in vault.api(first["access_token"]).json()

    auth = vault.authorization(client, "openid email phone", prompt="consent")
    page = vault.consent_page(browser, auth.url)
    response = vault.decide(browser, page, scopes=["email"])
    tokens = vault.exchange(auth, response.headers["Location"])
    assert set(tokens["scope"].split()) == {"openid", "email"}

    # The earlier token lost the phone number at once; profile (not on this screen) stays.
    assert set(vault.api(first["access_token"]).json()) == {
        "sub",
        "name",
        "given_name",
        "family_name",
        "email",
        "email_verified",
    }
    # And asking for the phone again shows the screen instead of a silent code.
    again = vault.consent_page(browser, vault.authorization(client, "openid phone").url)
    assert again.status_code == 200
    assert len(_grant_ids(vault, customer.id)) == 1


def test_prompt_none_without_consent_answers_consent_required(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    auth = vault.authorization(client, "openid email", prompt="none")
    response = vault.consent_page(browser, auth.url)
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert query["error"] == "consent_required"
    assert query["state"] == auth.state
    assert _grant_ids(vault, customer.id) == []

    # Once granted, prompt=none gets a code silently.
    vault.connect(client, browser, "openid email")
    auth = vault.authorization(client, "openid email", prompt="none")
    response = vault.consent_page(browser, auth.url)
    assert response.status_code == 302
    assert "code" in query_of(response.headers["Location"])
    # Logged out, prompt=none answers login_required instead of showing the login page.
    anonymous = requests.get(
        vault.authorization(client, "openid email", prompt="none").url,
        allow_redirects=False,
        timeout=10,
    )
    assert anonymous.status_code == 302
    assert query_of(anonymous.headers["Location"])["error"] == "login_required"


def test_a_client_registered_for_rs256_gets_rs256_id_tokens(vault):
    client = vault.vendor("Legacy RP", id_token_alg="RS256")
    customer = vault.customer(**PROFILE)
    auth, tokens = vault.connect(client, vault.browser(customer), "openid email")
    jwks = KeySet.import_key_set(requests.get(vault.meta["jwks_uri"], timeout=10).json())
    id_token = jwt.decode(tokens["id_token"], jwks, algorithms=["RS256"])
    assert id_token.header["alg"] == "RS256"
    assert (
        id_token.claims["aud"] == [client.client_id] or id_token.claims["aud"] == client.client_id
    )
    assert id_token.claims["nonce"] == auth.nonce
    with pytest.raises(Exception):  # noqa: B017 - joserfc raises its own error types
        jwt.decode(tokens["id_token"], jwks, algorithms=["ES256"])


def test_id_token_auth_time_is_when_the_customer_logged_in(vault):
    client = vault.vendor("Auth Time RP")
    customer = vault.customer(**PROFILE)
    logged_in_at = int(time.time())
    browser = vault.browser(customer)
    time.sleep(1.1)
    _, tokens = vault.connect(client, browser, "openid email")
    jwks = KeySet.import_key_set(requests.get(vault.meta["jwks_uri"], timeout=10).json())
    claims = jwt.decode(tokens["id_token"], jwks, algorithms=["ES256"]).claims
    assert logged_in_at <= claims["auth_time"] < claims["iat"]
