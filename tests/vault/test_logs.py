"""Logs people can use (``vault.logs``): JSON lines with the request id, one audit line per
security event, and no personal data. Records are captured with caplog and formatted by
the vault's own formatter, as its handler on stderr does."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests import factories
from tests.conftest import _app_config
from vault import create_app
from vault.crypto.keyring import Keyring, write_keyring_file
from vault.extensions import db
from vault.logs import JsonFormatter
from vault.vendors.operations import create_vendor

HEX16 = re.compile(r"[0-9a-f]{16}")


# The loopback SMTP server of the tests (aiosmtpd) logs what it receives; it stands in for
# a mail server outside the vault, so its lines are not the vault's.
MAIL_SERVER_LOGGER = "mail.log"


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The vault process's lines, as its handler writes them."""
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name != MAIL_SERVER_LOGGER
    ]


def audit_lines(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [line for line in lines(caplog) if line.get("event") == event]


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "VAULT_LOGIN_RATE_LIMIT": "1000 per minute"}


@pytest.fixture(autouse=True)
def _capture_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


# --- the lines -----------------------------------------------------------------------------


def test_each_line_is_json_with_the_request_id_the_answer_carries(app, client, caplog):
    response = client.get("/login")
    request_id = response.headers["X-Request-ID"]
    assert HEX16.fullmatch(request_id)
    [line] = [line for line in lines(caplog) if line["logger"] == "vault.request"]
    assert {"time", "level", "logger", "message"} <= set(line)
    assert line["request_id"] == request_id
    assert line["method"] == "GET" and line["route"] == "/login" and line["status"] == 200
    assert line["endpoint"] == "accounts.login" and line["duration_ms"] >= 0
    # The process writes these lines to stderr through one JSON handler.
    handlers = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]
    assert len(handlers) == 1


def test_routes_are_logged_never_paths_that_may_hold_a_token(app, client, caplog):
    response = client.get("/signup/confirm/secret-token-in-the-path")
    assert response.status_code == 404
    text = "\n".join(json.dumps(line) for line in lines(caplog))
    assert "secret-token-in-the-path" not in text
    assert "/signup/confirm/<token>" in text


@pytest.mark.parametrize(
    ("offered", "kept"),
    [
        ("abc123-DEF_456.789", True),
        ("short", False),
        ("x" * 65, False),
        ("has space in it", False),
        ("person@example.com", False),
        ("<script>alert(1)</script>", False),
    ],
)
def test_an_incoming_request_id_is_kept_only_when_it_is_a_short_safe_token(
    app, client, caplog, offered, kept
):
    response = client.get("/login", headers={"X-Request-ID": offered})
    answered = response.headers["X-Request-ID"]
    assert (answered == offered) is kept
    if not kept:
        assert HEX16.fullmatch(answered)
    [line] = [line for line in lines(caplog) if line["logger"] == "vault.request"]
    assert line["request_id"] == answered


def test_an_unexpected_error_is_logged_by_route_with_the_request_id(app_config, caplog, tmp_path):
    app = create_app({**app_config, "PROPAGATE_EXCEPTIONS": False})

    def boom(token: str) -> str:
        raise RuntimeError("something broke")

    app.add_url_rule("/_t/boom/<token>", "t_boom", boom)
    response = app.test_client().get("/_t/boom/a-secret-token-value")
    assert response.status_code == 500
    assert "something broke" not in response.get_data(as_text=True)
    [line] = [line for line in lines(caplog) if line["level"] == "ERROR"]
    assert line["message"] == "unexpected error on GET /_t/boom/<token>"
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert "RuntimeError: something broke" in line["exception"]
    assert "a-secret-token-value" not in json.dumps(lines(caplog))
    with app.app_context():
        db.engine.dispose()


# --- audit lines of the web pages ------------------------------------------------------------


def test_signup_confirmation_is_audited_once_after_the_commit(app, client, mailbox, caplog):
    email = factories.unique_email("audited")
    response = factories.sign_up(client, mailbox, email)
    [line] = audit_lines(caplog, "signup_confirmed")
    assert line["logger"] == "vault.audit"
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["user_id"]
    assert email not in json.dumps(lines(caplog))


def test_failed_logins_and_the_delay_are_audited_without_the_address(app_config, customer, caplog):
    app = create_app({**app_config, "VAULT_GUESS_FREE_ATTEMPTS": 1, "VAULT_GUESS_DELAY": 60})
    client = app.test_client()
    wrong = {"email": customer.email, "password": "not the password at all"}
    first = factories.post_form(client, "/login", wrong)
    assert first.status_code == 401
    second = factories.post_form(client, "/login", wrong)
    assert second.status_code == 429

    [failed] = audit_lines(caplog, "login_failed")
    assert failed["request_id"] == first.headers["X-Request-ID"]
    assert failed["step"] == "password" and HEX16.fullmatch(failed["subject"])
    assert "user_id" not in failed  # a wrong password names no account
    [delayed] = audit_lines(caplog, "guess_delayed")
    assert delayed["request_id"] == second.headers["X-Request-ID"]
    assert delayed["subject"] == failed["subject"]  # the same account, unnamed
    assert delayed["retry_after"] > 0
    text = json.dumps(lines(caplog))
    assert customer.email not in text and customer.email.split("@")[0] not in text
    with app.app_context():
        db.engine.dispose()


