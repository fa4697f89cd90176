"""Signed per-message unsubscribe tokens.

A token names exactly one consent, the one a message was sent under: the customer, the
business, the channel and the topic, plus the message it came in (for the record). It is
signed with the app's secret key (itsdangerous, HMAC-SHA256, its own salt), so following it
needs no log-in and an altered token is refused. It does not expire: RFC 8058 asks that a
one-click unsubscribe keep working long after the message arrived. Rotating ``SECRET_KEY``
ends every link already sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

SALT = "vault.unsubscribe"


@dataclass(frozen=True)
class UnsubscribeTarget:
    message_id: str
    user_id: str  # the vault's ids are UUID strings (vault.models.new_id)
    vendor_id: str
    channel: str  # one of consent.engine.CHANNELS
    topic: str  # the topic's name, as the vendor declared it (what the messages API takes)


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(
        current_app.config["SECRET_KEY"],
        salt=SALT,
        signer_kwargs={"digest_method": hashlib.sha256},
    )


def make_token(target: UnsubscribeTarget) -> str:
    return _serializer().dumps(
        [target.message_id, target.user_id, target.vendor_id, target.channel, target.topic]
    )


def read_token(token: str) -> UnsubscribeTarget | None:
    """The consent a token names, or None for anything altered, truncated or made up."""
    try:
        fields: Any = _serializer().loads(token)
    except BadSignature:
        return None
    if not (isinstance(fields, list) and len(fields) == 5):
        return None
    message_id, user_id, vendor_id, channel, topic = fields
    if not (
        isinstance(message_id, str)
        and isinstance(user_id, str)
        and isinstance(vendor_id, str)
        and isinstance(channel, str)
        and isinstance(topic, str)
    ):
        return None
    return UnsubscribeTarget(message_id, user_id, vendor_id, channel, topic)
