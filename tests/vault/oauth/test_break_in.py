"""Attacks on the authorization server and the API, each of which must fail.

The attacker's tools are the honest ones: Authlib's OAuth 2.0 client, plain HTTP requests,
and a logged-in browser session; the vault runs on a live HTTP server.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tests import factories
from tests.vault.oauth.conftest import query_of
from vault.accounts.models import Role
from vault.extensions import db
from vault.models import utcnow
from vault.oauth.models import AuthorizationCode, Grant, OAuthClient

PROFILE = {"given_name": "Ann", "phone_number": "+14155550123"}


def _approved_location(vault, client, browser, scope="openid profile email phone"):
    auth = vault.authorization(client, scope)
    response = vault.decide(browser, vault.consent_page(browser, auth.url))
    assert response.status_code == 302
    return auth, response.headers["Location"]


def _code_request(vault, client, location, verifier, **extra):
    data = {
        "grant_type": "authorization_code",
        "code": query_of(location)["code"],
        "redirect_uri": client.redirect_uri,
        **extra,
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return vault.token_request(data, client)


def _authorize_url(vault, client, **params):
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": "openid email",
        "state": "s-123",
        **params,
    }
    return (
        vault.meta["authorization_endpoint"]
        + "?"
        + urlencode({k: v for k, v in query.items() if v is not None})
    )


def _grant(vault, user_id):
    with vault.app.app_context():
        grant = db.session.query(Grant).filter_by(user_id=user_id).one()
        return grant.id, grant.revoked_at, grant.revoked_reason


# --- PKCE ------------------------------------------------------------------------------------


def test_code_exchange_without_code_verifier_fails(vault):
    client = vault.vendor()
    browser = vault.browser(vault.customer(**PROFILE))
    _, location = _approved_location(vault, client, browser)
    response = _code_request(vault, client, location, None)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "access_token" not in response.json()


def test_code_exchange_with_wrong_code_verifier_fails(vault):
    client = vault.vendor()
    browser = vault.browser(vault.customer(**PROFILE))
    auth, location = _approved_location(vault, client, browser)
    with pytest.raises(OAuthError) as refused:
        # One character different (a fixed "A" would be no change when the verifier ends in A).
        wrong = auth.verifier[:-1] + ("B" if auth.verifier.endswith("A") else "A")
        vault.exchange(auth, location, code_verifier=wrong)
    assert refused.value.error == "invalid_grant"
    assert vault.sql("SELECT count(*) FROM oauth_tokens")[0][0] == 0


@pytest.mark.parametrize(
    "pkce",
    [
        {},  # no code_challenge at all
        {"code_challenge": "x" * 43, "code_challenge_method": "plain"},
        {"code_challenge": "x" * 43},  # method defaults to plain in RFC 7636
    ],
    ids=["missing", "plain", "method-omitted"],
)
def test_authorization_without_s256_challenge_is_refused(vault, pkce):
    client = vault.vendor()
    browser = vault.browser(vault.customer(**PROFILE))
    response = browser.get(_authorize_url(vault, client, **pkce), allow_redirects=False)
    assert response.status_code == 302  # the client and its redirect URI checked out
    location = response.headers["Location"]
    assert location.startswith(client.redirect_uri + "?")
    query = query_of(location)
    assert query["error"] == "invalid_request"
    assert query["state"] == "s-123"
    assert "code" not in query


# --- redirect URIs and clients ------------------------------------------------------------------


@pytest.mark.parametrize(
    "mangle",
    [
        lambda uri: "https://attacker.example/cb",
        lambda uri: uri + "/",
        lambda uri: uri[:-1],
        lambda uri: uri[:-1] + ("x" if uri[-1] != "x" else "y"),
        lambda uri: uri + "?next=https://attacker.example",
        lambda uri: uri.replace("127.0.0.1", "localhost"),
        lambda uri: uri.upper(),
    ],
    ids=["foreign", "trailing-slash", "one-shorter", "one-char", "extra-query", "host", "case"],
)
def test_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(vault, mangle):
    client = vault.vendor()
    browser = vault.browser(vault.customer(**PROFILE))
    evil = mangle(client.redirect_uri)
    assert evil != client.redirect_uri
    challenge = create_s256_code_challenge("v" * 50)
    url = _authorize_url(
        vault, client, redirect_uri=evil, code_challenge=challenge, code_challenge_method="S256"
    )
    response = browser.get(url, allow_redirects=False)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "This request cannot go on" in response.text
    assert f'href="{evil}' not in response.text
    # Neither does a consent decision posted straight at the endpoint redirect anywhere.
    posted = browser.post(
        url,
        data={
            "csrf_token": vault.csrf(browser, "/connections"),
            "decision": "approve",
            "duration": "1y",
        },
        allow_redirects=False,
    )
    assert posted.status_code == 400
    assert "Location" not in posted.headers
    assert vault.sql("SELECT count(*) FROM oauth_codes")[0][0] == 0


def test_missing_pkce_with_a_bad_redirect_uri_still_never_redirects(vault):
    client = vault.vendor()
    browser = vault.browser(vault.customer(**PROFILE))
    url = _authorize_url(vault, client, redirect_uri="https://attacker.example/cb")
    response = browser.get(url, allow_redirects=False)
    assert response.status_code == 400
    assert "Location" not in response.headers


@pytest.mark.parametrize("client_id", ["no-such-client", None])
def test_unknown_or_missing_client_gets_an_error_page(vault, client_id):
    client = vault.vendor()
    browser = vault.browser(vault.customer(**PROFILE))
    url = _authorize_url(
        vault,
        client,
        client_id=client_id,
        code_challenge=create_s256_code_challenge("v" * 50),
        code_challenge_method="S256",
    )
    response = browser.get(url, allow_redirects=False)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "invalid_client" in response.text


def test_implicit_flow_is_not_offered(vault):
    client = vault.vendor()
    browser = vault.browser(vault.customer(**PROFILE))
    response = browser.get(
        _authorize_url(vault, client, response_type="token"), allow_redirects=False
    )
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(client.redirect_uri + "?")
    assert query_of(location)["error"] == "unsupported_response_type"
    assert "access_token" not in location
    # ... and with a foreign redirect URI the error is a page, not an open redirect.
    foreign = browser.get(
        _authorize_url(
            vault, client, response_type="token", redirect_uri="https://attacker.example/"
        ),
        allow_redirects=False,
    )
    assert foreign.status_code == 400
    assert "Location" not in foreign.headers


def test_consent_decision_needs_the_csrf_token(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    auth = vault.authorization(client)
    page = vault.consent_page(browser, auth.url)
    assert page.status_code == 200
    forged = browser.post(
        auth.url,
        data={"decision": "approve", "approve_scope": ["email", "phone"], "duration": "forever"},
        allow_redirects=False,
    )
    assert forged.status_code == 400
    assert "Location" not in forged.headers
    assert vault.sql("SELECT count(*) FROM oauth_grants")[0][0] == 0


def test_only_customers_can_grant_access(vault):
    client = vault.vendor()
    member = factories.customer(vault.app, role=Role.VENDOR_MEMBER)
    browser = vault.browser(member)
    response = vault.consent_page(browser, vault.authorization(client).url)
    assert response.status_code == 403
    assert "Location" not in response.headers


# --- replays -------------------------------------------------------------------------------------


def test_authorization_code_replay_fails_and_kills_the_first_tokens(vault):
    client = vault.vendor()
    browser = vault.browser(vault.customer(**PROFILE))
    auth, location = _approved_location(vault, client, browser)
    tokens = vault.exchange(auth, location)
    assert vault.api(tokens["access_token"]).status_code == 200

    replay = _code_request(vault, client, location, auth.verifier)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"

    rejected = vault.api(tokens["access_token"])
    assert rejected.status_code == 401
    assert rejected.json()["error"] == "invalid_token"
    refresh = vault.token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, client
    )
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"


def test_expired_authorization_code_is_refused(vault):
    client = vault.vendor()
    browser = vault.browser(vault.customer(**PROFILE))
    auth, location = _approved_location(vault, client, browser)
    with vault.app.app_context():
        for code in db.session.query(AuthorizationCode):
            code.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    response = _code_request(vault, client, location, auth.verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_code_of_one_vendor_cannot_be_redeemed_by_another(vault):
    acme = vault.vendor("Acme")
    mallory = vault.vendor("Mallory")
    browser = vault.browser(vault.customer(**PROFILE))
    auth, location = _approved_location(vault, acme, browser)
    stolen = vault.token_request(
        {
            "grant_type": "authorization_code",
            "code": query_of(location)["code"],
            "redirect_uri": acme.redirect_uri,
            "code_verifier": auth.verifier,
        },
        mallory,
    )
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    # The rightful vendor can still redeem it.
    assert vault.api(vault.exchange(auth, location)["access_token"]).status_code == 200


def test_code_exchange_with_a_different_redirect_uri_fails(vault):
    client = vault.vendor()
    browser = vault.browser(vault.customer(**PROFILE))
    auth, location = _approved_location(vault, client, browser)
    response = _code_request(
        vault, client, location, auth.verifier, redirect_uri=client.redirect_uri + "/"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_refresh_token_replay_fails_and_revokes_the_whole_grant(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    auth, tokens = vault.connect(client, vault.browser(customer))
    newest = vault.refresh(auth)
    assert vault.api(newest["access_token"]).status_code == 200

    replay = vault.token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, client
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"

    assert vault.api(newest["access_token"]).status_code == 401
    assert vault.introspect(client, newest["access_token"]) == {"active": False}
    with pytest.raises(OAuthError) as refused:
        vault.refresh(auth)  # the newest refresh token died with the grant
    assert refused.value.error == "invalid_grant"
    _, revoked_at, reason = _grant(vault, customer.id)
    assert revoked_at is not None
    assert reason == "refresh_token_replay"


def test_refresh_token_of_one_vendor_is_useless_to_another(vault):
    acme = vault.vendor("Acme")
    mallory = vault.vendor("Mallory")
    _, tokens = vault.connect(acme, vault.browser(vault.customer(**PROFILE)))
    stolen = vault.token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, mallory
    )
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    assert vault.api(tokens["access_token"]).status_code == 200


# --- grants that ended ----------------------------------------------------------------------------


def test_expired_grant_stops_api_and_refresh(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    auth, tokens = vault.connect(client, browser, duration="30d")
    with vault.app.app_context():
        grant = db.session.query(Grant).filter_by(user_id=customer.id).one()
        assert grant.expires_at is not None
        assert timedelta(days=29) < grant.expires_at - utcnow() <= timedelta(days=30)
        assert vault.api(tokens["access_token"]).status_code == 200
        grant.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()

    expired = vault.api(tokens["access_token"])
    assert expired.status_code == 401
    assert expired.json()["error"] == "invalid_token"
    with pytest.raises(OAuthError) as refused:
        vault.refresh(auth)
    assert refused.value.error == "invalid_grant"
    assert vault.introspect(client, tokens["access_token"]) == {"active": False}
    # The customer sees it as ended, and the vendor must ask again.
    assert "(expired)" in browser.get(vault.base + "/connections").text
    again = vault.consent_page(browser, vault.authorization(client, "openid email").url)
    assert again.status_code == 200


def test_disabling_a_client_stops_its_live_tokens(vault):
    client = vault.vendor()
    auth, tokens = vault.connect(client, vault.browser(vault.customer(**PROFILE)))
    assert vault.api(tokens["access_token"]).status_code == 200
    with vault.app.app_context():
        db.session.get(OAuthClient, client.client_id).disabled_at = utcnow()
        db.session.commit()
    assert vault.api(tokens["access_token"]).status_code == 401
    with pytest.raises(OAuthError):
        vault.refresh(auth)


def test_narrowing_cannot_widen_a_grant(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    _, tokens = vault.connect(client, browser, "openid email")
    grant_id, _, _ = _grant(vault, customer.id)
    response = browser.post(
        f"{vault.base}/connections/{grant_id}/scopes",
        data={"csrf_token": vault.csrf(browser, "/connections"), "keep_scope": ["email", "phone"]},
        allow_redirects=False,
    )
    assert response.status_code == 302
    assert set(vault.api(tokens["access_token"]).json()) == {"sub", "email", "email_verified"}
    assert vault.sql("SELECT scope FROM oauth_grants")[0][0] == "openid email"


# --- tokens and their reach -----------------------------------------------------------------------


def test_another_vendor_cannot_introspect_or_revoke_my_tokens(vault):
    acme = vault.vendor("Acme")
    mallory = vault.vendor("Mallory")
    _, tokens = vault.connect(acme, vault.browser(vault.customer(**PROFILE)))
    assert vault.introspect(mallory, tokens["access_token"]) == {"active": False}
    assert vault.introspect(mallory, tokens["refresh_token"]) == {"active": False}
    assert vault.introspect(acme, tokens["access_token"])["active"] is True

    requests.post(
        vault.meta["revocation_endpoint"],
        data={"token": tokens["access_token"]},
        auth=(mallory.client_id, mallory.client_secret),
        timeout=10,
    )
    assert vault.api(tokens["access_token"]).status_code == 200
    # Introspection needs a confidential client's credentials.
    anonymous = requests.post(
        vault.meta["introspection_endpoint"], data={"token": tokens["access_token"]}, timeout=10
    )
    assert anonymous.status_code == 401
    assert "active" not in anonymous.json()


def test_email_scope_cannot_read_the_phone_number(vault):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    _, tokens = vault.connect(client, vault.browser(customer), "openid email")
    assert tokens["scope"] == "openid email"
    profile = vault.api(tokens["access_token"])
    assert profile.status_code == 200
    assert set(profile.json()) == {"sub", "email", "email_verified"}
    userinfo = vault.api(tokens["access_token"], "/oauth/userinfo").json()
    assert "phone_number" not in userinfo
    assert "given_name" not in userinfo


def test_scope_the_client_was_not_registered_for_is_never_granted(vault):
    client = vault.vendor(scopes=("openid", "email"))
    customer = vault.customer(**PROFILE)
    auth = vault.authorization(client, "openid email phone")
    page = vault.consent_page(vault.browser(customer), auth.url)
    assert "Your phone number" not in page.text
    # Even a forged tick for it is ignored.
    browser = vault.browser(customer)
    page = vault.consent_page(browser, auth.url)
    response = vault.decide(browser, page, scopes=["email", "phone"])
    tokens = vault.exchange(auth, response.headers["Location"])
    assert "phone" not in tokens["scope"].split()
    assert "phone_number" not in vault.api(tokens["access_token"]).json()


def test_client_credentials_never_reach_a_profile(vault):
    plain = vault.vendor("Plain")
    # A client not registered for client credentials cannot use them at all.
    refused = vault.token_request({"grant_type": "client_credentials"}, plain)
    assert refused.status_code == 400
    assert refused.json()["error"] == "unauthorized_client"

    client = vault.vendor("Machine")
    with vault.app.app_context():
        row = db.session.get(OAuthClient, client.client_id)
        row.grant_types = [*row.grant_types, "client_credentials"]
        db.session.commit()
    for scope in ("profile", "openid email", "phone"):
        response = vault.token_request({"grant_type": "client_credentials", "scope": scope}, client)
        assert response.status_code == 400, scope
        assert response.json()["error"] == "invalid_scope", scope

    token = vault.token_request({"grant_type": "client_credentials"}, client)
    assert token.status_code == 200, token.text
    body = token.json()
    assert "refresh_token" not in body
    assert not body.get("scope")
    profile = vault.api(body["access_token"])
    assert profile.status_code == 403
    assert profile.headers["Content-Type"].startswith("application/problem+json")
    assert "sub" not in profile.json()
    assert vault.api(body["access_token"], "/oauth/userinfo").status_code == 403


def test_a_logged_in_session_cookie_is_not_an_api_credential(vault):
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    assert browser.get(vault.base + "/profile", allow_redirects=False).status_code == 200
    response = browser.get(vault.base + "/api/v1/profile")
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/problem+json")
    # RFC 6750 3.1: a request without a token gets a bare challenge, no error code.
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Ann" not in response.text
    assert browser.get(vault.base + "/oauth/userinfo").status_code == 401


def test_access_token_in_the_query_string_is_not_accepted(vault):
    client = vault.vendor()
    _, tokens = vault.connect(client, vault.browser(vault.customer(**PROFILE)))
    response = requests.get(
        vault.base + "/api/v1/profile",
        params={"access_token": tokens["access_token"]},
        timeout=10,
    )
    assert response.status_code == 401
    assert "Ann" not in response.text


@pytest.mark.parametrize("header", ["Bearer nonsense", "Bearer ", "Basic Zm9vOmJhcg=="])
def test_garbage_bearer_tokens_get_a_problem_not_a_stack_trace(vault, header):
    response = requests.get(
        vault.base + "/api/v1/profile", headers={"Authorization": header}, timeout=10
    )
    assert response.status_code in (400, 401)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert "Traceback" not in response.text


# --- customers and their grants -----------------------------------------------------------------


def test_nobody_else_can_see_revoke_or_narrow_my_grant(vault):
    client = vault.vendor("Acme")
    victim = vault.customer(**PROFILE)
    _, tokens = vault.connect(client, vault.browser(victim))
    grant_id, _, _ = _grant(vault, victim.id)

    other = vault.browser(vault.customer())
    assert grant_id not in other.get(vault.base + "/connections").text
    token = vault.csrf(other, "/connections")
    for action, data in (("revoke", {}), ("scopes", {"keep_scope": ["openid"]})):
        response = other.post(
            f"{vault.base}/connections/{grant_id}/{action}",
            data={"csrf_token": token, **data},
            allow_redirects=False,
        )
        assert response.status_code == 404, action

    member = factories.customer(vault.app, role=Role.VENDOR_MEMBER)
    member_browser = vault.browser(member)
    assert member_browser.get(vault.base + "/connections").status_code == 403
    response = member_browser.post(
        f"{vault.base}/connections/{grant_id}/revoke",
        data={"csrf_token": vault.csrf(member_browser, "/profile")},
        allow_redirects=False,
    )
    assert response.status_code in (403, 404)

    _, revoked_at, _ = _grant(vault, victim.id)
    assert revoked_at is None
    still = vault.api(tokens["access_token"])
    assert still.status_code == 200
    assert "phone_number" in still.json()


def test_vendor_name_is_escaped_everywhere_the_customer_sees_it(vault):
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    client = vault.vendor(evil)
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    auth = vault.authorization(client)
    page = vault.consent_page(browser, auth.url)
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text
    assert "<img src=x" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    # The consent screen cannot be framed (clickjacking the Allow button).
    assert page.headers.get("X-Frame-Options") == "DENY"
    assert "frame-ancestors 'none'" in page.headers.get("Content-Security-Policy", "")

    response = vault.decide(browser, page)
    tokens = vault.exchange(auth, response.headers["Location"])
    vault.api(tokens["access_token"])
    for path in ("/connections", "/activity"):
        text = browser.get(vault.base + path).text
        assert "<script>alert(1)" not in text, path
        assert "&lt;script&gt;" in text, path


# --- public clients ----------------------------------------------------------------------------


def test_public_client_needs_pkce_and_cannot_use_a_secret(vault):
    client = vault.vendor("Mobile", public=True)
    assert client.client_secret is None
    browser = vault.browser(vault.customer(**PROFILE))

    no_pkce = browser.get(_authorize_url(vault, client), allow_redirects=False)
    assert query_of(no_pkce.headers["Location"])["error"] == "invalid_request"

    auth, location = _approved_location(vault, client, browser)
    code = query_of(location)["code"]
    base = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uri,
        "code_verifier": auth.verifier,
    }
    with_basic = requests.post(
        vault.meta["token_endpoint"], data=base, auth=(client.client_id, "guess"), timeout=10
    )
    assert with_basic.status_code == 401
    assert with_basic.json()["error"] == "invalid_client"
    with_post = requests.post(
        vault.meta["token_endpoint"],
        data={**base, "client_id": client.client_id, "client_secret": "guess"},
        timeout=10,
    )
    assert with_post.status_code in (400, 401)
    assert with_post.json()["error"] == "invalid_client"
    without_verifier = requests.post(
        vault.meta["token_endpoint"],
        data={**base, "client_id": client.client_id, "code_verifier": ""},
        timeout=10,
    )
    assert without_verifier.status_code == 400

    # With PKCE and no secret, the rightful app gets its tokens.
    tokens = vault.exchange(auth, location)
    assert vault.api(tokens["access_token"]).status_code == 200
    # A public client has no credentials to introspect with.
    introspect = requests.post(
        vault.meta["introspection_endpoint"],
        data={"token": tokens["access_token"], "client_id": client.client_id},
        timeout=10,
    )
    assert introspect.status_code == 401


# --- storage ------------------------------------------------------------------------------------


def test_codes_and_tokens_are_stored_only_as_hashes(vault):
    client = vault.vendor()
    browser = vault.browser(vault.customer(**PROFILE))
    auth, location = _approved_location(vault, client, browser)
    code = query_of(location)["code"]
    tokens = vault.exchange(auth, location)
    refreshed = vault.refresh(auth)
    secrets_issued = [
        code,
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
        client.client_secret,
    ]

    dump = "\n".join(
        repr(tuple(row))
        for table in ("oauth_tokens", "oauth_codes", "oauth_clients", "oauth_grants")
        for row in vault.sql(f"SELECT * FROM {table}")
    )
    for secret in secrets_issued:
        assert secret not in dump
    stored = {row[0] for row in vault.sql("SELECT access_token_hash FROM oauth_tokens")}
    for secret in (tokens["access_token"], refreshed["access_token"]):
        assert hashlib.sha256(secret.encode()).hexdigest() in stored
