"""The customer's contact preferences, the append-only ledger and consent receipts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Computed, ForeignKey, Index, Integer, String, Text
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship
from sqlalchemy.sql.expression import ColumnElement

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
    # One customer's consents with one business, however many customers it has: the key
    # (user_id, topic_id, channel) alone leaves the planner the vendor_id index, which
    # walks every row of the business (migration 0013).
    __table_args__ = (Index("ix_topic_consents_customer", "user_id", "vendor_id"),)

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


class LedgerHead(Base):
    """One row: the last sequence number and hash. Appenders update it first, which
    serialises them (a row lock on PostgreSQL, the write lock on SQLite)."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class body_field(ColumnElement[Any]):  # lower case: it reads like the SQL function it is
    """The value of one top-level key of the event's canonical JSON ``body``, spelt by
    each database: the generation expression of LedgerEvent's query columns."""

    # Its SQL depends on name and integer, which a cache key would not see: never cached.
    inherit_cache = False

    def __init__(self, name: str, integer: bool = False, of: Any = None) -> None:
        self.name = name
        self.integer = integer
        # ``of``: the body column, to qualify in queries; a generation expression takes
        # the bare column name.
        self.of = of
        self.type = Integer() if integer else Text()

    @property
    def _from_objects(self) -> list[Any]:
        # A query of the expression alone must still select FROM ledger_events.
        return [] if self.of is None else self.of._from_objects


def _body(element: body_field, compiler: Any, **kw: Any) -> str:
    return "body" if element.of is None else compiler.process(element.of, **kw)


@compiles(body_field, "sqlite")
def _body_field_sqlite(element: body_field, compiler: Any, **kw: Any) -> str:
    return f"json_extract({_body(element, compiler, **kw)}, '$.{element.name}')"


@compiles(body_field, "postgresql")
def _body_field_postgresql(element: body_field, compiler: Any, **kw: Any) -> str:
    # text -> jsonb and ->> are immutable, as a generated column requires.
    value = f"({_body(element, compiler, **kw)}::jsonb ->> '{element.name}')"
    return f"{value}::integer" if element.integer else value


@compiles(body_field)
def _body_field_other(element: body_field, compiler: Any, **kw: Any) -> str:
    raise CompileError(f"no JSON field expression for {compiler.dialect.name}")


class _GeneratedFromBody(Computed):
    """A generated column: STORED on PostgreSQL, the only kind it can index; on SQLite
    VIRTUAL (computed when read or indexed, nothing stored twice) unless persisted."""


@compiles(_GeneratedFromBody, "postgresql")
def _generated_stored(element: _GeneratedFromBody, compiler: Any, **kw: Any) -> str:
    expression = compiler.sql_compiler.process(
        element.sqltext, include_table=False, literal_binds=True
    )
    return f"GENERATED ALWAYS AS ({expression}) STORED"


def _from_body(name: str, integer: bool = False, stored: bool = False) -> Computed:
    return _GeneratedFromBody(body_field(name, integer), persisted=True if stored else None)


class LedgerEvent(Base):
    """An append-only, hash-chained record of a consent change (see consent.ledger).

    ``body`` is the single source of truth: the exact canonical JSON that ``hash`` is the
    SHA-256 of. Every other field is a column the database generates from ``body``, so
    it can never disagree with what was hashed (the database refuses to UPDATE it), and
    verifying the ledger needs only seq, hash and body."""

    __tablename__ = "ledger_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    body: Mapped[str] = mapped_column(Text)
    # Indexed, so columns the database generates (and stores, on PostgreSQL).
    event_type: Mapped[str] = mapped_column(String(40), _from_body("event_type"), index=True)
    # The customer's pseudonym.
    subject: Mapped[str] = mapped_column(String(64), _from_body("subject"), index=True)
    vendor_id: Mapped[str | None] = mapped_column(String(36), _from_body("vendor_id"), index=True)
    # Read from the body when queried: stored, PostgreSQL would keep every event's fields
    # twice and verify would read twice the bytes (migration 0009).
    at: Mapped[str] = column_property(body_field("at", of=body.column))  # ISO 8601 UTC, as hashed
    channel: Mapped[str | None] = column_property(body_field("channel", of=body.column))
    topic: Mapped[str | None] = column_property(body_field("topic", of=body.column))
    prev_state: Mapped[str] = column_property(body_field("prev_state", of=body.column))  # JSON
    new_state: Mapped[str] = column_property(body_field("new_state", of=body.column))  # JSON
    actor: Mapped[str] = column_property(body_field("actor", of=body.column))
    source: Mapped[str] = column_property(body_field("source", of=body.column))
    notice_version: Mapped[int | None] = column_property(
        body_field("notice_version", integer=True, of=body.column)
    )
    # Unique: a second event on the same predecessor (a fork) cannot be stored. Stored on
    # SQLite too: verify reads it for every event, and json_extract on every read would
    # cost more than the hashing.
    prev_hash: Mapped[str] = mapped_column(
        String(64), _from_body("prev_hash", stored=True), unique=True
    )
    # The seq the body names, stored beside the real one, the primary key (which SQLite
    # cannot generate): verify compares the two for every event.
    body_seq: Mapped[int] = mapped_column(Integer, _from_body("seq", integer=True, stored=True))


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
