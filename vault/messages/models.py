"""The outbox (one row per message a business asked the vault to deliver) and the contact
log (what happened to each contact, appended, never changed)."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vault.models import Base, UTCDateTime, utcnow


class Status(enum.StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    SENT = "sent"
    FAILED = "failed"
    BLOCKED = "blocked"


# Rows the worker may still deliver.
PENDING = (Status.QUEUED.value, Status.DEFERRED.value)


def new_message_id() -> str:
    """A public id that says nothing about the vault's size or order (and is RFC 5322
    dot-atom text, so it is the e-mail's Message-ID as it is)."""
    return "msg_" + secrets.token_urlsafe(18)


class Message(Base):
    """One message of a business to one customer, with the decision it was accepted on.

    The subject and body are personal data: encrypted under the customer's data key (bound
    to this message's id), so erasing the customer (crypto-shredding) makes them unreadable
    too. The address is never stored here: the worker reads it from the profile at send
    time.
    """

    __tablename__ = "messages"
    __table_args__ = (
        # The same key never makes a second message (concurrent requests included). The key
        # leads: an index led by vendor_id would tempt the planner to walk a whole business
        # for one customer's frequency caps (tests/vault/consents/test_snapshot_by_customer).
        UniqueConstraint("idempotency_key", "vendor_id", name="uq_messages_vendor_key"),
        # What the worker claims: due rows of a pending status.
        Index("ix_messages_due", "status", "not_before"),
        # What frequency caps count: delivered messages per customer, business and channel.
        Index("ix_messages_sent", "user_id", "vendor_id", "channel", "sent_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_message_id)
    vendor_id: Mapped[str] = mapped_column(String(36), ForeignKey("vendors.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(64))  # the OAuth client that asked
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(10))
    topic: Mapped[str] = mapped_column(String(64))  # the vendor's topic name
    subject_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    body_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(10))
    # Not delivered before this instant: now, a quiet hours' end, or a retry's back-off.
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    # The decision the message was accepted (or refused) on, and the ledger it saw.
    decision: Mapped[str] = mapped_column(String(10))  # allow | defer | deny
    rule: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(500))
    ledger_seq: Mapped[int] = mapped_column(Integer)
    ledger_hash: Mapped[str] = mapped_column(String(64))
    # The first answer's not_before for a deferred message, so a repeat answers the same.
    deferred_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of the request
    # A worker's claim: the row is its own until lease_until (then anyone's again).
    claim_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    provider_id: Mapped[str | None] = mapped_column(String(255))  # the channel's message id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Event(enum.StrEnum):
    """What a contact-log row records."""

    ACCEPTED = "accepted"  # queued on an allow
    DEFERRED = "deferred"  # queued, or put back, until quiet hours end
    DENIED = "denied"  # refused when asked
    BLOCKED = "blocked"  # refused at send time (consent changed meanwhile)
    SENT = "sent"
    RETRY = "retry"  # a temporary failure; tried again later
    FAILED = "failed"  # a permanent failure, or out of attempts
    PERMIT = "permit"  # a contact permit issued


class ContactLog(Base):
    """The contact log: every decision about a contact and every delivery outcome,
    appended in the transaction that acts on it. ``detail`` is a connector's reason or a
    rule, never an address or a body. Permits have no message: ``permit_id`` names the
    permit's ``jti`` instead."""

    __tablename__ = "contact_log"
    __table_args__ = (Index("ix_contact_log_vendor_at", "vendor_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    vendor_id: Mapped[str] = mapped_column(String(36), ForeignKey("vendors.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    permit_id: Mapped[str | None] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(10))
    topic: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(10))
    # The decision behind the event, where one was made, and the ledger head it saw.
    rule: Mapped[str | None] = mapped_column(String(32))
    ledger_seq: Mapped[int | None] = mapped_column(Integer)
    ledger_hash: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(200))
