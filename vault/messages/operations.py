"""Businesses' messages and contact permits: decided, recorded, queued. No HTTP here.

A message is accepted in one transaction with its decision: the outbox row (queued,
deferred, or blocked on a deny) and its contact-log row commit together or not at all.
Every decision names the consent ledger's head (seq and hash) as it was read, without
locking it: sends never queue behind consent changes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from sqlalchemy import bindparam, insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consent.engine import CustomerConsents, Decision, Outcome, Topic, VendorRef, decide
from vault.consents import ledger
from vault.consents.snapshot import load_consents
from vault.crypto.keyring import KeyProvider
from vault.errors import VaultError
from vault.keys.operations import cipher_for
from vault.messages.models import ContactLog, Event, Message, Status, new_message_id
from vault.oauth.signing import ALGORITHM, current_signing_key
from vault.vendors.models import ContactTopic, Vendor

# The channels the vault delivers itself; permits may name any channel.
DELIVERED_CHANNELS = ("email", "sms")
PERMIT_TYPE = "contact-permit+jwt"


class MessageError(VaultError, ValueError):
    """A message or permit refused: an HTTP status, a stable slug, a title and a detail for
    the business; ``extensions`` are the problem document's extra members (the rule...).
    ``vault.errors`` answers it as problem+json."""

    oauth_error = "invalid_request"

    def __init__(self, status: int, slug: str, title: str, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.slug, self.title = status, slug, slug, title
        self.extensions = extensions


def refusal(decision: Decision, **extensions: Any) -> MessageError:
    """The 403 of a deny (or, for a permit, a defer), naming the rule and the reason."""
    if decision.outcome is Outcome.DEFER:
        assert decision.not_before is not None
        return MessageError(
            403,
            "contact-deferred",
            "Contact not allowed now",
            decision.reason,
            rule=decision.rule.value,
            reason=decision.reason,
            not_before=decision.not_before.isoformat(),
            **extensions,
        )
    return MessageError(
        403,
        "contact-denied",
        "Contact not allowed",
        decision.reason,
        rule=decision.rule.value,
        reason=decision.reason,
        **extensions,
    )


# Statements every message runs, built once (their cache keys too).
_TOPIC = select(ContactTopic).where(
    ContactTopic.vendor_id == bindparam("vendor_id"), ContactTopic.name == bindparam("name")
)
_BY_KEY = select(Message).where(
    Message.vendor_id == bindparam("vendor_id"), Message.idempotency_key == bindparam("key")
)
_LOG = insert(ContactLog)


def topic_of(session: Session, vendor_id: str, name: str) -> ContactTopic:
    topic = session.scalar(_TOPIC, {"vendor_id": vendor_id, "name": name})
    if topic is None:
        raise MessageError(
            422, "unknown-topic", "Unknown topic", f"Your business has not declared {name!r}."
        )
    return topic


@dataclass(frozen=True)
class Decided:
    decision: Decision
    ledger_seq: int
    ledger_hash: str


def decide_contact(
    session: Session,
    vendor: VendorRef,
    user_id: str,
    channel: str,
    topic: Topic,
    now: datetime,
    consents: CustomerConsents | None = None,
) -> Decided:
    """``consent.engine.decide`` on the customer's settings as stored now, with the ledger
    head it saw. The head is read before the settings: every consent change up to that
    event is in what was decided on (a change committed in between may be too)."""
    head = ledger.head(session) or (0, "0" * 64)
    if consents is None:
        consents = load_consents(session, [user_id], now, vendor_id=vendor.id).get(user_id)
    return Decided(decide(consents, vendor, channel, topic, now), head[0], head[1])


def log(
    session: Session,
    *,
    vendor_id: str,
    user_id: str,
    channel: str,
    topic: str,
    event: Event,
    at: datetime,
    message_id: str | None = None,
    permit_id: str | None = None,
    decided: Decided | None = None,
    detail: str | None = None,
) -> None:
    """Append one contact-log row in the caller's transaction."""
    session.execute(
        _LOG,
        {
            "at": at,
            "vendor_id": vendor_id,
            "user_id": user_id,
            "message_id": message_id,
            "permit_id": permit_id,
            "channel": channel,
            "topic": topic,
            "event": event.value,
            "rule": decided.decision.rule.value if decided else None,
            "ledger_seq": decided.ledger_seq if decided else None,
            "ledger_hash": decided.ledger_hash if decided else None,
            "detail": detail[:200] if detail else None,
        },
    )


