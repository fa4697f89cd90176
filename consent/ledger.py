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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from operator import itemgetter
from typing import Any

from sqlalchemy import bindparam, insert, select, update
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


# Built once, on the tables rather than the ORM entities: plain Core DML skips the ORM's
# per-call statement handling, which cost more than the three statements themselves.
_HEAD = LedgerHead.__table__
_EVENTS = LedgerEvent.__table__
_NEXT_SEQ = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(seq=_HEAD.c.seq + 1)
    .returning(_HEAD.c.seq, _HEAD.c.hash)
)
_INSERT_EVENT = insert(_EVENTS)
_SET_HEAD_HASH = update(_HEAD).where(_HEAD.c.id == 1).values(hash=bindparam("digest"))


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
    seq, prev_hash = session.execute(_NEXT_SEQ).one()
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
    session.execute(_INSERT_EVENT, {**event, "hash": digest})
    session.execute(_SET_HEAD_HASH, {"digest": digest})
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
_SEQ, _PREV_HASH, _HASH = HASHED_FIELDS.index("seq"), HASHED_FIELDS.index("prev_hash"), 13
PROGRESS_EVERY = 10000

# The canonical encoding, spelt out: json.dumps(sort_keys=True, separators=(",", ":"),
# ensure_ascii=False) of a dict with exactly these keys is "{" + '"key":value' joined by ","
# in sorted key order + "}", where a str value is json's own encode_basestring, None is
# null and an int is int.__repr__ -- the same functions json's C encoder calls. Anything
# else (never stored, but who knows) goes through json.dumps itself. Byte-for-byte equal to
# canonical_bytes(); tests/consent/test_ledger.py checks that on awkward values.
_SORTED_FIELDS = sorted(HASHED_FIELDS)
_TEMPLATE = "{" + ",".join(f'"{name}":%s' for name in _SORTED_FIELDS) + "}"
_PICK_SORTED = itemgetter(*(HASHED_FIELDS.index(name) for name in _SORTED_FIELDS))


def _json_value(value: Any) -> str:
    kind = value.__class__
    if kind is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_row(row: Sequence[Any]) -> bytes:
    """canonical_bytes() of a row whose first 13 columns are HASHED_FIELDS in order."""
    return (_TEMPLATE % tuple(map(_json_value, _PICK_SORTED(row)))).encode()


def stream_rows(
    session: Session, *, upto: int | None = None, batch: int = 20000
) -> Iterator[tuple[Any, ...]]:
    """Every event as a plain tuple (HASHED_FIELDS, then hash) in seq order, straight from
    the database driver in batches: constant memory, no ORM or Row objects per event.
    On PostgreSQL a server-side (named) cursor, so a million events never sit in memory."""
    query = select(*ROW_COLUMNS).order_by(LedgerEvent.seq)
    if upto is not None:
        query = query.where(LedgerEvent.seq <= upto)
    connection = session.connection()
    compiled = query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    if connection.dialect.name == "postgresql":
        cursor = dbapi.cursor(name=f"ledger_verify_{id(query):x}")
        cursor.itersize = batch
    else:
        cursor = dbapi.cursor()
    try:
        cursor.execute(str(compiled))
        while rows := cursor.fetchmany(batch):
            yield from rows
    finally:
        cursor.close()


def stream(session: Session, batch: int = 5000) -> Iterator[dict[str, Any]]:
    names = [*HASHED_FIELDS, "hash"]
    for row in stream_rows(session, batch=batch):
        yield dict(zip(names, row, strict=True))


def _verify_tuples(
    rows: Iterable[Sequence[Any]], on_progress: Callable[[int], None]
) -> Verification:
    expected_seq, prev, count = 1, GENESIS, 0
    sha256 = hashlib.sha256
    encode = canonical_row
    for row in rows:
        seq = row[_SEQ]
        if seq != expected_seq:
            return Verification(
                False,
                count,
                expected_seq - 1,
                prev,
                expected_seq,
                f"sequence gap: expected {expected_seq}, found {seq}",
            )
        if row[_PREV_HASH] != prev:
            return Verification(
                False,
                count,
                seq - 1,
                prev,
                seq,
                "prev_hash does not match the previous event's hash",
            )
        prev = row[_HASH]
        if sha256(encode(row)).hexdigest() != prev:
            return Verification(
                False,
                count,
                seq - 1,
                row[_PREV_HASH],
                seq,
                "hash does not match the event's contents",
            )
        expected_seq = seq + 1
        count += 1
        if count % PROGRESS_EVERY == 0:
            on_progress(PROGRESS_EVERY)
    on_progress(count % PROGRESS_EVERY)
    return Verification(True, count, expected_seq - 1, prev)


