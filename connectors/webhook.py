"""Webhooks signed per Standard Webhooks (https://www.standardwebhooks.com/).

Each delivery POSTs a JSON object with three headers:

- ``webhook-id``: the caller's id for the event, the same on every attempt, so a receiver
  processes it once;
- ``webhook-timestamp``: the attempt's time in whole seconds since the epoch (receivers
  refuse old ones, which stops replays);
- ``webhook-signature``: ``v1,`` then the base64 HMAC-SHA256, keyed with the endpoint's
  secret, of ``{webhook-id}.{webhook-timestamp}.{body}``.

A secret is ``whsec_`` followed by the base64 of 24 to 64 random bytes (``generate_secret``
makes 32); a business sees it once in its portal and verifies with any Standard Webhooks
library. The URL passes ``connectors.ssrf.check_url`` at every delivery and the request
goes to an address that check accepted (``WebhookConnector`` says what outcomes mean).
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import http.client
import json
import re
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.base import Delivery, Outcome
from connectors.httpclient import post
from connectors.ssrf import Resolver, UnsafeURL, check_url, system_resolver

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
DEFAULT_TIMEOUT = 10.0
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Errors of a connection that never opened: the request did not leave, so the next
# address of the same name may be tried at once (an IPv6 address on an IPv4-only network).
_NOT_CONNECTED = frozenset(
    {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}
)


class WebhookError(ValueError):
    """A webhook that cannot be sent as given (secret, id or payload); safe to log."""


@dataclass(frozen=True)
class Webhook:
    """One event for one endpoint.

    ``id`` is the caller's id for the event (the outbox row's; letters, digits, ``_`` and
    ``-``, at most 128), the same on every attempt. ``payload`` is a JSON object; Standard
    Webhooks suggest ``{"type", "timestamp", "data"}`` (``event_payload`` builds one).
    """

    url: str
    secret: str
    id: str
    payload: Mapping[str, Any]


def generate_secret() -> str:
    """A new endpoint secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key inside ``whsec_<base64>``, or ``WebhookError``."""
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookError("the secret must start with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise WebhookError("the secret is not whsec_ and base64") from None
    if not 24 <= len(key) <= 64:
        raise WebhookError("the secret must hold 24 to 64 bytes")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256>``."""
    content = f"{webhook_id}.{timestamp}.".encode("ascii") + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The body as sent: compact JSON, keys sorted, ASCII only (no encoding to guess)."""
    if not isinstance(payload, Mapping):
        raise WebhookError("the payload must be a JSON object")
    try:
        text = json.dumps(payload, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        raise WebhookError("the payload is not JSON") from None
    return text.encode("ascii")


def event_payload(
    event_type: str, data: Mapping[str, Any], occurred_at: datetime
) -> dict[str, Any]:
    """The payload Standard Webhooks suggest: ``type``, ``timestamp`` (ISO 8601) and ``data``."""
    stamp = occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {"type": event_type, "timestamp": stamp, "data": dict(data)}


def headers(webhook_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


class WebhookConnector:
    """Posts signed webhooks; ``deliver`` never raises for delivery problems.

    The issue asks for a webhook to be "retried until a 2xx", as Standard Webhooks do:

    - ``SENT``: a 2xx answer; ``message_id`` is the webhook's id, ``detail`` ``HTTP 204``...
    - ``TEMPORARY_FAILURE``: every other answer, 3xx and 4xx included (a receiver that
      refuses today may be fixed tomorrow; the outbox's attempt limit ends the retries),
      time-outs, refused or dropped connections, TLS failures, a host name that does not
      resolve or resolves to a refused address now (DNS may change).
    - ``PERMANENT_FAILURE``: what no retry can change: a URL that ``check_url`` refuses
      for itself (not https, credentials in it, a literal private address), a secret, id
      or payload that is not valid.

    ``allow_local`` is ``check_url``'s (development and tests only). ``resolve`` and
    ``clock`` are there for tests; ``ssl_context`` to trust a private CA.
    """

    channel = "webhook"

    def __init__(
        self,
        *,
        allow_local: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        resolve: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.allow_local = allow_local
        self.timeout = timeout
        self._resolve = resolve
        self._ssl_context = ssl_context
        self._clock = clock

    def deliver(self, webhook: Webhook) -> Delivery:
        try:
            if not _ID.fullmatch(webhook.id):
                raise WebhookError("the webhook id must be 1 to 128 letters, digits, _ or -")
            body = encode_payload(webhook.payload)
            timestamp = int(self._clock())
            signature = sign(webhook.secret, webhook.id, timestamp, body)
        except WebhookError as exc:
            return Delivery(Outcome.PERMANENT_FAILURE, str(exc))
        try:
            target = check_url(webhook.url, allow_local=self.allow_local, resolve=self._resolve)
        except UnsafeURL as exc:
            outcome = Outcome.PERMANENT_FAILURE if exc.permanent else Outcome.TEMPORARY_FAILURE
            return Delivery(outcome, f"refused: {exc}")
        request_headers = headers(webhook.id, timestamp, signature)
        for index, address in enumerate(target.addresses):
            try:
                answer = post(
                    target.url,
                    body,
                    request_headers,
                    timeout=self.timeout,
                    connect_to=address,
                    ssl_context=self._ssl_context,
                )
            except ssl.SSLError as exc:
                return Delivery(Outcome.TEMPORARY_FAILURE, f"TLS failed: {exc.reason or 'error'}")
            except OSError as exc:
                if exc.errno in _NOT_CONNECTED and index + 1 < len(target.addresses):
                    continue  # nothing was sent to this address: the next one may answer
                return _connection_failed(exc)
            except http.client.HTTPException as exc:
                return _connection_failed(exc)
            if 200 <= answer.status < 300:
                return Delivery(Outcome.SENT, f"HTTP {answer.status}", message_id=webhook.id)
            return Delivery(Outcome.TEMPORARY_FAILURE, f"HTTP {answer.status}")
        raise AssertionError("check_url returns at least one address")  # pragma: no cover


def _connection_failed(exc: BaseException) -> Delivery:
    return Delivery(Outcome.TEMPORARY_FAILURE, f"connection failed: {type(exc).__name__}")
