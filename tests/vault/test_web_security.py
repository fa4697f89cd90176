"""CSRF on every form, security headers, cookie flags and least privilege for staff."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests import factories
from vault.accounts.models import AccountStatus, Role, User
from vault.extensions import db
from vault.profile.operations import load_profile
from vault.services import keys, passwords

NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "VAULT_LOGIN_RATE_LIMIT": "1000 per minute"}


def is_logged_in(client: FlaskClient) -> bool:
    response = client.get("/security")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def state(app: Flask, person: factories.CreatedUser) -> dict[str, Any]:
    """Everything a forged POST could change about one account."""
    with app.app_context():
        user = person.load()
        return {
            "users": db.session.scalar(select(func.count()).select_from(User)),
            "status": user.status,
            "password_hash": user.password_hash,
            "session_token": user.session_token,
            "totp_enabled": user.totp_enabled,
            "totp_secret": user.totp_secret,
            "profile": load_profile(db.session, keys(), person.id),
        }


def enable_2fa(client: FlaskClient) -> pyotp.TOTP:
    token = factories.csrf_token(client, "/security/2fa")
    with client.session_transaction() as sess:
        totp = pyotp.TOTP(sess["totp_setup"])
    response = client.post("/security/2fa", data={"csrf_token": token, "code": totp.now()})
    assert response.status_code == 200
    return totp


def _next_code(totp: pyotp.TOTP) -> str:
    return totp.generate_otp(totp.timecode(datetime.now(UTC)) + 1)


FORGED_POSTS = {
    "/signup": {"email": "forged@example.com", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    "/logout": {},
    "/profile": {"email": "forged@example.com", "given_name": "Forged"},
    "/security": {
        "current_password": factories.DEFAULT_PASSWORD,
        "new_password": NEW_PASSWORD,
        "confirm": NEW_PASSWORD,
    },
    "/security/2fa": {"code": "123456"},
    "/security/2fa/disable": {"password": factories.DEFAULT_PASSWORD},
    "/account/delete": {"password": factories.DEFAULT_PASSWORD, "confirm": "y"},
}


@pytest.mark.parametrize("path", list(FORGED_POSTS))
@pytest.mark.parametrize("token", ["none", "empty", "other-session", "garbage"])
def test_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(app, customer, path, token):
    client = app.test_client()
    if path != "/signup":
        factories.log_in(client, customer.email, customer.password)
    if path == "/security/2fa/disable":
        enable_2fa(client)
    if path == "/security/2fa":
        client.get("/security/2fa")
    data = dict(FORGED_POSTS[path])
    if token == "empty":
        data["csrf_token"] = ""
    elif token == "garbage":
        data["csrf_token"] = "IjEyMyI.aaaa.bbbb"
    elif token == "other-session":
        data["csrf_token"] = factories.csrf_token(app.test_client(), "/login")
    before = state(app, customer)
    was_logged_in = is_logged_in(client)

    response = client.post(path, data=data)

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "nothing was changed" in page
    assert state(app, customer) == before
    assert is_logged_in(client) == was_logged_in


@pytest.mark.parametrize("path", ["/login", "/login/verify"])
def test_login_steps_without_csrf_token_do_not_log_in(app, customer, path):
    if path == "/login/verify":
        setup = app.test_client()
        factories.log_in(setup, customer.email, customer.password)
        totp = enable_2fa(setup)
    client = app.test_client()
    if path == "/login":
        data = {"email": customer.email, "password": customer.password}
    else:
        factories.log_in(client, customer.email, customer.password)  # first step only
        data = {"code": _next_code(totp)}
    response = client.post(path, data=data)
    assert response.status_code == 400
    assert "nothing was changed" in response.get_data(as_text=True)
    assert not is_logged_in(client)


def test_csrf_token_from_another_users_session_is_refused(app, customer):
    victim = app.test_client()
    factories.log_in(victim, customer.email, customer.password)
    attacker_person = factories.customer(app)
    attacker = app.test_client()
    factories.log_in(attacker, attacker_person.email, attacker_person.password)
    stolen = factories.csrf_token(attacker, "/profile")
    before = state(app, customer)
    response = victim.post(
        "/profile", data={"csrf_token": stolen, "email": customer.email, "given_name": "Mallory"}
    )
    assert response.status_code == 400
    assert state(app, customer) == before


# --- headers and cookies ---------------------------------------------------------------------


def _csp(response: Any) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    directives = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            directives[name] = value
    return directives


@pytest.mark.parametrize("path", ["/", "/login", "/signup", "/no-such-page"])
def test_security_headers_on_public_pages(client, path):
    response = client.get(path)
    csp = _csp(response)
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response.headers["Content-Security-Policy"]
    assert csp["frame-ancestors"] == "'none'"
    assert csp["default-src"] == "'self'"
    assert csp["object-src"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] in {"same-origin", "no-referrer", "strict-origin"}
    assert "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize("path", ["/profile", "/security", "/my-data/export.json"])
def test_security_headers_on_private_pages(logged_in, path):
    response = logged_in.get(path)
    assert response.status_code == 200
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_hsts_only_over_https(app):
    response = app.test_client().get("/login", base_url="https://localhost")
    hsts = response.headers["Strict-Transport-Security"]
    max_age = int(hsts.split("max-age=")[1].split(";")[0])
    assert max_age >= 180 * 24 * 3600
    assert "Strict-Transport-Security" not in app.test_client().get("/login").headers


def test_session_cookie_flags(app):
    response = app.test_client().get("/login", base_url="https://localhost")
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("vault_session=")]
    assert len(cookies) == 1
    flags = {part.strip().split("=")[0].lower(): part for part in cookies[0].split(";")}
    assert "secure" in flags
    assert "httponly" in flags
    assert flags["samesite"].split("=")[1].strip() in {"Lax", "Strict"}


def test_session_cookie_flags_after_login(app, customer):
    client = app.test_client()
    token = factories.csrf_token(client, "/login")
    response = client.post(
        "/login",
        data={"csrf_token": token, "email": customer.email, "password": customer.password},
    )
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if "vault_session=" in c)
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_oversized_request_is_refused(client):
    response = client.post("/login", data={"email": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413


# --- least privilege -------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.ADMIN, Role.COMPLIANCE])
def test_staff_cannot_reach_customer_pages(app, customer, role):
    staff = factories.customer(app, role=role)
    client = app.test_client()
    factories.log_in(client, staff.email, staff.password)
    for path in ("/profile", "/my-data", "/my-data/export.json"):
        response = client.get(path)
        assert response.status_code == 403, path
        page = response.get_data(as_text=True)
        assert "customers only" in page
        assert customer.email not in page and staff.email not in page
    dashboard = client.get("/").get_data(as_text=True)
    assert "Staff never see profile contents" in dashboard
    assert "Profile completeness" not in dashboard


@pytest.mark.parametrize(
    "path", ["/profile", "/my-data", "/my-data/export.json", "/security", "/security/2fa",
             "/account/delete"],
)  # fmt: skip
def test_anonymous_users_are_sent_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.location.startswith("/login")


def test_anonymous_post_to_private_forms_changes_nothing(app, customer):
    client = app.test_client()
    token = factories.csrf_token(client, "/login")
    before = state(app, customer)
    for path in ("/profile", "/security", "/account/delete", "/security/2fa/disable"):
        response = client.post(path, data={"csrf_token": token, **FORGED_POSTS[path]})
        assert response.status_code == 302, path
        assert response.location.startswith("/login")
    assert state(app, customer) == before


def test_forged_session_cookie_is_not_a_login(app, customer):
    """A cookie signed with another key (or edited by hand) gets nobody in."""
    from flask.sessions import SecureCookieSessionInterface

    other = Flask("forger")
    other.secret_key = "a different secret key, not the vault's at all"
    serializer = SecureCookieSessionInterface().get_signing_serializer(other)
    with app.app_context():
        session_token = customer.load().session_token
    forged = serializer.dumps({"_user_id": f"{customer.id}:{session_token}", "_fresh": True})
    client = app.test_client()
    client.set_cookie("vault_session", forged)
    assert not is_logged_in(client)


def test_deleted_account_session_ends(app, logged_in, customer):
    other = app.test_client()
    factories.log_in(other, customer.email, customer.password)
    response = factories.post_form(
        logged_in, "/account/delete", {"password": customer.password, "confirm": "y"}
    )
    assert response.status_code == 200
    assert not is_logged_in(logged_in) and not is_logged_in(other)
    with app.app_context():
        user = customer.load()
        assert user.status == AccountStatus.CLOSED
        assert not passwords().verify(user.password_hash, customer.password)
