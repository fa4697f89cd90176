"""Audit lines of the OAuth server and a whole customer journey's logs searched for the
customer's personal data (``vault.logs``). The vault runs on a real HTTP server; the
vendor is Authlib's client, the customer a ``requests`` session."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
import requests

from tests import factories
from tests.vault.oauth.conftest import query_of
from tests.vault.oauth.test_break_in import _approved_location, _code_request
from tests.vault.test_logs import audit_lines, lines

PROFILE = {"given_name": "Ann", "family_name": "Lovelace"}
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture(autouse=True)
def _capture_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


@pytest.fixture
def live_config_overrides(mailbox: Any) -> dict[str, Any]:
    return {"VAULT_SMTP_URL": mailbox.url, "VAULT_SIGNUP_RATE_LIMIT": "1000 per hour"}


def test_a_code_replay_is_audited_once_and_its_revocation_kept(vault, caplog):
    client = vault.vendor()
    browser = vault.browser(vault.customer(**PROFILE))
    auth, location = _approved_location(vault, client, browser)
    tokens = vault.exchange(auth, location)
    replay = _code_request(vault, client, location, auth.verifier)
    assert replay.status_code == 400

    [line] = audit_lines(caplog, "code_replay")
    assert line["request_id"] == replay.headers["X-Request-ID"]
    assert line["client_id"] == client.client_id and line["grant_id"]
    # Answered 400, yet what it revoked stayed revoked (vault.transactions).
    assert vault.api(tokens["access_token"]).status_code == 401


def test_a_refresh_replay_ends_the_grant_and_says_so_twice(vault, caplog):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    auth, tokens = vault.connect(client, vault.browser(customer))
    vault.refresh(auth)
    replay = vault.token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, client
    )
    assert replay.status_code == 400

    [replayed] = audit_lines(caplog, "refresh_replay")
    [revoked] = audit_lines(caplog, "grant_revoked")
    assert replayed["request_id"] == revoked["request_id"] == replay.headers["X-Request-ID"]
    assert revoked["by"] == "refresh_token_replay"
    assert revoked["grant_id"] == replayed["grant_id"]
    assert revoked["user_id"] == customer.id and revoked["client_id"] == client.client_id


def test_a_customer_ending_a_connection_is_audited(vault, caplog):
    client = vault.vendor()
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    vault.connect(client, browser)
    [(grant_id,)] = vault.sql("SELECT id FROM oauth_grants WHERE user_id = :u", u=customer.id)
    revoked = browser.post(
        f"{vault.base}/connections/{grant_id}/revoke",
        data={"csrf_token": vault.csrf(browser, "/connections")},
        allow_redirects=False,
        timeout=10,
    )
    assert revoked.status_code == 302
    [line] = audit_lines(caplog, "grant_revoked")
    assert line["by"] == "customer" and line["grant_id"] == grant_id
    assert line["request_id"] == revoked.headers["X-Request-ID"]


# --- a whole journey, and its logs searched ----------------------------------------------------

SECRETS = {
    "email": "zebulon.quackenbush.7731@example.com",
    "password": "violet kettle ransom 88 drift",
    "given_name": "Zebulon",
    "family_name": "Quackenbush",
    "phone_number": "+14155550177",
    "street_address": "77 Zzyzx Crescent",
    "locality": "Quillfeather",
    "birthdate": "1971-03-04",
}


def _post(session: requests.Session, base: str, path: str, data: dict[str, Any], **kw: Any):
    page = session.get(base + (kw.pop("form_page", None) or path), timeout=10)
    token = _CSRF.search(page.text).group(1)
    return session.post(
        base + path, data={"csrf_token": token, **data}, allow_redirects=False, timeout=10
    )


def test_a_whole_journey_logs_no_personal_data(vault, mailbox, caplog):
    base = vault.base
    browser = requests.Session()
    email, password = SECRETS["email"], SECRETS["password"]
    wrong = _post(browser, base, "/login", {"email": email, "password": "wrong " + password})
    assert wrong.status_code == 401

    # Sign-up through the mailed link, then the profile.
    assert _post(browser, base, "/signup", {"email": email}).status_code == 200
    link = factories.confirmation_path(mailbox, email)
    confirm_token = link.rsplit("/", 1)[-1]
    chosen = _post(browser, base, link, {"password": password, "confirm": password})
    assert chosen.status_code == 302
    saved = _post(
        browser,
        base,
        "/profile",
        {
            "email": email,
            "given_name": SECRETS["given_name"],
            "family_name": SECRETS["family_name"],
            "phone_number": SECRETS["phone_number"],
            "birthdate": SECRETS["birthdate"],
            "address.street_address": SECRETS["street_address"],
            "address.locality": SECRETS["locality"],
        },
    )
    assert saved.status_code == 302, saved.text

    # A vendor connects, reads, refreshes, replays; the customer ends the connection.
    client = vault.vendor(scopes=("openid", "profile", "email", "phone", "address"))
    auth, location = _approved_location(
        vault, client, browser, "openid profile email phone address"
    )
    code = query_of(location)["code"]
    tokens = vault.exchange(auth, location)
    profile = vault.api(tokens["access_token"])
    assert profile.json()["family_name"] == SECRETS["family_name"]
    assert vault.api(tokens["access_token"], "/oauth/userinfo").status_code == 200
    refreshed = vault.refresh(auth)
    vault.token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, client
    )
    vault.introspect(client, refreshed["access_token"])
    assert _post(browser, base, "/logout", {}, form_page="/").status_code == 302

    logged = lines(caplog)
    assert {line["logger"] for line in logged} >= {"vault.request", "vault.audit"}
    assert {"login_failed", "signup_confirmed", "refresh_replay", "grant_revoked"} <= {
        line.get("event") for line in logged
    }
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in logged)
    personal = {
        **SECRETS,
        "email local part": email.split("@")[0],
        "phone digits": SECRETS["phone_number"].lstrip("+"),
        "confirmation link token": confirm_token,
        "authorization code": code,
        "access token": tokens["access_token"],
        "refresh token": tokens["refresh_token"],
        "id_token": tokens["id_token"],
        "refreshed access token": refreshed["access_token"],
        "client secret": client.client_secret,
        "session cookie": browser.cookies.get("vault_session") or "no-cookie-left",
        "client address": "127.0.0.1",
    }
    found = {name for name, value in personal.items() if value and value in text}
    assert found == set()
    # Every line written during a request carries its id.
    assert all(line.get("request_id") for line in logged if line["logger"] == "vault.request")
