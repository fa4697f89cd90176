"""Sessions end after inactivity and at an absolute limit, a session cookie taken to another
browser stops working, and no personal page may be kept in a cache."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests import factories

IDLE, MAX_AGE = 600, 3600


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {
        **app_config,
        "VAULT_LOGIN_RATE_LIMIT": "1000 per minute",
        "VAULT_SESSION_IDLE_TIMEOUT": IDLE,
        "VAULT_SESSION_MAX_AGE": MAX_AGE,
    }


def shift_session(client: FlaskClient, **seconds_ago: int) -> None:
    """Move the session's timestamps into the past, as if that much time had passed.

    The test client re-signs the cookie with the app's key: this is the server's own
    session, aged, not a forgery (a browser cannot change a signed cookie)."""
    with client.session_transaction() as sess:
        now = int(time.time())
        for name, ago in seconds_ago.items():
            sess[name] = now - ago


def logged_out_with(client: FlaskClient, words: str) -> bool:
    response = client.get("/profile")
    if response.status_code != 302 or not response.location.startswith("/login"):
        return False
    return words in client.get(response.location).get_data(as_text=True)


def test_a_session_ends_after_the_idle_timeout(app, logged_in):
    shift_session(logged_in, last_seen=IDLE - 30, auth_time=IDLE - 30)
    assert logged_in.get("/profile").status_code == 200
    shift_session(logged_in, last_seen=IDLE + 1)
    assert logged_out_with(logged_in, "logged out after 10 minutes without activity")
    # Logged out for good: the next request does not bring the session back.
    assert logged_in.get("/profile").status_code == 302


def test_activity_keeps_a_session_alive(app, logged_in):
    shift_session(logged_in, last_seen=IDLE - 5, auth_time=IDLE * 2)
    assert logged_in.get("/profile").status_code == 200
    with logged_in.session_transaction() as sess:
        assert time.time() - sess["last_seen"] < 5  # the request counted as activity
    assert logged_in.get("/").status_code == 200


def test_a_session_ends_at_the_absolute_limit_however_active(app, logged_in):
    shift_session(logged_in, auth_time=MAX_AGE + 1, last_seen=1)
    assert logged_out_with(logged_in, "a session lasts at most 1 hour")


def test_a_session_without_timestamps_is_not_accepted(app, logged_in):
    with logged_in.session_transaction() as sess:
        del sess["auth_time"]
        sess.pop("last_seen", None)
    assert logged_out_with(logged_in, "Your session has ended")


def test_a_copied_cookie_expires_with_the_original(app, customer):
    browser = app.test_client()
    factories.log_in(browser, customer.email, customer.password)
    shift_session(browser, last_seen=IDLE + 1)
    copy = app.test_client()
    copy.set_cookie("vault_session", browser.get_cookie("vault_session").value)
    assert copy.get("/profile").status_code == 302


def test_the_session_cookie_ends_with_the_browser(app, customer):
    client = app.test_client()
    response = factories.log_in(client, customer.email, customer.password)
    cookie = next(
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith("vault_session=")
    )
    assert "Expires=" not in cookie and "Max-Age" not in cookie


def test_strong_session_protection_logs_out_a_cookie_used_elsewhere(app, customer):
    """session_protection="strong": another browser or address with the same cookie is
    logged out (with permanent sessions Flask-Login only marked it non-fresh)."""
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = "Browser of the customer/1.0"
    factories.log_in(client, customer.email, customer.password)
    assert client.get("/profile").status_code == 200

    thief = app.test_client()
    thief.environ_base["HTTP_USER_AGENT"] = "Browser of someone else/1.0"
    thief.set_cookie("vault_session", client.get_cookie("vault_session").value)
    assert thief.get("/profile").status_code == 302

    elsewhere = app.test_client()
    elsewhere.environ_base.update(
        HTTP_USER_AGENT="Browser of the customer/1.0", REMOTE_ADDR="203.0.113.9"
    )
    elsewhere.set_cookie("vault_session", client.get_cookie("vault_session").value)
    assert elsewhere.get("/profile").status_code == 302
    # The customer's own browser is still logged in.
    assert client.get("/profile").status_code == 200


PERSONAL_PAGES = [
    "/",
    "/profile",
    "/security",
    "/security/2fa",
    "/account/delete",
    "/connections",
    "/activity",
    "/consents",
    "/consents/receipts",
    "/my-data",
    "/my-data/export.json",
]


@pytest.mark.parametrize("path", PERSONAL_PAGES)
def test_personal_pages_are_not_stored_by_any_cache(app, logged_in, path):
    response = logged_in.get(path)
    assert response.status_code == 200, path
    assert response.headers["Cache-Control"] == "no-store"


def test_account_flow_pages_are_not_stored_either(app, client):
    for path in ("/login", "/signup"):
        assert client.get(path).headers["Cache-Control"] == "no-store"


def test_an_anonymous_landing_page_may_be_cached(app, client):
    assert "no-store" not in client.get("/").headers.get("Cache-Control", "")
