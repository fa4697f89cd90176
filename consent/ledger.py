"""The append-only, hash-chained consent ledger.

Each event's ``body`` is the canonical JSON (sorted keys, no spaces, UTF-8, non-ASCII kept)
of its 13 fields, ``seq`` and ``prev_hash`` among them, and its ``hash`` is the SHA-256 of
those bytes; ``prev_hash`` is the hash of the event before (64 zeros for the first). The
body is the single source of truth: the database generates every other column from it
(``consent.models.LedgerEvent``), so no column can disagree with what was hashed.

Appending locks the one ``ledger_head`` row first, so concurrent writers (threads or
processes, SQLite or PostgreSQL) queue up and the chain has no gaps and no forks;
``prev_hash`` is also unique, so a fork could not even be stored.

Append inside the transaction that makes the change: both commit, or neither does.
``consent.ledger_verify`` recomputes the chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from consent.models import LedgerHead

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
# The columns the database generates from the body, and the key each comes from: the
# indexed fields, prev_hash, and the body's seq as body_seq beside the real seq, the
# primary key (SQLite cannot generate one), so that verify can compare the two. The other
# fields are read from the body when queried (consent.models.LedgerEvent).
GENERATED_COLUMNS = {name: name for name in ("event_type", "subject", "vendor_id", "prev_hash")} | {
    "body_seq": "seq"
}
SOURCES = ("ui", "api", "unsubscribe", "system")

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_state(state: Any) -> str:
    return _ENCODER.encode(state)


def canonical_bytes(event: dict[str, Any]) -> bytes:
    """The definition: json.dumps of the 13 hashed fields, sorted keys, no spaces, UTF-8."""
    return _ENCODER.encode({name: event[name] for name in HASHED_FIELDS}).encode()


def event_hash(event: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(event)).hexdigest()


def timestamp(at: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a Z, e.g. 2026-11-23T17:30:00.000000Z
    (isoformat costs a third of strftime, and every append spells one)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


# canonical_bytes spelt out around the two values only the head row knows: json.dumps of a
# flat dict with sorted keys and these separators is "{" + '"key":value' joined by "," +
# "}", each value as the encoder spells it alone. In sorted order prev_hash (64 hex digits,
# nothing to escape) comes two keys before seq, with prev_state between.
_SORTED = sorted(HASHED_FIELDS)
_BEFORE_PREV_HASH = _SORTED[: _SORTED.index("prev_hash")]
_AFTER_SEQ = _SORTED[_SORTED.index("seq") + 1 :]
assert _SORTED[_SORTED.index("prev_hash") + 1 : _SORTED.index("seq")] == ["prev_state"]


def _body_around(fields: dict[str, Any]) -> tuple[str, str, str]:
    """(a, b, c) such that a + prev_hash + b + str(seq) + c is canonical_bytes (decoded)
    of ``fields`` with that prev_hash and seq; tests check it byte for byte."""
    encode = _ENCODER.encode
    before = ",".join(f'"{name}":{encode(fields[name])}' for name in _BEFORE_PREV_HASH)
    after = ",".join(f'"{name}":{encode(fields[name])}' for name in _AFTER_SEQ)
    return (
        "{" + before + ',"prev_hash":"',
        '","prev_state":' + encode(fields["prev_state"]) + ',"seq":',
        "," + after + "}",
    )


# Plain SQL on the session's own DB-API connection (inside its transaction): SQLAlchemy's
# per-statement handling, even for prebuilt Core statements, cost more than the statements
# themselves. Only constant names go into these texts; values are bound.
_NEXT_SEQ = "UPDATE ledger_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash"
_INSERT = "INSERT INTO ledger_events (seq, hash, body) VALUES (?, ?, ?)"
_SET_HEAD_HASH = "UPDATE ledger_head SET hash = ? WHERE id = 1"
# PostgreSQL: one statement, one round trip. FOR UPDATE waits for the head row's lock and
# then reads its latest version; the server spells the body around the head's seq and
# hash and hashes it (sha256 of the UTF-8 bytes, as Python would), inserts the event and
# moves the head.
_APPEND_POSTGRESQL = (
    "WITH event AS ("
    "INSERT INTO ledger_events (seq, hash, body) "
    "SELECT seq + 1, encode(sha256(convert_to(body, 'UTF8')), 'hex'), body "
    "FROM (SELECT seq, %s || hash || %s || (seq + 1) || %s AS body "
    "FROM ledger_head WHERE id = 1 FOR UPDATE) AS head "
    "RETURNING seq, hash) "
    "UPDATE ledger_head SET seq = event.seq, hash = event.hash FROM event WHERE id = 1 "
    "RETURNING event.seq, event.hash"
)


def dbapi_of(session: Session) -> tuple[Any, str]:
    """The DB-API connection of the session's transaction (begun if need be), and its
    dialect name."""
    connection = session.connection()
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    return dbapi, connection.dialect.name


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
    around = _body_around(
        {
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
        }
    )
    dbapi, dialect = dbapi_of(session)
    cursor = dbapi.cursor()
    try:
        if dialect == "postgresql":
            cursor.execute(_APPEND_POSTGRESQL, around)
            appended = cursor.fetchone()
            if appended is None:
                raise RuntimeError("the ledger has no head row (migrations not run?)")
            return Appended(*appended)
        # Taking the head row's lock first makes every appender wait its turn.
        cursor.execute(_NEXT_SEQ)
        seq, prev_hash = cursor.fetchone()
        body = f"{around[0]}{prev_hash}{around[1]}{seq}{around[2]}"
        digest = hashlib.sha256(body.encode()).hexdigest()
        cursor.execute(_INSERT, (seq, digest, body))
        cursor.execute(_SET_HEAD_HASH, (digest,))
    finally:
        cursor.close()
    return Appended(seq, digest)


def count_events(session: Session) -> int:
    head = session.get(LedgerHead, 1)
    return head.seq if head is not None else 0
