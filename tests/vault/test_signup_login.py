"""Sign-up, log-in, log-out, password change and the login rate limit, through the web UI.

Each test tries to get in where it should not (bad input, wrong password, replayed
session, open redirect, too many attempts) and then checks that nothing changed.
"""

from __future__ import annotations

import html
import re
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests import factories
from vault import create_app
from vault.accounts.models import User
from vault.accounts.views import LOGIN_FAILED
from vault.extensions import db
from vault.services import passwords

NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    # Many log-ins per test here; the rate limit and the per-account delays have their own
    # tests with their own apps.
    return {
        **app_config,
        "VAULT_LOGIN_RATE_LIMIT": "1000 per minute",
        "VAULT_GUESS_FREE_ATTEMPTS": 1000,
    }


@pytest.fixture
def make_app(app_config: dict[str, Any]) -> Iterator[Any]:
    """Build an app with extra settings (use instead of ``app``, never beside it)."""
    built: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        application = create_app({**app_config, **overrides})
        built.append(application)
        return application

    yield make
    for application in built:
        with application.app_context():
            db.engine.dispose()


def field_error(page: str, field_id: str) -> str | None:
    """The error message shown right beside a form field, or None."""
    match = re.search(rf'<p class="error" id="{re.escape(field_id)}-error">(.*?)</p>', page, re.S)
    return html.unescape(match.group(1)) if match else None


def user_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User)) or 0


def is_logged_in(client: FlaskClient) -> bool:
    response = client.get("/profile")
    if response.status_code == 200:
        return True
    assert response.status_code == 302
    assert response.location.startswith("/login")
    return False


def signup(client: FlaskClient, email: str) -> Any:
    return factories.post_form(client, "/signup", {"email": email})


def choose_password(
    client: FlaskClient, link: str, password: str, confirm: str | None = None
) -> Any:
    return factories.post_form(
        client, link, {"password": password, "confirm": password if confirm is None else confirm}
    )


def login(client: FlaskClient, email: str, password: str, next: str | None = None) -> Any:
    token = factories.csrf_token(client, "/login")
    return client.post(
        "/login",
        query_string={"next": next} if next is not None else None,
        data={"csrf_token": token, "email": email, "password": password},
    )


# --- sign-up ---------------------------------------------------------------------------------
# The double opt-in itself (taken and free addresses alike, links, limits) is in
# tests/vault/accounts/test_signup_confirmation.py.


def test_signup_creates_the_account_once_the_mailed_link_is_followed(app, client, mailbox):
    email = factories.unique_email("signup")
    response = signup(client, email)
    assert response.status_code == 200
    assert "Check your inbox" in response.get_data(as_text=True)
    assert user_count(app) == 0  # nothing usable before the link is followed
    assert not is_logged_in(client)

    link = factories.confirmation_path(mailbox, email)
    response = choose_password(client, link, factories.DEFAULT_PASSWORD)
    assert response.status_code == 302
    assert response.location == "/profile"
    assert user_count(app) == 1
    page = client.get("/profile")
    assert page.status_code == 200
    assert f'value="{email}"' in page.get_data(as_text=True)
    assert "Profile completeness" in client.get("/").get_data(as_text=True)
    # And the new account can log in again from elsewhere.
    assert login(app.test_client(), email, factories.DEFAULT_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("not-an-email", "Enter an e-mail address like"),
        ("two@@example.com", "Enter an e-mail address"),
        ("nodomain@", "Enter an e-mail address"),
        ("x" * 250 + "@example.com", "at most 254"),
        ("", "Enter your e-mail address."),
    ],
)
def test_signup_rejects_a_bad_address_beside_the_field(app, client, mailbox, email, message):
    response = signup(client, email)
    assert response.status_code == 400
    error = field_error(response.get_data(as_text=True), "email")
    assert error is not None and message in error, response.get_data(as_text=True)
    assert user_count(app) == 0
    assert mailbox.received == []


@pytest.mark.parametrize(
    ("password", "confirm", "field", "message"),
    [
        ("elevenchars", None, "password", "Use between 12 and 1024"),
        ("long enough password", "long enough passw0rd", "confirm", "The two passwords differ."),
        ("p" * 1025, None, "password", "Use between 12 and 1024"),
        ("", "", "password", "Choose a password."),
    ],
)
def test_choosing_a_bad_password_is_refused_beside_the_field_and_keeps_the_link(
    app, client, mailbox, password, confirm, field, message
):
    email = factories.unique_email("badpw")
    signup(client, email)
    link = factories.confirmation_path(mailbox, email)
    response = choose_password(client, link, password, confirm)
    assert response.status_code == 400
    error = field_error(response.get_data(as_text=True), field)
    assert error is not None and message in error, response.get_data(as_text=True)
    assert user_count(app) == 0
    assert not is_logged_in(client)
    # The link still works for a good password.
    assert choose_password(client, link, factories.DEFAULT_PASSWORD).status_code == 302
    assert user_count(app) == 1


