"""Guessing limits at the views: which counter a guess goes to, and the 429 page.

The counting is ``vault.accounts.throttle``; this decides the subject. Passwords count per
account, keyed by the blind index of the address typed (an unknown address is delayed
exactly like a known one, so the delays reveal nothing), second-factor codes per account;
either per trusted device instead when the browser carries its device cookie
(``vault.accounts.devices``). The per-address limits of Flask-Limiter stay in front.
"""

from __future__ import annotations

from flask import current_app
from flask_login import current_user
from werkzeug.wrappers import Response

from vault.accounts import devices, throttle
from vault.accounts.models import User
from vault.extensions import db
from vault.models import utcnow

Subject = tuple[str, bytes]


def claim(subject: Subject) -> throttle.TooManyGuesses | None:
    """Claim one guess: None if it may go ahead, else how long to wait."""
    policy = throttle.GuessPolicy.from_config(current_app.config)
    try:
        with db.engine.begin() as connection:
            throttle.claim(connection, policy, *subject, utcnow())
    except throttle.TooManyGuesses as exc:
        return exc
    return None


def guessed_right(subject: Subject) -> None:
    with db.engine.begin() as connection:
        throttle.forget(connection, *subject)


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
