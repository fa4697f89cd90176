"""Logs people can use: one JSON object per line, each with the request id, no personal data.

``init_app`` (called first by the app factory) puts one handler on the root logger that
writes JSON lines to stderr: ``time`` (UTC), ``level``, ``logger``, ``message``,
``request_id`` inside a request, the ``extra`` fields a call passes, and ``exception``
(the traceback) where there is one. Werkzeug's and gunicorn's access lines are replaced by
one ``vault.request`` line per request (method, route *pattern*, endpoint, status,
duration): paths are never logged, since a path may hold a token
(``/signup/confirm/<token>``), nor are query strings, addresses, user agents or bodies.

The request id is the caller's ``X-Request-ID`` when it is a short safe token (a proxy in
front sets one), else a fresh random one; every answer carries it back in ``X-Request-ID``
so a person can quote it.

What never goes into a log line: e-mail addresses, names, any profile value, passwords,
tokens, codes or secrets, client IP addresses (personal data under the GDPR; the rate
limiter and the throttle use them, the logs do not). Pseudonymous ids are fine (user, vendor,
client and grant ids) and so is a *hash* of a throttle subject
(``audit_subject``) to tie failed log-ins to one account without naming it. SQL parameters
are kept out of SQLAlchemy's error messages (``hide_parameters``).

``audit(event, **fields)`` writes one line on the ``vault.audit`` logger per security
event (``AUDIT_EVENTS``). Events that report a change made in a request (a grant revoked, a
sign-up confirmed) are written after that request's commit (``vault.transactions``), so the
log never claims a change that rolled back; the others (a failed log-in, a replay) at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request

audit_log = logging.getLogger("vault.audit")
request_log = logging.getLogger("vault.request")

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_ENVIRON_KEY = "vault.request_id"
_HANDLER_MARK = "_vault_logs"

# Every security event the vault writes, and what it carries (ids and hashes only).
AUDIT_EVENTS = {
    "login_failed": "a wrong password or code (step: password, second_factor, "
    "reauthenticate, password_confirm; subject: audit_subject of the throttle subject, "
    "user_id once the password was right)",
    "guess_delayed": "a password or code guess refused until the delay passes "
    "(scope, subject, retry_after); the vault delays, it never locks",
    "session_expired": "a log-in ended by the idle or absolute limit (user_id)",
    "signup_confirmed": "an account created by following the mailed link (user_id)",
    "email_change_confirmed": "a new login address confirmed by its link (user_id)",
    "password_changed": "(user_id)",
    "second_factor_enabled": "(user_id)",
    "second_factor_disabled": "(user_id)",
    "account_closed": "crypto-shredded by its owner (user_id)",
    "data_exported": "a customer downloaded all their data (user_id)",
    "code_replay": "an authorization code used twice; its tokens are revoked (client_id, grant_id)",
    "refresh_replay": "a spent refresh token used again; the grant ends (client_id, grant_id)",
    "grant_revoked": "a grant ended (grant_id, client_id, user_id, by: customer, "
    "refresh_token_replay, ...)",
    "unsubscribed": "a consent withdrawn by following a message's unsubscribe link, without "
    "log-in (user_id, vendor_id, channel, message_id)",
    "vendor_verified": "an admin gave a vendor the badge (vendor_id)",
    "vendor_unverified": "an admin took the badge away (vendor_id)",
    "master_key_rotated": "data keys re-wrapped under a new master key (key ids, count)",
    "signing_keys_rotated": "new id_token and receipt signing keys (kids)",
    "staff_export": "a staff member exported data (compliance exports, issue 12: no staff "
    "download exists yet; the event name is reserved for it)",
}
# Written after the request's commit: they report a change that must have happened.
_AFTER_COMMIT = frozenset(
    {
        "signup_confirmed",
        "email_change_confirmed",
        "password_changed",
        "second_factor_enabled",
        "second_factor_disabled",
        "account_closed",
        "grant_revoked",
        "unsubscribed",
    }
)

# The attributes every LogRecord has: anything else on a record is an ``extra`` field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


def request_id() -> str | None:
    """This request's id (None outside a request): the caller's if safe, else a new one."""
    if not has_request_context():
        return None
    environ = request.environ
    if _ENVIRON_KEY not in environ:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        environ[_ENVIRON_KEY] = (
            offered if _SAFE_REQUEST_ID.fullmatch(offered) else secrets.token_hex(8)
        )
    return environ[_ENVIRON_KEY]


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key != "request_id" and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _install_record_factory() -> None:
    """Stamp every record with the request id when it is made (not when a handler formats
    it, which may be later or elsewhere: pytest's caplog, a queue)."""
    base = logging.getLogRecordFactory()
    if getattr(base, _HANDLER_MARK, False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        record.request_id = request_id()
        return record

    setattr(make_record, _HANDLER_MARK, True)
    logging.setLogRecordFactory(make_record)


def audit_subject(subject: bytes) -> str:
    """A short hash of a throttle subject (the blind index of an address, or a hash of an
    account and device): repeated failures against one account share it, and it cannot be
    looked up in the database or reversed to the address."""
    return hashlib.sha256(b"vault.audit\x00" + subject).hexdigest()[:16]


def audit(event: str, **fields: Any) -> None:
    """One line on ``vault.audit`` for a security event: ids and hashes only, never a
    name, address, token or secret."""
    if event not in AUDIT_EVENTS:
        raise ValueError(f"unknown audit event {event!r}: add it to vault.logs.AUDIT_EVENTS")
    clash = set(fields) & (_RECORD_ATTRIBUTES | {"event", "request_id"})
    if clash:
        raise ValueError(f"audit fields {sorted(clash)} clash with the log record's own")
    if has_request_context() and event in _AFTER_COMMIT:
        from vault import transactions

        @transactions.after_commit
        def _write(response: Response) -> Response:
            audit_log.info(event, extra={"event": event, **fields})
            return response

        return
    audit_log.info(event, extra={"event": event, **fields})


class _NoAccessLines(logging.Filter):
    """Werkzeug's development server logs each request with the client's address and the
    full path (tokens included); ``vault.request`` says what is useful instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "werkzeug" and " - - [" in str(record.msg))


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr from every logger, once per process (repeated calls, as the
    tests make, replace the handler instead of adding another)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_NoAccessLines())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    logging.getLogger("vault").setLevel(level)
    # Its INFO line about a breached limit names the limit's key: the client's address.
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").addFilter(_NoAccessLines())


def route() -> str:
    """The matched route's pattern (``/signup/confirm/<token>``): what a log line may name
    instead of the path, which may hold a token."""
    rule = request.url_rule
    return rule.rule if rule is not None else "<unmatched>"


def _log_exception(app: Flask, exc_info: Any) -> None:
    """Flask's ``log_exception`` names the path, which may hold a token: the route instead."""
    app.logger.error("unexpected error on %s %s", request.method, route(), exc_info=exc_info)


def init_app(app: Flask) -> None:
    """Configure the logs (unless ``VAULT_LOG_JSON`` is off) and the per-request lines."""
    from flask.logging import default_handler

    _install_record_factory()
    if app.config.get("VAULT_LOG_JSON", True):
        configure(str(app.config.get("VAULT_LOG_LEVEL") or "INFO"))
        logging.getLogger(app.name).removeHandler(default_handler)
    # SQL parameters (ciphertexts, blind indexes, hashes of tokens) stay out of error texts.
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {}).setdefault("hide_parameters", True)
    app.log_exception = lambda exc_info: _log_exception(app, exc_info)  # type: ignore[method-assign]

    @app.before_request
    def _start_clock() -> None:
        g.vault_request_started = time.perf_counter()
        request_id()

    @app.after_request
    def _request_line(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = request_id() or ""
        if request.endpoint != "static":
            started = g.pop("vault_request_started", None)
            request_log.info(
                "%s %s %s",
                request.method,
                route(),
                response.status_code,
                extra={
                    "method": request.method,
                    "route": route(),
                    "endpoint": request.endpoint,
                    "status": response.status_code,
                    "duration_ms": None
                    if started is None
                    else round(1000 * (time.perf_counter() - started), 1),
                },
            )
        return response