def verify_rows(
    rows: Iterable[dict[str, Any]], on_progress: Callable[[int], None] = lambda n: None
) -> Verification:
    """Recompute the chain; name the first event whose seq, link or hash is wrong."""
    names = [*HASHED_FIELDS, "hash"]
    return _verify_tuples((tuple(row[name] for name in names) for row in rows), on_progress)


def _body_sql(dialect: str) -> str:
    """SQL that spells the canonical JSON of each row, for the fast path of verify()."""
    parts = []
    for number, name in enumerate(_SORTED_FIELDS):
        value = (
            f"json_quote({name})"
            if dialect == "sqlite"
            else f"coalesce(to_json({name})::text, 'null')"
        )
        parts.append(f"'{'{' if number == 0 else ','}\"{name}\":' || {value}")
    return " || ".join(parts) + " || '}'"


def _cursor(session: Session, batch: int) -> Any:
    connection = session.connection()
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    if connection.dialect.name == "postgresql":
        cursor = dbapi.cursor(name="ledger_verify")
        cursor.itersize = batch
        return cursor
    return dbapi.cursor()


def _stream_bodies(session: Session, upto: int, batch: int) -> Iterator[tuple[Any, ...]]:
    dialect = session.connection().dialect.name
    if dialect not in ("sqlite", "postgresql"):
        # Any other database: the columns, encoded here.
        for row in stream_rows(session, upto=upto, batch=batch):
            yield row[_SEQ], row[_PREV_HASH], row[_HASH], None
        return
    cursor = _cursor(session, batch)
    try:
        # Only constant column names and an int go into this text.
        query = f"SELECT seq, prev_hash, hash, {_body_sql(dialect)} FROM ledger_events "  # noqa: S608
        cursor.execute(query + f"WHERE seq <= {int(upto)} ORDER BY seq")
        while rows := cursor.fetchmany(batch):
            yield from rows
    finally:
        cursor.close()


def _recheck(session: Session, seq: int, digest: str) -> bool:
    """The definition itself: json.dumps-equivalent bytes built here from the columns."""
    row = session.execute(select(*ROW_COLUMNS[:-1]).where(LedgerEvent.seq == seq)).one()
    return hashlib.sha256(canonical_row(tuple(row))).hexdigest() == digest


def _verify_fast(
    session: Session, upto: int, on_progress: Callable[[int], None], batch: int = 20000
) -> Verification:
    """verify_rows() with the canonical JSON spelt by the database (json_quote on SQLite,
    to_json on PostgreSQL: the same escapes as Python's json) so that each event crosses
    the driver as four values instead of fourteen and is hashed here without per-field
    work. Wherever those bytes do not hash to the stored hash, the event is re-encoded
    here from its columns exactly as append() did, and only that decides: an escape the
    database spells differently costs time, never a false alarm."""
    expected_seq, prev, count = 1, GENESIS, 0
    sha256 = hashlib.sha256
    for seq, prev_hash, digest, body in _stream_bodies(session, upto, batch):
        if seq != expected_seq:
            return Verification(
                False,
                count,
                expected_seq - 1,
                prev,
                expected_seq,
                f"sequence gap: expected {expected_seq}, found {seq}",
            )
        if prev_hash != prev:
            return Verification(
                False,
                count,
                seq - 1,
                prev,
                seq,
                "prev_hash does not match the previous event's hash",
            )
        if (body is None or sha256(body.encode()).hexdigest() != digest) and not _recheck(
            session, seq, digest
        ):
            return Verification(
                False, count, seq - 1, prev, seq, "hash does not match the event's contents"
            )
        prev, expected_seq = digest, seq + 1
        count += 1
        if count % PROGRESS_EVERY == 0:
            on_progress(PROGRESS_EVERY)
    on_progress(count % PROGRESS_EVERY)
    return Verification(True, count, expected_seq - 1, prev)


def verify(session: Session, on_progress: Callable[[int], None] = lambda n: None) -> Verification:
    """Verify the chain up to the head as it is now (events appended meanwhile are left for
    the next run), then check that the head names the last event: a deleted tail shows."""
    head = session.get(LedgerHead, 1)
    head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS)
    result = _verify_fast(session, head_seq, on_progress)
    if not result.ok:
        return result
    if head is None or (head_seq, head_hash) != (result.head_seq, result.head_hash):
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
