"""Read-only queries of the outbox for the screens: the customer's messages per business
and the business portal's list. Nothing here writes.

Lists are keyset-paginated, newest first, on ``(created_at, id)``: the cursor is the id of
the last message shown, looked up under the same filter as the page, so a cursor naming
someone else's message finds nothing (the caller answers 404).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from consent.engine import State
from vault.consents.models import TopicConsent
from vault.crypto.aead import DecryptionError
from vault.crypto.keyring import KeyProvider
from vault.keys.operations import DataKeyShredded, cipher_for
from vault.messages.models import Message
from vault.messages.operations import body_field, subject_field
from vault.profile.models import ProfileField
from vault.vendors.models import ContactTopic, Vendor


class CursorNotFound(LookupError):
    """The ``before`` cursor names no message of this list."""


@dataclass(frozen=True)
class Page:
    messages: list[Message]
    next_before: str | None  # the cursor of the next (older) page, None on the last


@dataclass(frozen=True)
class Business:
    """One business as the customer's message overview shows it."""

    vendor_id: str
    name: str
    total: int
    latest: list[Message]  # its newest few, newest first


@dataclass(frozen=True)
class Content:
    """A message's subject and body as the customer reads them; None where unreadable."""

    subject: str | None
    body: str | None


def _newest_first() -> tuple[ColumnElement[object], ...]:
    return (Message.created_at.desc(), Message.id.desc())


def _page(
    session: Session, where: list[ColumnElement[bool]], before: str | None, limit: int
) -> Page:
    query = select(Message).where(*where)
    if before is not None:
        cursor = session.execute(
            select(Message.created_at, Message.id).where(Message.id == before, *where)
        ).first()
        if cursor is None:
            raise CursorNotFound(before)
        created_at, cursor_id = cursor
        query = query.where(
            or_(
                Message.created_at < created_at,
                and_(Message.created_at == created_at, Message.id < cursor_id),
            )
        )
    # One more than the page: whether an older page exists, without counting.
    rows = list(session.scalars(query.order_by(*_newest_first()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)


def customer_page(
    session: Session, user_id: str, vendor_id: str, before: str | None, limit: int
) -> Page:
    """The messages one business sent one customer, newest first."""
    return _page(
        session, [Message.user_id == user_id, Message.vendor_id == vendor_id], before, limit
    )


def vendor_page(session: Session, vendor_id: str, before: str | None, limit: int) -> Page:
    """The business's messages to every customer, newest first (the portal's list)."""
    return _page(session, [Message.vendor_id == vendor_id], before, limit)


def customer_businesses(
    session: Session, user_id: str, *, per_business: int, limit: int
) -> list[Business]:
    """The businesses that sent the customer messages, most recent first, each with its
    message count and its ``per_business`` newest messages (two queries in all)."""
    totals = session.execute(
        select(
            Message.vendor_id,
            Vendor.name,
            func.count(Message.id),
            func.max(Message.created_at).label("latest"),
        )
        .join(Vendor, Vendor.id == Message.vendor_id)
        .where(Message.user_id == user_id)
        .group_by(Message.vendor_id, Vendor.name)
        .order_by(func.max(Message.created_at).desc(), Message.vendor_id)
        .limit(limit)
    ).all()
    if not totals:
        return []
    vendor_ids = [row[0] for row in totals]
    rank = (
        func.row_number()
        .over(partition_by=Message.vendor_id, order_by=_newest_first())
        .label("rank")
    )
    ranked = (
        select(Message, rank)
        .where(Message.user_id == user_id, Message.vendor_id.in_(vendor_ids))
        .subquery()
    )
    newest = aliased(Message, ranked)
    latest: dict[str, list[Message]] = {vendor_id: [] for vendor_id in vendor_ids}
    for message in session.scalars(
        select(newest)
        .where(ranked.c.rank <= per_business)
        .order_by(newest.vendor_id, newest.created_at.desc(), newest.id.desc())
    ):
        latest[message.vendor_id].append(message)
    return [
        Business(vendor_id, name, total, latest[vendor_id]) for vendor_id, name, total, _ in totals
    ]


def message_counts(session: Session, user_id: str) -> dict[str, int]:
    """``vendor_id -> number of messages`` it sent the customer."""
    rows = session.execute(
        select(Message.vendor_id, func.count(Message.id))
        .where(Message.user_id == user_id)
        .group_by(Message.vendor_id)
    )
    return {vendor_id: count for vendor_id, count in rows}


def vendor_name(session: Session, vendor_id: str) -> str | None:
    return session.scalar(select(Vendor.name).where(Vendor.id == vendor_id))


def unsubscribed(
    session: Session, user_id: str, messages: Iterable[Message]
) -> set[tuple[str, str, str]]:
    """Which of the messages' (vendor, topic name, channel) consents the customer has
    withdrawn: what their unsubscribe link would withdraw is already withdrawn."""
    wanted = {(m.vendor_id, m.topic, m.channel) for m in messages}
    if not wanted:
        return set()
    rows = session.execute(
        select(ContactTopic.vendor_id, ContactTopic.name, TopicConsent.channel)
        .join(ContactTopic, ContactTopic.id == TopicConsent.topic_id)
        .where(
            TopicConsent.user_id == user_id,
            TopicConsent.state == str(State.WITHDRAWN),
            TopicConsent.vendor_id.in_({vendor_id for vendor_id, _, _ in wanted}),
        )
    ).all()
    return {(vendor_id, name, channel) for vendor_id, name, channel in rows} & wanted


def topic_descriptions(session: Session, messages: Iterable[Message]) -> dict[tuple[str, str], str]:
    """``(vendor_id, topic name) -> description`` of the topics the messages name."""
    vendor_ids = {m.vendor_id for m in messages}
    if not vendor_ids:
        return {}
    return {
        (vendor_id, name): description
        for vendor_id, name, description in session.execute(
            select(ContactTopic.vendor_id, ContactTopic.name, ContactTopic.description).where(
                ContactTopic.vendor_id.in_(vendor_ids)
            )
        )
        if description
    }


def customer_contents(
    session: Session, keys: KeyProvider, user_id: str, messages: Iterable[Message]
) -> dict[str, Content]:
    """Subjects and bodies decrypted with the customer's data key (once per page). A
    message that does not decrypt reads as None, never as an error page."""
    messages = list(messages)
    if not messages:
        return {}
    try:
        cipher = cipher_for(session, keys, user_id)
    except DataKeyShredded:
        return {m.id: Content(None, None) for m in messages}

    def read(field: str, ciphertext: bytes | None) -> str | None:
        if ciphertext is None:
            return None
        try:
            return cipher.decrypt(field, ciphertext).decode()
        except (DecryptionError, UnicodeDecodeError):
            return None

    return {
        m.id: Content(
            read(subject_field(m.id), m.subject_ciphertext),
            read(body_field(m.id), m.body_ciphertext),
        )
        for m in messages
    }


def customer_zone(session: Session, keys: KeyProvider, user_id: str) -> ZoneInfo | None:
    """The time zone of the customer's profile (the OpenID ``zoneinfo`` claim), if any."""
    field = session.get(ProfileField, (user_id, "zoneinfo"))
    if field is None:
        return None
    try:
        name = json.loads(cipher_for(session, keys, user_id).decrypt(field.name, field.ciphertext))
        return ZoneInfo(name) if isinstance(name, str) and name else None
    except (DataKeyShredded, DecryptionError, ValueError, ZoneInfoNotFoundError):
        return None
