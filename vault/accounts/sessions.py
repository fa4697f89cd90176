"""Log-in sessions: begun fresh, ended after inactivity and at an absolute limit.

The session is Flask's signed cookie. It is a browser-session cookie (not "permanent"):
Flask-Login's ``session_protection = "strong"`` only acts on such sessions, so a cookie
replayed from another address or browser is logged out instead of merely marked non-fresh.
How long a log-in lasts is decided here on the server, from two timestamps inside the
signed cookie that the browser cannot change: ``auth_time`` (when the person logged in,
also OIDC's auth_time) against ``VAULT_SESSION_MAX_AGE`` and ``last_seen`` against
``VAULT_SESSION_IDLE_TIMEOUT``. A copied cookie carries the same timestamps, so it expires
with the original.

Every response to a logged-in person, and every page of the account flows, is sent with
``Cache-Control: no-store``: no browser or proxy cache keeps a copy of personal pages.
"""

from __future__ import annotations

import time

from flask import Blueprint, current_app, flash, request, session
from flask_login import login_user, logout_user
from werkzeug.wrappers import Response

from vault.accounts import devices
from vault.accounts.models import User
from vault.logs import audit

# last_seen is rewritten at most this often, so not every request re-signs the cookie.
LAST_SEEN_GRANULARITY = 30
PRIVATE_BLUEPRINTS = frozenset({"accounts"})


def start_session(user: User) -> None:
    """Log ``user`` in on a fresh session (new id and CSRF token: no session fixation)."""
    session.clear()
    login_user(user)
    now = int(time.time())
    session["auth_time"] = now  # OIDC auth_time, prompt=login and max_age
    session["last_seen"] = now
    devices.trust_this_device(user.email_index)


def proved_presence_for(target: str) -> None:
    """Remember that the person has just logged in (or confirmed their password) to go on to
    ``target``: a request that demands a fresh log-in (prompt=login, max_age) is satisfied
    by it once, however long the way back took."""
    session["proved_presence_for"] = target


def presence_just_proved_for(target: str) -> bool:
    """Whether the last log-in was made for ``target``; the mark is used up by asking."""
    return session.pop("proved_presence_for", None) == target


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds >= 3600:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    if seconds % 60 == 0 and seconds >= 60:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} seconds"


def _expiry_reason(idle_timeout: int, max_age: int) -> str | None:
    now = time.time()
    started = session.get("auth_time")
    seen = session.get("last_seen", started)
    if not isinstance(started, int | float) or not isinstance(seen, int | float):
        return "Your session has ended. Log in again to continue."
    if now - started > max_age:
        return f"You were logged out: a session lasts at most {_duration(max_age)}."
    if now - seen > idle_timeout:
        return f"You were logged out after {_duration(idle_timeout)} without activity."
    if now - seen >= LAST_SEEN_GRANULARITY:
        session["last_seen"] = int(now)
    return None


def register(bp: Blueprint) -> None:
    @bp.before_app_request
    def enforce_session_limits() -> None:
        if "_user_id" not in session or request.endpoint == "static":
            return
        reason = _expiry_reason(
            int(current_app.config["VAULT_SESSION_IDLE_TIMEOUT"]),
            int(current_app.config["VAULT_SESSION_MAX_AGE"]),
        )
        if reason:
            # The session's user id without the session token that follows it.
            user_id = str(session.get("_user_id", "")).partition(":")[0]
            audit("session_expired", user_id=user_id)
            logout_user()
            session.clear()
            flash(reason, "info")

    @bp.after_app_request
    def no_store_for_personal_pages(response: Response) -> Response:
        if request.endpoint == "static":
            return response
        # The session's own mark, not current_user: loading the user reads the database,
        # which may be the very trouble this response reports (a 503 must stay a 503).
        if request.blueprint in PRIVATE_BLUEPRINTS or "_user_id" in session:
            response.headers["Cache-Control"] = "no-store"
        return response
