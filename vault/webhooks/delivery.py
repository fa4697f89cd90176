"""Delivering queued webhooks: the outbox worker (``vault.messages.worker.Worker``) calls
``WebhookSender.run_batch`` beside its messages.

Per row, in its own commit: **re-authorise** (the customer's account still open, the
business not blocked, a live grant of the customer to it, an endpoint still set; if not the
row is ``dropped`` and nothing is sent), **sign and post** through
``connectors.webhook.WebhookConnector`` (which checks the URL with ``connectors.ssrf`` again
and connects only to an address it accepted; ``webhook-id`` is the row's id, the same on
every attempt), **record**: ``sent`` on a 2xx; any other answer is retried after the
outbox's back-off, up to ``VAULT_WEBHOOK_MAX_ATTEMPTS``, then ``failed``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from connectors.base import Delivery, Outcome
from connectors.webhook import Webhook, WebhookConnector
from vault.accounts.models import User
from vault.consents.models import VendorPreference
from vault.models import utcnow
from vault.oauth.models import Grant
from vault.outbox import backoff, claim_due, release
from vault.webhooks.models import PENDING, Status, WebhookDelivery, WebhookEndpoint
from vault.webhooks.operations import local_endpoints_allowed, reveal_secret

logger = logging.getLogger("vault.webhooks")


def relationship_ended(session: Session, user_id: str, vendor_id: str) -> str | None:
    """Why the business may no longer hear about this customer, or None if it may."""
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        return "account closed"
    preference = session.get(VendorPreference, (user_id, vendor_id))
    if preference is not None and preference.blocked:
        return "business blocked"
    now = utcnow()
    live = session.scalar(
        select(
            exists().where(
                Grant.user_id == user_id,
                Grant.vendor_id == vendor_id,
                Grant.revoked_at.is_(None),
                (Grant.expires_at.is_(None)) | (Grant.expires_at > now),
            )
        )
    )
    return None if live else "no live grant"


class WebhookSender:
    """The webhook half of the outbox worker (its claim, lease and back-off are the
    messages outbox's, ``vault.outbox``)."""

    def __init__(self, app: Flask, *, connector: Any = None) -> None:
        config = app.config
        self.connector = connector or WebhookConnector(
            allow_local=local_endpoints_allowed(config),
            timeout=float(config.get("VAULT_WEBHOOK_TIMEOUT", 10)),
        )
        self.batch = int(config["VAULT_OUTBOX_BATCH"])
        self.lease = timedelta(seconds=int(config["VAULT_OUTBOX_LEASE"]))
        self.max_attempts = int(config.get("VAULT_WEBHOOK_MAX_ATTEMPTS", 10))
        self.base_delay = float(config["VAULT_OUTBOX_BACKOFF"])
        self.max_delay = float(config["VAULT_OUTBOX_MAX_BACKOFF"])
        self.delivered = 0

    def run_batch(self, session: Session, stopping: Any = lambda: False) -> int:
        """Claim one batch of due webhooks and handle it; the number handled."""
        from vault.services import keys

        token, rows = claim_due(
            session, WebhookDelivery, PENDING, batch=self.batch, lease=self.lease
        )
        provider = keys()
        handled = 0
        for index, row in enumerate(rows):
            if stopping():
                release(session, WebhookDelivery, token, [r.id for r in rows[index:]])
                break
            row_id = row.id
            try:
                self._handle(session, provider, token, row)
                session.commit()
            except Exception:
                session.rollback()
                logger.exception("webhooks: delivery %s could not be handled", row_id)
                release(session, WebhookDelivery, token, [row_id])
            handled += 1
        return handled

    def _handle(self, session: Session, provider: Any, token: str, row: WebhookDelivery) -> None:
        ended = relationship_ended(session, row.user_id, row.vendor_id)
        endpoint = session.get(WebhookEndpoint, row.vendor_id)
        if ended is None and endpoint is None:
            ended = "no endpoint"
        if ended is not None:
            self._finish(session, row, token, status=Status.DROPPED.value, last_error=ended)
            logger.info("webhooks: delivery %s dropped (%s)", row.id, ended)
            return
        assert endpoint is not None
        delivery = self.connector.deliver(
            Webhook(endpoint.url, reveal_secret(provider, endpoint), row.id, row.payload)
        )
        self._record(session, row, token, delivery)

    def _record(
        self, session: Session, row: WebhookDelivery, token: str, delivery: Delivery
    ) -> None:
        at = utcnow()
        attempts = row.attempts + 1
        detail = delivery.detail[:200] if delivery.detail else None
        if delivery.ok:
            self._finish(
                session,
                row,
                token,
                status=Status.SENT.value,
                attempts=attempts,
                sent_at=at,
                last_error=None,
            )
            self.delivered += 1
            logger.info("webhooks: delivery %s sent", row.id)
            return
        if delivery.outcome is Outcome.TEMPORARY_FAILURE and attempts < self.max_attempts:
            delay = backoff(attempts, self.base_delay, self.max_delay)
            self._finish(
                session,
                row,
                token,
                attempts=attempts,
                not_before=at + timedelta(seconds=delay),
                last_error=detail,
            )
            logger.info(
                "webhooks: delivery %s attempt %d failed (%s); next in %.0f s",
                row.id,
                attempts,
                detail,
                delay,
            )
            return
        self._finish(
            session, row, token, status=Status.FAILED.value, attempts=attempts, last_error=detail
        )
        logger.warning(
            "webhooks: delivery %s failed after %d attempt(s): %s", row.id, attempts, detail
        )

    def _finish(self, session: Session, row: WebhookDelivery, token: str, **values: Any) -> None:
        """Update a claimed row and end the claim; a row another worker claimed since (the
        lease ran out) is left to that worker."""
        result = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == row.id, WebhookDelivery.claim_token == token)
            .values(**values, claim_token=None, lease_until=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            logger.warning("webhooks: delivery %s was claimed by another worker meanwhile", row.id)
