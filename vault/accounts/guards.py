"""Guessing limits at the views: which counter a guess goes to, and the 429 page.

The counting is ``vault.accounts.throttle``, in a transaction of its own connection, apart
from the request's (``vault.transactions``): a claim commits at once, so a wrong guess stays
counted when the request rolls back; a right guess forgets the failures only after the
request's own commit (and after it released SQLite's write lock). This decides the subject
and writes the audit lines (``login_failed``, ``guess_delayed``). Passwords count per
account, keyed by the blind index of the address typed (an unknown address is delayed
exactly like a known one, so the delays reveal nothing), second-factor codes per account;
either per trusted device instead when the browser carries its device cookie
(``vault.accounts.devices``). The per-address limits of Flask-Limiter stay in front.
"""

from __future__ import annotations

from flask import current_app
from flask_login import current_user
from werkzeug.wrappers import Response

from vault import transactions
from vault.accounts import devices, throttle
from vault.accounts.models import User
from vault.extensions import db
from vault.logs import audit, audit_subject
from vault.models import utcnow

Subject = tuple[str, bytes]


def claim(subject: Subject) -> throttle.TooManyGuesses | None:
    """Claim one guess: None if it may go ahead, else how long to wait."""
    policy = throttle.GuessPolicy.from_config(current_app.config)
    try:
        with db.engine.begin() as connection:
            throttle.claim(connection, policy, *subject, utcnow())
    except throttle.TooManyGuesses as exc:
        scope, key = subject
        audit("guess_delayed", scope=scope, subject=audit_subject(key), retry_after=exc.retry_after)
        return exc
    return None


def guessed_wrong(subject: Subject, step: str, user_id: str | None = None) -> None:
    """A wrong password or code: counted already by ``claim``; this writes the audit line
    (the account only as a hash of its subject, unless the password was right already)."""
    scope, key = subject
    fields = {"step": step, "scope": scope, "subject": audit_subject(key)}
    audit("login_failed", **fields, **({"user_id": user_id} if user_id else {}))


def guessed_right(subject: Subject) -> None:
    """A right guess forgets the subject's failures, once the request committed."""

    @transactions.after_commit
    def _forget(response: Response) -> Response:
        with db.engine.begin() as connection:
            throttle.forget(connection, *subject)
        return response


def password_subject(email_index: bytes) -> Subject:
    device = devices.device_id(email_index)
    if device:
        return throttle.DEVICE_PASSWORD, throttle.subject_of("device", email_index, device)
    return throttle.PASSWORD, email_index


def own_password_subject() -> Subject:
    """The logged-in person's password checks (password change, 2FA off, deletion)."""
    return password_subject(current_user.email_index or throttle.subject_of("u", current_user.id))


def second_factor_subject(user: User) -> Subject:
    device = devices.device_id(user.email_index)
    if device:
        return throttle.DEVICE_SECOND_FACTOR, throttle.subject_of("device", user.id, device)
    return throttle.SECOND_FACTOR, throttle.subject_of("user", user.id)


def too_many(body: str, wait: throttle.TooManyGuesses) -> Response:
    response = current_app.make_response((body, 429))
    response.headers["Retry-After"] = str(wait.retry_after)
    return response
