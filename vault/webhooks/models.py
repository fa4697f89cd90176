"""A business's webhook endpoint and the webhook deliveries queued for it."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.models import Base, UTCDateTime, utcnow


class Status(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"  # out of attempts, or what no retry can change
    DROPPED = "dropped"  # the relationship ended before delivery: never sent


PENDING = (Status.QUEUED.value,)


def new_delivery_id() -> str:
    """The ``webhook-id``: letters, digits, ``_`` and ``-`` (Standard Webhooks' ids)."""
    return "whd_" + secrets.token_urlsafe(18)


def secret_owner(vendor_id: str) -> str:
    """What the wrapped signing secret is bound to (the keyring's owner id)."""
    return f"webhook:{vendor_id}"


class WebhookEndpoint(Base):
    """One endpoint per business. The signing secret must be usable to sign, so it cannot
    be hashed: its key bytes are wrapped by the keyring's master key, like a customer's data
    key, bound to the business (``secret_owner``), and re-wrapped by master-key rotation."""

    __tablename__ = "webhook_endpoints"

    vendor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("vendors.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    master_key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One consent change for one business, queued with its ledger event. The payload holds
    the customer's pairwise sub for the business, never profile data or an address."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "not_before"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_delivery_id)
    vendor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("vendors.id", ondelete="CASCADE"), index=True
    )
    # Whose change it was: the worker re-authorises against the relationship at delivery.
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    ledger_seq: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default=Status.QUEUED.value)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    claim_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
