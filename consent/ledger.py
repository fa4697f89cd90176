"""The append-only, hash-chained consent ledger.

Each event's ``hash`` is SHA-256 over the canonical JSON (sorted keys, no spaces, UTF-8)
of all its fields including ``prev_hash``; ``prev_hash`` is the hash of the event before
(64 zeros for the first). Appending locks the one ``ledger_head`` row first, so concurrent
writers (threads or processes, SQLite or PostgreSQL) queue up and the chain has no gaps and
no forks; ``prev_hash`` is also unique, so a fork could not even be stored.

Append inside the transaction that makes the change: both commit, or neither does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from consent.models import LedgerEvent, LedgerHead

GENESIS = "0" * 64
HASHED_FIELDS = (
    "seq",
    "at",
    "event_type",
    "subject",
    "vendor_id",
    "channel",
    "topic",
    "prev_state",
    "new_state",
    "actor",
    "source",
    "notice_version",
    "prev_hash",
)
SOURCES = ("ui", "api", "unsubscribe", "system")


def canonical_state(state: Any) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_bytes(event: dict[str, Any]) -> bytes:
    body = {name: event[name] for name in HASHED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(event: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(event)).hexdigest()


def timestamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}")
    # Taking the head row's lock first makes every appender wait its turn.
    seq, prev_hash = session.execute(
        update(LedgerHead)
        .where(LedgerHead.id == 1)
        .values(seq=LedgerHead.seq + 1)
        .returning(LedgerHead.seq, LedgerHead.hash)
    ).one()
    event = {
        "seq": seq,
        "at": timestamp(at or datetime.now(UTC)),
        "event_type": event_type,
        "subject": subject,
        "vendor_id": vendor_id,
        "channel": channel,
        "topic": topic,
        "prev_state": canonical_state(prev_state),
        "new_state": canonical_state(new_state),
        "actor": actor,
        "source": source,
        "notice_version": notice_version,
        "prev_hash": prev_hash,
    }
    digest = event_hash(event)
    session.execute(insert(LedgerEvent).values(**event, hash=digest))
    session.execute(update(LedgerHead).where(LedgerHead.id == 1).values(hash=digest))
    return Appended(seq, digest)


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None


ROW_COLUMNS = [getattr(LedgerEvent, name) for name in HASHED_FIELDS] + [LedgerEvent.hash]


def stream(session: Session, batch: int = 5000) -> Iterator[dict[str, Any]]:
    result = session.execute(
        select(*ROW_COLUMNS).order_by(LedgerEvent.seq).execution_options(yield_per=batch)
    )
    names = [*HASHED_FIELDS, "hash"]
    for row in result:
        yield dict(zip(names, row, strict=True))


def verify_rows(
    rows: Iterable[dict[str, Any]], on_progress: Callable[[int], None] = lambda n: None
) -> Verification:
    """Recompute the chain; name the first event whose seq, link or hash is wrong."""
    expected_seq, prev, count = 1, GENESIS, 0
    for row in rows:
        seq = row["seq"]
        if seq != expected_seq:
            return Verification(
                False,
                count,
                expected_seq - 1,
                prev,
                expected_seq,
                f"sequence gap: expected {expected_seq}, found {seq}",
            )
        if row["prev_hash"] != prev:
            return Verification(
                False,
                count,
                seq - 1,
                prev,
                seq,
                "prev_hash does not match the previous event's hash",
            )
        if event_hash(row) != row["hash"]:
            return Verification(
                False, count, seq - 1, prev, seq, "hash does not match the event's contents"
            )
        prev, expected_seq, count = row["hash"], seq + 1, count + 1
        if count % 10000 == 0:
            on_progress(10000)
    on_progress(count % 10000)
    return Verification(True, count, expected_seq - 1, prev)


def verify(session: Session, on_progress: Callable[[int], None] = lambda n: None) -> Verification:
    result = verify_rows(stream(session), on_progress)
    if not result.ok:
        return result
    head = session.get(LedgerHead, 1)
    if head is None or (head.seq, head.hash) != (result.head_seq, result.head_hash):
        return Verification(
            False,
            result.count,
            result.head_seq,
            result.head_hash,
            result.head_seq + 1,
            "ledger head does not match the last event (events deleted?)",
        )
    return result


def count_events(session: Session) -> int:
    head = session.get(LedgerHead, 1)
    return head.seq if head is not None else 0
