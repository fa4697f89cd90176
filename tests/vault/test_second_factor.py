"""TOTP second factor: enabling, the second log-in step, replay, recovery codes, disabling."""

from __future__ import annotations

import base64
import html
import re
from datetime import UTC, datetime
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from vault.accounts.operations import RECOVERY_CODE_COUNT
from vault.extensions import db


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "VAULT_LOGIN_RATE_LIMIT": "1000 per minute"}


def field_error(page: str, field_id: str) -> str | None:
    match = re.search(rf'<p class="error" id="{re.escape(field_id)}-error">(.*?)</p>', page, re.S)
    return html.unescape(match.group(1)) if match else None


def is_logged_in(client: FlaskClient) -> bool:
    response = client.get("/profile")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def setup_secret(client: FlaskClient) -> tuple[str, str]:
    """Open the 2FA page; return the pending secret (from the session) and a CSRF token."""
    token = factories.csrf_token(client, "/security/2fa")
    with client.session_transaction() as sess:
        secret = sess["totp_setup"]
    return secret, token


def wrong_code(secret: str) -> str:
    totp = pyotp.TOTP(secret)
    step = totp.timecode(datetime.now(UTC))
    window = {totp.generate_otp(step + drift) for drift in (-2, -1, 0, 1, 2)}
    return next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in window)


def enable(client: FlaskClient) -> tuple[pyotp.TOTP, int, list[str]]:
    """Turn 2FA on; returns the TOTP, the step used to enable and the recovery codes."""
    secret, token = setup_secret(client)
    totp = pyotp.TOTP(secret)
    step = totp.timecode(datetime.now(UTC))
    response = client.post(
        "/security/2fa", data={"csrf_token": token, "code": totp.generate_otp(step)}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    codes = re.findall(r"<li><code>([^<]+)</code></li>", response.get_data(as_text=True))
    return totp, step, codes


def first_step(client: FlaskClient, person: factories.CreatedUser) -> None:
    response = factories.post_form(
        client, "/login", {"email": person.email, "password": person.password}
    )
    assert response.status_code == 302
    assert response.location == "/login/verify"


def second_step(client: FlaskClient, code: str) -> Any:
    return factories.post_form(client, "/login/verify", {"code": code})


def totp_columns(app: Flask, user_id: str) -> sa.Row[Any]:
    with app.app_context():
        return db.session.execute(
            sa.text("SELECT totp_secret, totp_enabled FROM users WHERE id = :id"), {"id": user_id}
        ).one()


def test_wrong_code_does_not_enable(app, logged_in, customer):
    secret, token = setup_secret(logged_in)
    response = logged_in.post(
        "/security/2fa", data={"csrf_token": token, "code": wrong_code(secret)}
    )
    assert response.status_code == 400
    assert "does not match" in field_error(response.get_data(as_text=True), "code")
    stored, enabled = totp_columns(app, customer.id)
    assert stored is None and not enabled
    # Logging in still takes one step.
    client = app.test_client()
    factories.log_in(client, customer.email, customer.password)
    assert is_logged_in(client)


def test_enable_shows_recovery_codes_and_stores_the_secret_encrypted(app, logged_in, customer):
    totp, _, codes = enable(logged_in)
    assert len(codes) == RECOVERY_CODE_COUNT == 10
    assert len(set(codes)) == 10
    stored, enabled = totp_columns(app, customer.id)
    assert enabled
    stored = bytes(stored)
    raw_secret = base64.b32decode(totp.secret)
    assert totp.secret.encode() not in stored and raw_secret not in stored
    for code in codes:
        assert code.encode() not in stored
    # The setup secret does not linger in the session once 2FA is on.
    with logged_in.session_transaction() as sess:
        assert "totp_setup" not in sess
    assert is_logged_in(logged_in)


def test_login_requires_the_second_step(app, logged_in, customer):
    totp, step, _ = enable(logged_in)
    client = app.test_client()
    first_step(client, customer)
    # Half-way through, nothing behind the login is reachable.
    assert not is_logged_in(client)
    assert client.get("/my-data/export.json").status_code == 302

    response = second_step(client, wrong_code(totp.secret))
    assert response.status_code == 401
    assert "not valid" in field_error(response.get_data(as_text=True), "code")
    assert not is_logged_in(client)

    response = second_step(client, totp.generate_otp(step + 1))
    assert response.status_code == 302
    assert is_logged_in(client)


def test_replayed_totp_code_is_refused(app, logged_in, customer):
    totp, step, _ = enable(logged_in)
    client = app.test_client()
    first_step(client, customer)
    # The very code used to turn 2FA on was spent there.
    assert second_step(client, totp.generate_otp(step)).status_code == 401
    assert second_step(client, totp.generate_otp(step + 1)).status_code == 302

    thief = app.test_client()
    first_step(thief, customer)
    response = second_step(thief, totp.generate_otp(step + 1))
    assert response.status_code == 401
    assert not is_logged_in(thief)


def test_recovery_code_works_once(app, logged_in, customer):
    _, _, codes = enable(logged_in)
    client = app.test_client()
    first_step(client, customer)
    assert second_step(client, codes[0]).status_code == 302
    assert is_logged_in(client)

    again = app.test_client()
    first_step(again, customer)
    assert second_step(again, codes[0]).status_code == 401
    assert not is_logged_in(again)
    # Typed in capitals and without the dash, an unused code is still accepted.
    assert second_step(again, codes[1].replace("-", "").upper()).status_code == 302
    security = again.get("/security").get_data(as_text=True)
    assert f"You have {RECOVERY_CODE_COUNT - 2} unused recovery codes" in security


def test_pending_second_step_cannot_be_used_for_another_account(app, logged_in, customer):
    enable(logged_in)
    other = factories.customer(app)
    client = app.test_client()
    first_step(client, customer)
    # Logging in as someone else (no 2FA) replaces the pending state, it never mixes.
    factories.log_in(client, other.email, other.password)
    assert client.get("/login/verify").status_code == 302
    page = client.get("/profile").get_data(as_text=True)
    assert f'value="{other.email}"' in page and customer.email not in page


def test_disable_requires_the_password(app, logged_in, customer):
    enable(logged_in)
    response = factories.post_form(
        logged_in,
        "/security/2fa/disable",
        {"password": "not my password at all"},
        form_page="/security",
    )
    assert response.status_code == 400
    assert "not correct" in field_error(response.get_data(as_text=True), "password")
    assert totp_columns(app, customer.id).totp_enabled

    response = factories.post_form(
        logged_in, "/security/2fa/disable", {"password": customer.password}, form_page="/security"
    )
    assert response.status_code == 302
    stored, enabled = totp_columns(app, customer.id)
    assert stored is None and not enabled
    client = app.test_client()
    factories.log_in(client, customer.email, customer.password)
    assert is_logged_in(client)


def test_second_step_is_rate_limited(app_config):
    from vault import create_app

    app = create_app({**app_config, "VAULT_LOGIN_RATE_LIMIT": "3 per minute"})
    try:
        person = factories.customer(app)
        setup = app.test_client()
        factories.log_in(setup, person.email, person.password)
        totp, step, _ = enable(setup)
        client = app.test_client()
        first_step(client, person)  # one of the three /login attempts
        for _ in range(3):
            assert second_step(client, wrong_code(totp.secret)).status_code == 401
        response = second_step(client, totp.generate_otp(step + 1))
        assert response.status_code == 429
        assert not is_logged_in(client)
    finally:
        with app.app_context():
            db.engine.dispose()