def test_signup_with_a_taken_address_keeps_the_existing_account(app, client, mailbox):
    existing = factories.customer(app, email=factories.unique_email("Taken"))
    response = signup(client, "  " + existing.email.upper() + " ")
    assert response.status_code == 200
    assert user_count(app) == 1
    assert not is_logged_in(client)
    # The existing account is untouched: its own password still works.
    assert login(app.test_client(), existing.email, existing.password).status_code == 302


def test_signup_while_logged_in_creates_nothing(app, logged_in, mailbox):
    token = factories.csrf_token(logged_in, "/profile")
    response = logged_in.post("/signup", data={"csrf_token": token, "email": "second@example.com"})
    assert response.status_code == 302
    assert user_count(app) == 1
    assert mailbox.received == []


# --- log-in ----------------------------------------------------------------------------------


def _normalised(page: str) -> str:
    page = re.sub(r'name="csrf_token" type="hidden" value="[^"]*"', "", page)
    return re.sub(r'name="email"[^>]*value="[^"]*"', 'name="email"', page)


def test_unknown_email_and_wrong_password_look_the_same(app, customer):
    unknown = login(app.test_client(), "nobody-here@example.com", customer.password)
    wrong = login(app.test_client(), customer.email, "wrong password, long enough")
    assert unknown.status_code == wrong.status_code == 401
    unknown_page, wrong_page = unknown.get_data(as_text=True), wrong.get_data(as_text=True)
    assert LOGIN_FAILED in unknown_page and LOGIN_FAILED in wrong_page
    assert _normalised(unknown_page) == _normalised(wrong_page)
    assert "nobody-here" not in _normalised(unknown_page)


def test_unknown_email_and_wrong_password_take_similar_time(make_app):
    # A realistic argon2 cost, so hashing dominates: skipping the hash for unknown
    # e-mails would make them several times faster than wrong passwords.
    app = make_app(VAULT_ARGON2_TIME_COST=2, VAULT_ARGON2_MEMORY_COST=16384)
    person = factories.customer(app)
    client = app.test_client()

    def attempt(email: str) -> float:
        token = factories.csrf_token(client, "/login")
        started = time.perf_counter()
        response = client.post(
            "/login",
            data={"csrf_token": token, "email": email, "password": "not the password at all"},
        )
        elapsed = time.perf_counter() - started
        assert response.status_code == 401
        return elapsed

    attempt("warm-up@example.com")  # the decoy hash is computed once, on first use
    attempt(person.email)
    unknown, wrong = [], []
    for _ in range(7):
        unknown.append(attempt("nobody@example.com"))
        wrong.append(attempt(person.email))
    # Sanity: hashing really is the dominant cost, so the comparison means something.
    with app.app_context():
        started = time.perf_counter()
        passwords().verify(person.load().password_hash, "not the password at all")
        hash_time = time.perf_counter() - started
    assert hash_time > 0.3 * statistics.median(wrong), (hash_time, wrong)
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.5 < ratio < 2, (unknown, wrong)


def test_login_rotates_the_session(app, customer):
    client = app.test_client()
    before_token = factories.csrf_token(client, "/login")
    with client.session_transaction() as sess:
        sess["planted"] = "by an attacker before login"
    before_cookie = client.get_cookie("vault_session").value

    response = login(client, customer.email, customer.password)
    assert response.status_code == 302

    after_cookie = client.get_cookie("vault_session").value
    assert after_cookie != before_cookie
    with client.session_transaction() as sess:
        assert "planted" not in sess
    assert factories.csrf_token(client, "/profile") != before_token
    # The old token is useless in the new session.
    response = client.post("/profile", data={"csrf_token": before_token, "email": customer.email})
    assert response.status_code == 400


def test_logout_is_post_only_and_ends_the_session(app, logged_in, customer):
    assert logged_in.get("/logout").status_code == 405
    assert is_logged_in(logged_in)

    stolen = logged_in.get_cookie("vault_session").value
    response = factories.post_form(logged_in, "/logout", {}, form_page="/profile")
    assert response.status_code == 302
    assert response.location == "/login"
    assert not is_logged_in(logged_in)

    # A copy of the session cookie taken before logging out no longer works.
    thief = app.test_client()
    thief.set_cookie("vault_session", stolen)
    assert not is_logged_in(thief)


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example",
        "http://evil.example/profile",
        "/\\evil.example",
        "\\\\evil.example",
        "///evil.example",
        "////evil.example/x",
        "/\t/evil.example",
        "/\n/evil.example",
        " //evil.example",
        "javascript:alert(1)",
        "https:evil.example",
    ],
)
def test_next_cannot_redirect_off_site(app, customer, target):
    client = app.test_client()
    response = login(client, customer.email, customer.password, next=target)
    assert response.status_code == 302
    location = response.headers["Location"]
    # Read the target the way a browser does: tabs and newlines dropped, \ is /.
    browser_view = re.sub(r"[\t\n\r]", "", location).replace("\\", "/").lstrip()
    assert browser_view.startswith("/") and not browser_view.startswith("//"), location
    assert "evil" not in location


