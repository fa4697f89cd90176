"""The consent ledger in the vault's database: appending events and verifying the stored chain.

What an event is (its canonical body and hash) and how a chain is verified belong to the
``consent`` library; this module only reads and writes the rows.

Appending locks the one ``ledger_head`` row first, so concurrent writers (threads or
processes, SQLite or PostgreSQL) queue up and the chain has no gaps and no forks;
``prev_hash`` is also unique, so a fork could not even be stored. Append inside the
transaction that makes the change: both commit, or neither does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from consent.ledger import new_event
from consent.ledger_verify import Anchor, Verification, verify_chain
from vault.consents.models import LedgerEvent, LedgerHead

# Columns the database generates from the body, for queries and indexes: verify checks
# each against the body it came from. (body_seq is the body's seq beside the real seq.)
_BESIDE_THE_BODY = {
    "event_type": LedgerEvent.event_type,
    "subject": LedgerEvent.subject,
    "vendor_id": LedgerEvent.vendor_id,
    "prev_hash": LedgerEvent.prev_hash,
    "seq": LedgerEvent.body_seq,
}
# Rows fetched per round trip: on PostgreSQL a server-side cursor, so memory stays flat
# whatever the ledger's length.
STREAM_BATCH = 2000

_events = LedgerEvent.__table__
_heads = LedgerHead.__table__
# Built once: every consent change runs them.
_NEXT_SEQ = (
    update(_heads)
    .where(_heads.c.id == 1)
    .values(seq=_heads.c.seq + 1)
    .returning(_heads.c.seq, _heads.c.hash)
)
_INSERT_EVENT = insert(_events).values(
    seq=bindparam("seq"), hash=bindparam("hash"), body=bindparam("body")
)
_MOVE_HEAD = update(_heads).where(_heads.c.id == 1).values(hash=bindparam("new_hash"))


@dataclass(frozen=True)
class Appended:
    seq: int
    hash: str


def append(
    session: Session,
    *,
    event_type: str,
    subject: str,
    actor: str,
    source: str,
    vendor_id: str | None = None,
    channel: str | None = None,
    topic: str | None = None,
    prev_state: Any = None,
    new_state: Any = None,
    notice_version: int | None = None,
    at: datetime | None = None,
) -> Appended:
    """Append one event in the caller's transaction and return its seq and hash."""
    # Taking the head row's lock first makes every appender wait its turn.
    head = session.execute(_NEXT_SEQ).first()
    if head is None:
        raise RuntimeError("the ledger has no head row (migrations not run?)")
    seq, prev_hash = head
    body, digest = new_event(
        seq,
        prev_hash,
        event_type=event_type,
        subject=subject,
        actor=actor,
        source=source,
        vendor_id=vendor_id,
        channel=channel,
        topic=topic,
        prev_state=prev_state,
        new_state=new_state,
        notice_version=notice_version,
        at=at,
    )
    session.execute(_INSERT_EVENT, {"seq": seq, "hash": digest, "body": body})
    session.execute(_MOVE_HEAD, {"new_hash": digest})
    return Appended(seq, digest)


_LOCK_HEAD = update(_heads).where(_heads.c.id == 1).values(seq=_heads.c.seq)


def lock(session: Session) -> None:
    """Take the lock ``append`` takes (the head row's), now, without appending.

    For a change that first reads the current state to decide whether there is anything to
    change at all (an unsubscribe link followed twice at once): read after this, and a
    concurrent twin waits here until the first commits, then reads what it wrote. An UPDATE
    that changes nothing is the lock on both databases: a row lock on PostgreSQL (whose next
    statements then see the other's commit), the write lock on SQLite."""
    session.execute(_LOCK_HEAD)


def head(session: Session) -> tuple[int, str] | None:
    """The (seq, hash) the head row names, or None if there is no head row."""
    row = session.execute(select(_heads.c.seq, _heads.c.hash).where(_heads.c.id == 1)).first()
    return (row.seq, row.hash) if row is not None else None


def count_events(session: Session) -> int:
    found = head(session)
    return found[0] if found is not None else 0


def stored_events(session: Session, upto: int) -> Iterable[Any]:
    """(seq, hash, body, *the columns beside the body) of events 1..upto in seq order,
    streamed in batches of STREAM_BATCH."""
    query = (
        select(_events.c.seq, _events.c.hash, _events.c.body, *_BESIDE_THE_BODY.values())
        .where(_events.c.seq <= upto)
        .order_by(_events.c.seq)
    )
    return session.connection().execution_options(yield_per=STREAM_BATCH).execute(query)


def verify(
    session: Session,
    *,
    anchors: Iterable[Anchor] = (),
    on_progress: Callable[[int], None] = lambda count: None,
) -> Verification:
    """Verify the stored chain up to the head as it is now (events appended meanwhile are
    left for the next run): every body read, parsed and hashed here, see
    ``consent.ledger_verify``."""
    claimed = head(session)
    return verify_chain(
        stored_events(session, claimed[0] if claimed is not None else 0),
        claimed,
        beside=tuple(_BESIDE_THE_BODY),
        anchors=anchors,
        on_progress=on_progress,
    )
