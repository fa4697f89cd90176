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
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from operator import itemgetter
from typing import Any

from sqlalchemy import select
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


# Plain SQL on the session's own DB-API connection (inside its transaction): SQLAlchemy's
# per-statement handling, even for prebuilt Core statements, cost more than the three
# statements themselves. Only constant names go into these texts; values are bound.
_EVENT_COLUMNS = (*HASHED_FIELDS, "hash", "body")
_APPEND_SQL = {
    marker: (
        "UPDATE ledger_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash",
        f"INSERT INTO ledger_events ({', '.join(_EVENT_COLUMNS)}) "  # noqa: S608
        f"VALUES ({', '.join([marker] * len(_EVENT_COLUMNS))})",
        f"UPDATE ledger_head SET hash = {marker} WHERE id = 1",  # noqa: S608
    )
    for marker in ("?", "%s")
}


def _dbapi(session: Session) -> tuple[Any, str]:
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
    dbapi, dialect = _dbapi(session)
    next_seq, insert_event, set_head_hash = _APPEND_SQL["?" if dialect == "sqlite" else "%s"]
    cursor = dbapi.cursor()
    # Taking the head row's lock first makes every appender wait its turn.
    cursor.execute(next_seq)
    seq, prev_hash = cursor.fetchone()
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
    body = canonical_row(tuple(event.values()))
    digest = hashlib.sha256(body).hexdigest()
    cursor.execute(insert_event, (*event.values(), digest, body.decode()))
    cursor.execute(set_head_hash, (digest,))
    cursor.close()
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


def _body_sql(dialect: str) -> str:
    """SQL that spells the canonical JSON of a row from its columns (json_quote on SQLite,
    to_json on PostgreSQL: the same escapes as Python's json, as far as they go)."""
    parts = []
    for number, name in enumerate(_SORTED_FIELDS):
        value = (
            f"json_quote({name})"
            if dialect == "sqlite"
            else f"coalesce(to_json({name})::text, 'null')"
        )
        parts.append(f"'{'{' if number == 0 else ','}\"{name}\":' || {value}")
    return " || ".join(parts) + " || '}'"


def _cursor(session: Session, batch: int, name: str) -> Any:
    dbapi, dialect = _dbapi(session)
    if dialect == "postgresql":
        cursor = dbapi.cursor(name=name)
        cursor.itersize = batch
        return cursor
    cursor = dbapi.cursor()
    cursor.arraysize = batch
    return cursor


def _fetch(session: Session, query: str, batch: int, name: str) -> Iterator[tuple[Any, ...]]:
    cursor = _cursor(session, batch, name)
    try:
        cursor.execute(query)
        while rows := cursor.fetchmany(batch):
            yield from rows
    finally:
        cursor.close()


def _body_matches_columns(session: Session, seq: int) -> bool:
    """The definition itself: the stored body is byte for byte the canonical JSON built
    here from the event's columns, exactly as append() built it."""
    row = session.execute(
        select(*ROW_COLUMNS[:-1], LedgerEvent.body).where(LedgerEvent.seq == seq)
    ).one()
    return canonical_row(tuple(row)).decode() == row[-1]


def _mismatch_candidates(session: Session, upto: int) -> Callable[[], list[int]]:
    """Start the query for the seqs whose body differs from the columns as the database
    spells them, on a connection of its own in a thread: it returns no rows unless
    something differs, so the database does the whole scan without Python's lock and runs
    beside the hashing. Returns a function that waits for the seqs."""
    engine = session.get_bind()
    dialect = engine.dialect.name
    differs = "IS NOT" if dialect == "sqlite" else "IS DISTINCT FROM"
    # Only constant column names and an int go into this text.
    query = (
        "SELECT seq FROM ledger_events "  # noqa: S608
        f"WHERE seq <= {int(upto)} AND body {differs} ({_body_sql(dialect)}) ORDER BY seq"
    )
    separate = dialect == "postgresql" or (
        dialect == "sqlite" and engine.url.database not in (None, "", ":memory:")
    )
    if not separate:
        seqs = [row[0] for row in _fetch(session, query, 20000, "ledger_columns")]
        return lambda: seqs
    found: list[int] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with engine.connect() as connection:
                found.extend(connection.exec_driver_sql(query).scalars())
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="ledger-verify-columns", daemon=True)
    thread.start()

    def wait() -> list[int]:
        thread.join()
        if failed:
            raise failed[0]
        return found

    return wait


def _first_mismatched_body(session: Session, upto: int, batch: int) -> int | None:
    """The first seq whose stored body is not the canonical JSON of its columns, in one
    query: the database spells each row's JSON from its columns and compares it with the
    body, so nothing but the (normally no) differing seqs crosses the driver. A row where
    the spellings differ is re-encoded here and only that decides: an escape the database
    spells differently from Python costs time, never a false alarm."""
    dialect = session.connection().dialect.name
    if dialect in ("sqlite", "postgresql"):
        # Only constant column names and an int go into this text.
        differs = "IS NOT" if dialect == "sqlite" else "IS DISTINCT FROM"
        query = (
            "SELECT seq FROM ledger_events "  # noqa: S608
            f"WHERE seq <= {int(upto)} AND body {differs} ({_body_sql(dialect)}) "
            "ORDER BY seq"
        )
        candidates = (row[0] for row in _fetch(session, query, batch, "ledger_columns"))
    else:
        candidates = iter(
            session.execute(select(LedgerEvent.seq).where(LedgerEvent.seq <= upto)).scalars()
        )
    for seq in candidates:
        if not _body_matches_columns(session, seq):
            return seq
    return None


def _verify_fast(
    session: Session, upto: int, on_progress: Callable[[int], None], batch: int = 20000
) -> Verification:
    """Each event's stored canonical body is hashed here as it streams from the driver
    (four values a row, no encoding work) and checked against its hash and the chain; one
    query before that finds the first event whose columns disagree with its body. So a
    change to any column, the body or the hash names that event."""
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        candidates = _mismatch_candidates(session, upto)

        def first_mismatched() -> int | None:
            for seq in candidates():
                if not _body_matches_columns(session, seq):
                    return seq
            return None
    else:

        def first_mismatched() -> int | None:
            return _first_mismatched_body(session, upto, batch)

    result = _stream_check(session, upto, on_progress, batch)
    mismatched = first_mismatched()
    if mismatched is not None and (result.ok or mismatched < (result.broken_seq or 0)):
        return Verification(
            False,
            mismatched - 1,
            mismatched - 1,
            _hash_of(session, mismatched - 1),
            mismatched,
            "the event's columns do not match its hashed body",
        )
    return result


def _hash_of(session: Session, seq: int) -> str:
    if seq == 0:
        return GENESIS
    return session.execute(select(LedgerEvent.hash).where(LedgerEvent.seq == seq)).scalar_one()


def _stream_check(
    session: Session, upto: int, on_progress: Callable[[int], None], batch: int
) -> Verification:
    query = (
        "SELECT seq, prev_hash, hash, body FROM ledger_events "  # noqa: S608
        f"WHERE seq <= {int(upto)} ORDER BY seq"
    )
    expected_seq, prev, count = 1, GENESIS, 0
    sha256 = hashlib.sha256
    for seq, prev_hash, digest, body in _fetch(session, query, batch, "ledger_verify"):
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
        if sha256(body.encode()).hexdigest() != digest:
            return Verification(
                False, count, seq - 1, prev, seq, "hash does not match the event's body"
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