def test_next_keeps_a_same_site_path(app, customer):
    client = app.test_client()
    response = login(client, customer.email, customer.password, next="/my-data")
    assert response.location == "/my-data"


def test_closed_account_cannot_log_in(app, logged_in, customer):
    response = factories.post_form(
        logged_in, "/account/delete", {"password": customer.password, "confirm": "y"}
    )
    assert response.status_code == 200
    again = login(app.test_client(), customer.email, customer.password)
    assert again.status_code == 401
    assert LOGIN_FAILED in again.get_data(as_text=True)


# --- rate limit ------------------------------------------------------------------------------


def test_login_rate_limit_engages_even_for_correct_credentials(make_app):
    app = make_app(VAULT_LOGIN_RATE_LIMIT="3 per minute")
    person = factories.customer(app)
    client = app.test_client()
    for _ in range(3):
        assert login(client, person.email, "wrong password, long enough").status_code == 401
    response = login(client, person.email, person.password)
    assert response.status_code == 429
    page = response.get_data(as_text=True)
    assert "Too many attempts" in page and "Wait a minute" in page
    assert not is_logged_in(client)
    # Another client from the same address is limited too: the limit is per address.
    assert login(app.test_client(), person.email, person.password).status_code == 429


# --- password change -------------------------------------------------------------------------


def change_password(client: FlaskClient, current: str, new: str, confirm: str | None = None):
    return factories.post_form(
        client,
        "/security",
        {
            "current_password": current,
            "new_password": new,
            "confirm": new if confirm is None else confirm,
        },
    )


def password_is(app: Flask, person: factories.CreatedUser, password: str) -> bool:
    with app.app_context():
        return passwords().verify(person.load().password_hash, password)


@pytest.mark.parametrize(
    ("current", "new", "confirm", "field", "message"),
    [
        ("wrong password, long enough", NEW_PASSWORD, None, "current_password", "not correct"),
        (factories.DEFAULT_PASSWORD, "too short", None, "new_password", "Use between 12"),
        (factories.DEFAULT_PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "!", "confirm", "differ"),
        (factories.DEFAULT_PASSWORD, "n" * 1025, None, "new_password", "Use between 12"),
    ],
)
def test_password_change_refused_changes_nothing(
    app, logged_in, customer, current, new, confirm, field, message
):
    other = app.test_client()
    factories.log_in(other, customer.email, customer.password)
    response = change_password(logged_in, current, new, confirm)
    assert response.status_code == 400
    assert message in (field_error(response.get_data(as_text=True), field) or "")
    assert password_is(app, customer, customer.password)
    assert not password_is(app, customer, new)
    assert is_logged_in(logged_in) and is_logged_in(other)


def test_password_change_logs_out_other_sessions_only(app, logged_in, customer):
    other = app.test_client()
    factories.log_in(other, customer.email, customer.password)
    assert is_logged_in(other)

    response = change_password(logged_in, customer.password, NEW_PASSWORD)
    assert response.status_code == 302
    assert is_logged_in(logged_in)
    assert not is_logged_in(other)
    assert login(app.test_client(), customer.email, customer.password).status_code == 401
    assert login(app.test_client(), customer.email, NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/security", {"current_password": "guess {n} long enough", "new_password": NEW_PASSWORD,
                       "confirm": NEW_PASSWORD}),
        ("/account/delete", {"password": "guess {n} long enough", "confirm": "y"}),
        ("/security/2fa/disable", {"password": "guess {n} long enough"}),
    ],
)  # fmt: skip
def test_password_guessing_from_a_stolen_session_is_rate_limited(make_app, path, data):
    app = make_app(VAULT_LOGIN_RATE_LIMIT="3 per minute")
    person = factories.customer(app)
    client = app.test_client()
    factories.log_in(client, person.email, person.password)
    for n in range(3):
        guess = {key: value.format(n=n) for key, value in data.items()}
        response = factories.post_form(client, path, guess, form_page="/security")
        assert response.status_code == 400
    right = {
        key: value.replace("guess {n} long enough", person.password) for key, value in data.items()
    }
    response = factories.post_form(client, path, right, form_page="/security")
    assert response.status_code == 429
    assert password_is(app, person, person.password)
    with app.app_context():
        assert person.load().is_active
