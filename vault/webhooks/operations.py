"""Webhook endpoints (set, rotate, remove) and queueing consent-change webhooks.

``enqueue`` runs inside the transaction that appends the ledger event (the consent
operations call it), so a delivery row exists exactly when its consent change committed.
"""

from __future__ import annotations

import base64
import logging
from datetime import datetime
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.ssrf import UnsafeURL, check_url, system_resolver
from connectors.webhook import SECRET_PREFIX, event_payload, generate_secret, secret_key
from vault.crypto.keyring import KeyProvider, WrappedKey
from vault.errors import VaultError
from vault.models import utcnow
from vault.oauth.operations import remember_subject
from vault.webhooks.models import WebhookDelivery, WebhookEndpoint, secret_owner

logger = logging.getLogger("vault.webhooks")

# Ledger events that concern a business but change no consent: no webhook.
NOT_CONSENT_CHANGES = frozenset({"consent_request_declined"})


class WebhookURLError(VaultError, ValueError):
    """An endpoint URL the vault will not post to; the message says why."""

    status = 400
    code = "webhook-url-refused"
    title = "Webhook URL refused"


def local_endpoints_allowed(config: Any = None) -> bool:
    """http and loopback or private addresses: development and testing only."""
    if config is None:
        if not has_app_context():
            return False
        config = current_app.config
    return config.get("VAULT_ENV") in ("development", "testing")


def check_endpoint_url(url: str, *, allow_local: bool, resolve: Any = system_resolver) -> str:
    """The URL as saved, or ``WebhookURLError``. The name is resolved now too, so a name
    that answers only private addresses is refused in production; delivery checks again
    (DNS may change)."""
    url = url.strip()
    try:
        check_url(url, allow_local=allow_local, resolve=resolve)
    except UnsafeURL as exc:
        raise WebhookURLError(f"This URL cannot receive webhooks: {exc}.") from None
    return url


def _wrap(keys: KeyProvider, vendor_id: str, secret: str) -> WrappedKey:
    return keys.wrap(secret_owner(vendor_id), secret_key(secret))


def reveal_secret(keys: KeyProvider, endpoint: WebhookEndpoint) -> str:
    """The endpoint's ``whsec_`` secret, unwrapped (for signing, and for the portal)."""
    raw = keys.unwrap(
        secret_owner(endpoint.vendor_id), WrappedKey(endpoint.master_key_id, endpoint.wrapped_key)
    )
    return SECRET_PREFIX + base64.b64encode(raw).decode("ascii")


def set_endpoint(
    session: Session, keys: KeyProvider, vendor_id: str, url: str, *, allow_local: bool
) -> WebhookEndpoint:
    """Save the business's endpoint URL; a new endpoint gets a new secret, a changed URL
    keeps its secret (the business rotates it when it wants)."""
    url = check_endpoint_url(url, allow_local=allow_local)
    endpoint = session.get(WebhookEndpoint, vendor_id)
    if endpoint is None:
        wrapped = _wrap(keys, vendor_id, generate_secret())
        endpoint = WebhookEndpoint(
            vendor_id=vendor_id,
            url=url,
            master_key_id=wrapped.master_key_id,
            wrapped_key=wrapped.blob,
        )
        session.add(endpoint)
    else:
        endpoint.url = url
        endpoint.updated_at = utcnow()
    session.flush()
    return endpoint


def rotate_secret(session: Session, keys: KeyProvider, vendor_id: str) -> WebhookEndpoint | None:
    """A new secret at once: webhooks still queued are signed with it when sent."""
    endpoint = session.get(WebhookEndpoint, vendor_id)
    if endpoint is None:
        return None
    wrapped = _wrap(keys, vendor_id, generate_secret())
    endpoint.master_key_id, endpoint.wrapped_key = wrapped.master_key_id, wrapped.blob
    endpoint.updated_at = utcnow()
    session.flush()
    return endpoint


def remove_endpoint(session: Session, vendor_id: str) -> bool:
    """No endpoint, no webhooks: those still queued are dropped at delivery."""
    endpoint = session.get(WebhookEndpoint, vendor_id)
    if endpoint is None:
        return False
    session.delete(endpoint)
    session.flush()
    return True


_HAS_ENDPOINT = select(WebhookEndpoint.vendor_id)


def enqueue(
    session: Session,
    keys: KeyProvider,
    *,
    user_id: str,
    vendor_id: str,
    seq: int,
    event_type: str,
    channel: str | None,
    topic: str | None,
    new_state: Any,
    at: datetime | None = None,
) -> WebhookDelivery | None:
    """Queue the webhook of one ledger event, if the business has an endpoint. The payload
    names the customer only by their pairwise sub for this business (remembered, so the
    business's consent API resolves it) and carries no profile data."""
    if event_type in NOT_CONSENT_CHANGES:
        return None
    if session.scalar(_HAS_ENDPOINT.where(WebhookEndpoint.vendor_id == vendor_id)) is None:
        return None
    at = at or utcnow()
    sub = remember_subject(session, keys, vendor_id, user_id)
    data = {
        "sub": sub,
        "event": event_type,
        "channel": channel,
        "topic": topic,
        "state": new_state,
        "seq": seq,
    }
    delivery = WebhookDelivery(
        vendor_id=vendor_id,
        user_id=user_id,
        ledger_seq=seq,
        event_type=event_type,
        payload=event_payload(f"consent.{event_type}", data, at),
        not_before=at,
    )
    session.add(delivery)
    session.flush()
    return delivery
