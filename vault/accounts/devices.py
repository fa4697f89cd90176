"""Trusted devices, so that a stranger's guessing cannot delay the customer's own browser.

After a complete log-in the browser gets a signed cookie (itsdangerous, the app's secret
key) naming the account's blind index and a random device id. When that browser tries a
password or code for the same account again, its attempts count against the device
instead of the account's shared counter (``vault.accounts.throttle``): someone guessing
from elsewhere builds up delays only for browsers without the cookie. This is OWASP's
"device cookie" defence against lock-out; the cookie opens nothing by itself.
"""

from __future__ import annotations

import secrets

from flask import after_this_request, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

COOKIE = "vault_device"
LIFETIME_SECONDS = 180 * 86400


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="vault.trusted-device")


def device_id(email_index: bytes | None) -> str | None:
    """The id of this browser if it logged in to the account with ``email_index`` before."""
    value = request.cookies.get(COOKIE)
    if not value or email_index is None:
        return None
    try:
        payload = _serializer().loads(value, max_age=LIFETIME_SECONDS)
    except BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("a") != email_index.hex():
        return None
    device = payload.get("d")
    return device if isinstance(device, str) else None


def trust_this_device(email_index: bytes | None) -> None:
    """Give the browser of this request a device cookie for the account (on the response)."""
    if email_index is None:
        return
    value = _serializer().dumps({"a": email_index.hex(), "d": secrets.token_urlsafe(16)})

    @after_this_request
    def _set(response: Response) -> Response:
        response.set_cookie(
            COOKIE,
            value,
            max_age=LIFETIME_SECONDS,
            secure=current_app.config["SESSION_COOKIE_SECURE"],
            httponly=True,
            samesite="Lax",
        )
        return response