def fingerprint(data: dict[str, Any]) -> str:
    """What an idempotency key stands for: the request's content, canonically spelt."""
    canonical = json.dumps(
        {k: data.get(k) for k in ("sub", "channel", "topic", "subject", "body")},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def subject_field(message_id: str) -> str:
    return f"message:{message_id}:subject"


def body_field(message_id: str) -> str:
    return f"message:{message_id}:body"


@dataclass(frozen=True)
class Accepted:
    message: Message
    created: bool  # False: the key was used before and this is that message


def by_key(session: Session, vendor_id: str, key: str) -> Message | None:
    return session.scalar(_BY_KEY, {"vendor_id": vendor_id, "key": key})


def _same_request(message: Message, request_hash: str) -> Accepted:
    if message.request_hash != request_hash:
        raise MessageError(
            422,
            "idempotency-key-reused",
            "Idempotency key already used",
            "This Idempotency-Key was used for a different request; use a new key for a new "
            "message.",
        )
    return Accepted(message, created=False)


def accept_message(
    session: Session,
    keys: KeyProvider,
    vendor: Vendor,
    client_id: str,
    user_id: str,
    data: dict[str, Any],
    idempotency_key: str,
    now: datetime,
) -> Accepted:
    """Decide and store one message (``data``: sub, channel, topic, subject, body, already
    validated). The same key again returns the first message (``created`` False) or, with
    other content, refuses; two requests racing with one key store one row, the loser
    reading the winner's (the unique constraint decides). The row and its contact-log line
    are written in the caller's transaction."""
    request_hash = fingerprint(data)
    existing = by_key(session, vendor.id, idempotency_key)
    if existing is not None:
        return _same_request(existing, request_hash)
    topic = topic_of(session, vendor.id, data["topic"])
    channel = data["channel"]
    decided = decide_contact(
        session,
        VendorRef(vendor.id, vendor.name),
        user_id,
        channel,
        Topic(topic.name, topic.purpose),
        now,
    )
    decision = decided.decision
    message_id = new_message_id()
    cipher = cipher_for(session, keys, user_id)
    subject = data.get("subject")
    status = {
        Outcome.ALLOW: Status.QUEUED,
        Outcome.DEFER: Status.DEFERRED,
        Outcome.DENY: Status.BLOCKED,
    }[decision.outcome]
    values = dict(
        id=message_id,
        vendor_id=vendor.id,
        client_id=client_id,
        user_id=user_id,
        channel=channel,
        topic=topic.name,
        subject_ciphertext=cipher.encrypt(subject_field(message_id), subject.encode())
        if subject is not None
        else None,
        body_ciphertext=cipher.encrypt(body_field(message_id), data["body"].encode()),
        status=status.value,
        not_before=decision.not_before or now,
        attempts=0,
        decision=decision.outcome.value,
        rule=decision.rule.value,
        reason=decision.reason[:500],
        ledger_seq=decided.ledger_seq,
        ledger_hash=decided.ledger_hash,
        deferred_until=decision.not_before,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        created_at=now,
        updated_at=now,
    )
    # ON CONFLICT DO NOTHING: a request racing with this key waits for the one that
    # inserted first to commit, then stores nothing and reads the winner's row. No savepoint:
    # on SQLite, where nothing was written before it, releasing one would commit.
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        upsert = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}[dialect]
        statement = (
            upsert(Message.__table__)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["idempotency_key", "vendor_id"])
            .returning(Message.__table__.c.id)
        )
        stored = session.connection().execute(statement).first() is not None
    else:
        stored = _insert_in_savepoint(session, values)
    if not stored:
        # Another request with this key committed first: answer what it stored.
        winner = by_key(session, vendor.id, idempotency_key)
        if winner is None:
            raise RuntimeError("an idempotency key conflicted with no stored message")
        return _same_request(winner, request_hash)
    # What the answer reads, without loading the row back.
    message = Message(**values)
    event = {
        Status.QUEUED: Event.ACCEPTED,
        Status.DEFERRED: Event.DEFERRED,
        Status.BLOCKED: Event.DENIED,
    }[status]
    log(
        session,
        vendor_id=vendor.id,
        user_id=user_id,
        channel=channel,
        topic=topic.name,
        event=event,
        at=now,
        message_id=message_id,
        decided=decided,
    )
    return Accepted(message, created=True)


def _insert_in_savepoint(session: Session, values: dict[str, Any]) -> bool:
    """Other databases: the insert in a savepoint, a unique violation rolled back to it."""
    try:
        with session.begin_nested():
            session.execute(insert(Message).values(**values))
    except IntegrityError:
        return False
    return True


def vendor_message(session: Session, vendor_id: str, message_id: str) -> Message | None:
    """One of the vendor's own messages; another vendor's does not exist for it."""
    message = session.get(Message, message_id)
    if message is None or message.vendor_id != vendor_id:
        return None
    return message


@dataclass(frozen=True)
class Permit:
    token: str
    permit_id: str
    expires_at: datetime
    decided: Decided


def issue_permit(
    session: Session,
    keys: KeyProvider,
    *,
    issuer: str,
    vendor: Vendor,
    client_id: str,
    user_id: str,
    sub: str,
    channel: str,
    topic_name: str,
    now: datetime,
    lifetime: int,
) -> Permit:
    """A JWS (ES256, the vault's published key) saying this contact is allowed now, for
    ``lifetime`` seconds; logged in the contact log. Refused (``MessageError`` 403) on a
    deny or a defer."""
    topic = topic_of(session, vendor.id, topic_name)
    decided = decide_contact(
        session,
        VendorRef(vendor.id, vendor.name),
        user_id,
        channel,
        Topic(topic.name, topic.purpose),
        now,
    )
    if decided.decision.outcome is not Outcome.ALLOW:
        raise refusal(decided.decision)
    permit_id = "pmt_" + secrets.token_urlsafe(18)
    issued = int(now.timestamp())
    expires = issued + lifetime
    claims = {
        "iss": issuer,
        "aud": client_id,
        "sub": sub,
        "jti": permit_id,
        "iat": issued,
        "nbf": issued,
        "exp": expires,
        "vendor_id": vendor.id,
        "client_id": client_id,
        "channel": channel,
        "topic": topic.name,
        "rule": decided.decision.rule.value,
        "reason": decided.decision.reason,
        "ledger": {"seq": decided.ledger_seq, "hash": decided.ledger_hash},
    }
    key = current_signing_key(session, keys, ALGORITHM)
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": PERMIT_TYPE}
    token = jwt.encode(header, claims, key)
    log(
        session,
        vendor_id=vendor.id,
        user_id=user_id,
        channel=channel,
        topic=topic.name,
        event=Event.PERMIT,
        at=now,
        permit_id=permit_id,
        decided=decided,
        detail=f"expires {datetime.fromtimestamp(expires, now.tzinfo).isoformat()}",
    )
    return Permit(token, permit_id, now + timedelta(seconds=lifetime), decided)