def test_an_unknown_address_gets_the_same_kind_of_line(app, client, caplog):
    factories.post_form(client, "/login", {"email": "nobody@example.com", "password": "x" * 12})
    [failed] = audit_lines(caplog, "login_failed")
    assert HEX16.fullmatch(failed["subject"]) and "user_id" not in failed


def test_a_login_that_works_writes_no_failure(app, client, customer, caplog):
    factories.log_in(client, customer.email, customer.password)
    assert audit_lines(caplog, "login_failed") == []


def test_an_expired_session_is_audited(app, logged_in, customer, caplog):
    with logged_in.session_transaction() as sess:
        sess["last_seen"] = int(time.time()) - 10 * 24 * 3600
    response = logged_in.get("/profile")
    assert response.status_code == 302
    [line] = audit_lines(caplog, "session_expired")
    assert line["user_id"] == customer.id
    assert line["request_id"] == response.headers["X-Request-ID"]


def test_password_change_and_a_refused_one_are_audited(app, logged_in, customer, caplog):
    new = "a brand new long passphrase"
    refused = factories.post_form(
        logged_in,
        "/security",
        {"current_password": "wrong password here", "new_password": new, "confirm": new},
    )
    assert refused.status_code == 400
    [failed] = audit_lines(caplog, "login_failed")
    assert failed["step"] == "password_confirm" and failed["user_id"] == customer.id
    assert audit_lines(caplog, "password_changed") == []  # rolled back: no line
    changed = factories.post_form(
        logged_in,
        "/security",
        {"current_password": customer.password, "new_password": new, "confirm": new},
    )
    assert changed.status_code == 302
    [line] = audit_lines(caplog, "password_changed")
    assert line["user_id"] == customer.id
    assert line["request_id"] == changed.headers["X-Request-ID"]


def test_an_email_change_confirmed_is_audited(app, logged_in, customer, mailbox, caplog):
    from tests.vault.accounts.test_email_change import change_email

    new_email = factories.unique_email("moved")
    assert change_email(logged_in, app, customer, new_email).status_code == 302
    link = factories.confirmation_path(mailbox, new_email)
    response = factories.post_form(logged_in, link, {})
    assert response.status_code == 302
    [line] = audit_lines(caplog, "email_change_confirmed")
    assert line["user_id"] == customer.id
    assert line["request_id"] == response.headers["X-Request-ID"]
    text = json.dumps(lines(caplog))
    assert new_email not in text and customer.email not in text


def test_a_customer_data_download_is_audited(app, logged_in, customer, caplog):
    response = logged_in.get("/my-data/export.json")
    assert response.status_code == 200
    [line] = audit_lines(caplog, "data_exported")
    assert line["user_id"] == customer.id


# --- audit lines of operator commands ---------------------------------------------------------


def test_vendor_verification_is_audited(app, caplog):
    with app.app_context():
        vendor_id = create_vendor(db.session, "Audited Shop").id
        db.session.commit()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["vendors", "verify", vendor_id, "--yes"]).exit_code == 0
    assert runner.invoke(args=["vendors", "unverify", vendor_id]).exit_code == 0
    [verified] = audit_lines(caplog, "vendor_verified")
    [unverified] = audit_lines(caplog, "vendor_unverified")
    assert verified["vendor_id"] == unverified["vendor_id"] == vendor_id
    assert "request_id" not in verified  # a command, not a request


def test_key_rotations_are_audited(database, keyring_text, mailbox, tmp_path: Path, caplog):
    key_file = tmp_path / "keyring.json"
    write_keyring_file(key_file, Keyring.parse(keyring_text))
    app = create_app(
        _app_config(
            database, keyring_text, VAULT_MASTER_KEY=None, VAULT_MASTER_KEY_FILE=str(key_file)
        )
    )
    runner = app.test_cli_runner()
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    assert runner.invoke(args=["keys", "rotate-signing"]).exit_code == 0
    [master] = audit_lines(caplog, "master_key_rotated")
    [signing] = audit_lines(caplog, "signing_keys_rotated")
    assert master["current"] and master["retired"]
    assert len(signing["current"]) == 2
    with app.app_context():
        db.engine.dispose()


def test_an_unknown_audit_event_is_a_programming_error():
    from vault.logs import audit

    with pytest.raises(ValueError, match="unknown audit event"):
        audit("something_new")
    with pytest.raises(ValueError, match="clash"):
        audit("login_failed", message="x")


def _app_with(app_config: dict[str, Any], **overrides: Any) -> Flask:
    return create_app({**app_config, **overrides})
