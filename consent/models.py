"""The customer's contact preferences, the append-only ledger and consent receipts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from vault.models import Base, UTCDateTime, new_id, utcnow
from vault.vendors.models import ContactTopic, Vendor


class ConsentPreferences(Base):
    """Per-customer settings that apply to every business: quiet hours."""

    __tablename__ = "consent_preferences"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    quiet_start: Mapped[str | None] = mapped_column(String(5))  # "22:00"
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    timezone: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ChannelSetting(Base):
    """The global switch of one channel. No row means on."""

    __tablename__ = "channel_settings"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(10), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class VendorPreference(Base):
    """Per business: blocked altogether, and frequency caps (per channel)."""

    __tablename__ = "vendor_preferences"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    vendor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("vendors.id", ondelete="CASCADE"), primary_key=True
    )
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    cap_per_day: Mapped[int | None] = mapped_column(Integer)
    cap_per_week: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    vendor: Mapped[Vendor] = relationship()


class TopicConsent(Base):
    """Allow or withdraw one vendor x topic x channel, with the notice version seen."""

    __tablename__ = "topic_consents"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("contact_topics.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(10), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("vendors.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(10))  # granted | withdrawn
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notice_version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(12))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    topic: Mapped[ContactTopic] = relationship()


class ConsentRequest(Base):
    """A business proposes topics and channels; the customer answers in the UI."""

    __tablename__ = "consent_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("vendors.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    topics: Mapped[list[str]] = mapped_column(JSON)  # topic ids
    channels: Mapped[list[str]] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(10), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    vendor: Mapped[Vendor] = relationship()


class ContactRecord(Base):
    """A message actually sent to a customer: the history frequency caps count."""

    __tablename__ = "contact_records"
    __table_args__ = (Index("ix_contact_records_lookup", "user_id", "vendor_id", "channel", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"))
    vendor_id: Mapped[str] = mapped_column(String(36), ForeignKey("vendors.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))
    topic_id: Mapped[str | None] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerHead(Base):
    """One row: the last sequence number and hash. Appenders update it first, which
    serialises them (a row lock on PostgreSQL, the write lock on SQLite)."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class LedgerEvent(Base):
    """An append-only, hash-chained record of a consent change (see consent.ledger)."""

    __tablename__ = "ledger_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(32))  # ISO 8601 UTC, exactly as hashed
    event_type: Mapped[str] = mapped_column(String(40), index=True)
    subject: Mapped[str] = mapped_column(String(64), index=True)  # customer pseudonym
    vendor_id: Mapped[str | None] = mapped_column(String(36), index=True)
    channel: Mapped[str | None] = mapped_column(String(10))
    topic: Mapped[str | None] = mapped_column(String(64))
    prev_state: Mapped[str] = mapped_column(Text)  # canonical JSON
    new_state: Mapped[str] = mapped_column(Text)  # canonical JSON
    actor: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(12))
    notice_version: Mapped[int | None] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The exact canonical JSON that ``hash`` is the SHA-256 of, as append() wrote it.
    body: Mapped[str] = mapped_column(Text)


class ConsentReceipt(Base):
    """A signed (JWS) receipt the customer can download and anyone can verify."""

    __tablename__ = "consent_receipts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    vendor_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("vendors.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(20))  # consent | termination
    ledger_seq: Mapped[int] = mapped_column(Integer)
    jws: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    vendor: Mapped[Vendor | None] = relationship()
