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
"""

from __future__ import annotations

import gc
import hashlib
import json
import multiprocessing
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Dialect, Engine, select
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
    dbapi, dialect = _dbapi(session)
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


# --- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None


# Events per batch. SQLite: about 1 MB of bodies, which the allocator hands out again
# batch after batch; 10 MB buffers were mapped fresh from the operating system each time,
# and the page faults cost more than the extra queries save. PostgreSQL hashes in the
# server, so only the batch's hashes come here, and fewer, larger queries cost less.
BATCH = {"sqlite": 2000, "postgresql": 20000}
# Below this many events one process verifies: starting workers costs more than it saves.
PARALLEL_MIN = 100_000
MAX_WORKERS = 4

_sha256 = hashlib.sha256

# SQLite: one row per batch of events, put together by the database (in C, without
# Python's lock) while a second thread hashes the batch before: how many events in the
# range name their own seq in their body -- the whole range, if that is its length, as
# seqs are unique -- and the hashes, prev_hashes and bodies joined. Joining rows costs
# SQLite less than handing them to Python one by one. The body seq and prev_hash are
# columns the database generates from the body (verify makes sure it still does). The
# range is bound, not spelt into the text: one prepared statement serves every batch, and
# SQLite keeps its buffers from one batch to the next (a new statement per batch meant new
# memory from the operating system every time, whose page faults took half the time).
_SQLITE_BATCH_SQL = (
    "SELECT sum(body_seq = seq), group_concat(hash, ','), group_concat(prev_hash, ','), "
    "CAST(group_concat(body, char(10)) AS BLOB) "
    "FROM ledger_events WHERE seq BETWEEN ? AND ?"
)
# PostgreSQL: the server hashes each body itself and returns just the count, the seq
# range, how many events do not hash to their hash or name another seq, and each event's
# hash and prev_hash joined, for the links to be checked here. Hashing in Python instead
# (the rows sent in batches, a second thread hashing) was as fast on one connection, but
# spread over processes it gained less than the server's processes do over connections,
# as every body then crosses the socket and is parsed here (1,000,000 events: 0.37 of
# hashlib against 0.45-0.47). textsend gives the text's bytes in the client encoding,
# UTF-8 under psycopg, for less than convert_to (any other spelling would only send the
# batch to the event-by-event check in Python).
_POSTGRESQL_BATCH_SQL = (
    "SELECT count(*), min(seq), max(seq), count(*) FILTER (WHERE "
    "encode(sha256(textsend(body)), 'hex') IS DISTINCT FROM hash "
    "OR body_seq IS DISTINCT FROM seq), "
    "string_agg(hash || ',' || prev_hash, ',') "
    "FROM (SELECT seq, hash, prev_hash, body_seq, body FROM ledger_events "
    "WHERE seq BETWEEN %s AND %s ORDER BY seq) AS batch"
)
_ROWS_SQL = {
    dialect: "SELECT seq, hash, prev_hash, body_seq, body FROM ledger_events "  # noqa: S608
    f"WHERE seq BETWEEN {marker} AND {marker} ORDER BY seq"  # the driver's parameter marker
    for dialect, marker in (("sqlite", "?"), ("postgresql", "%s"))
}


def _batch_ok(first: int, last: int, prev: str, batch: tuple[Any, ...]) -> bool:
    """Every event first..last is there, names its own seq, hashes to its hash and names
    the hash before as prev_hash -- checked on SQLite's joined values, so that hashing is
    nearly all the Python work per event. False means some event is broken (or SQLite
    joined them in another order): _row_problem then finds which."""
    own_seqs, hashes, prev_hashes, bodies = batch
    if own_seqs != last - first + 1:
        return False
    # A body cannot hold a raw newline (JSON escapes it): one piece per event.
    pieces = bytes(bodies).split(b"\n")
    if len(pieces) != own_seqs:
        return False
    # Joined with commas, which no hex digest holds: equal strings, equal hashes one by one.
    # (A comprehension: cheaper here than map with a methodcaller.)
    sha256 = _sha256
    digests = ",".join([sha256(piece).hexdigest() for piece in pieces])
    return digests == hashes and prev_hashes == (prev + "," + digests)[:-65]


def _row_problem(
    seq: Any, expected: int, prev: str, digest: Any, prev_hash: Any, body_seq: Any, body: Any
) -> str | None:
    """What is wrong with one event, checked one step after another (None: nothing)."""
    if seq != expected:
        return f"sequence gap: expected {expected}, found {seq}"
    try:
        data = body.encode() if isinstance(body, str) else bytes(body)
    except (UnicodeEncodeError, TypeError):
        return "the event's body is not valid text"
    if _sha256(data).hexdigest() != digest:
        return "hash does not match the event's body"
    if prev_hash != prev:
        return "prev_hash does not match the previous event's hash"
    if body_seq != seq:
        return "the body's seq is not the event's seq"
    return None


@dataclass(frozen=True)
class _Scan:
    """The outcome of checking events first..last against the hash before first."""

    count: int  # events found good, from first on
    last_hash: str  # the hash of the last good event (the one before first if none)
    broken_seq: int | None = None
    problem: str | None = None

    @property
    def complete(self) -> bool:
        """No problem and no event missing at the end of the range."""
        return self.problem is None and self.broken_seq is None


def _rows_scan(dbapi: Any, dialect: str, first: int, last: int, prev: str) -> _Scan:
    """Event by event, first..last: slow, and exact about what is wrong where."""
    cursor = dbapi.cursor()
    try:
        cursor.execute(_ROWS_SQL[dialect], (first, last))
        expected = first
        for seq, digest, prev_hash, body_seq, body in cursor.fetchall():
            problem = _row_problem(seq, expected, prev, digest, prev_hash, body_seq, body)
            if problem is not None:
                return _Scan(expected - first, prev, expected, problem)
            prev, expected = digest, expected + 1
    finally:
        cursor.close()
    if expected <= last:  # the range ends early: events missing from ``expected`` on
        return _Scan(expected - first, prev, expected)
    return _Scan(expected - first, prev)


_Checked = tuple["Future[bool]", str]  # the batch's verdict (to come), its last stored hash


def _in_server(cursor: Any, checker: Executor, low: int, high: int, prev: str) -> _Checked:
    """PostgreSQL checks the batch's hashes and seqs itself, this thread the links, with
    no code per event: the joined (hash, prev_hash) pairs must be the hash before and the
    batch's own hashes but the last, in that order. (Were they joined in another order
    than seq's, the links could not all hold: prev_hash is unique.)"""
    cursor.execute(_POSTGRESQL_BATCH_SQL, (low, high))
    found, lowest, highest, wrong, pairs = cursor.fetchone()
    joined = pairs.split(",") if pairs else []
    hashes, prev_hashes = joined[0::2], joined[1::2]
    verdict: Future[bool] = Future()
    verdict.set_result(
        (found, lowest, highest, wrong, len(joined)) == (high - low + 1, low, high, 0, 2 * found)
        and prev_hashes == [prev, *hashes[:-1]]
    )
    return verdict, hashes[-1] if hashes else ""


def _hashing_here(cursor: Any, checker: Executor, low: int, high: int, prev: str) -> _Checked:
    """SQLite joins the batch (the driver lets go of Python's lock meanwhile) and the
    checker thread hashes it, while this thread has SQLite join the next one."""
    cursor.execute(_SQLITE_BATCH_SQL, (low, high))
    joined = cursor.fetchone()
    # The next batch links to this one's last stored hash; whether that is the hash of
    # its body, this batch's check says.
    return checker.submit(_batch_ok, low, high, prev, joined), joined[1][-64:] if joined[1] else ""


def _scan(
    dbapi: Any,
    dialect: str,
    first: int,
    last: int,
    prev: str,
    on_progress: Callable[[int], None],
) -> _Scan:
    """Check events first..last, starting from the hash before first, in batches (BATCH),
    one being checked while the next is read. A batch that does not check out is
    gone through event by event to name the first broken one."""
    check = _in_server if dialect == "postgresql" else _hashing_here
    batch = BATCH[dialect]
    cursor = dbapi.cursor()
    count = 0
    pending: deque[tuple[int, int, str, Future[bool]]] = deque()

    def settle() -> _Scan | None:
        nonlocal count
        low, high, before, verdict = pending.popleft()
        if not verdict.result():
            scan = _rows_scan(dbapi, dialect, low, high, before)
            if not scan.complete:
                return _Scan(count + scan.count, scan.last_hash, scan.broken_seq, scan.problem)
        count += high - low + 1
        on_progress(high - low + 1)
        return None

    try:
        with ThreadPoolExecutor(1, thread_name_prefix="ledger-verify") as checker:
            for low in range(first, last + 1, batch):
                high = min(low + batch - 1, last)
                verdict, after = check(cursor, checker, low, high, prev)
                pending.append((low, high, prev, verdict))
                prev = after
                if len(pending) > 1 and (broken := settle()) is not None:
                    return broken
            while pending:
                if (broken := settle()) is not None:
                    return broken
    finally:
        for *_, verdict in pending:
            verdict.cancel()
        cursor.close()
    return _Scan(count, prev)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Verification allocates millions of short-lived tuples; the cyclic collector would
    keep walking them (a third of the time) though none of them can form a cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- verification of ranges in parallel ------------------------------------------------------


def _hash_before(dbapi: Any, first: int) -> str:
    """The stored hash of the event before ``first``: where a range's chain starts. (A
    missing predecessor shows in the range before, which is reported first.)"""
    if first == 1:
        return GENESIS
    cursor = dbapi.cursor()
    try:
        cursor.execute(f"SELECT hash FROM ledger_events WHERE seq = {int(first) - 1}")  # noqa: S608
        found = cursor.fetchone()
    finally:
        cursor.close()
    return found[0] if found else ""


def _scan_range(engine: Engine, first: int, last: int) -> _Scan:
    """One range on a connection of its own from ``engine``."""
    connection = engine.raw_connection()
    try:
        dbapi = connection.dbapi_connection
        prev = _hash_before(dbapi, first)
        return _scan(dbapi, engine.dialect.name, first, last, prev, lambda count: None)
    finally:
        connection.rollback()
        connection.close()


_worker: dict[str, Engine] = {}


def _worker_start(engine: Engine) -> None:
    """In a freshly forked worker: forget the parent's pooled connections (they are the
    parent's to use and close) and open new ones from the same engine configuration."""
    engine.dispose(close=False)
    _worker["engine"] = engine
    gc.disable()


def _worker_scan(first: int, last: int) -> _Scan:
    return _scan_range(_worker["engine"], first, last)


def default_workers(dialect: str = "sqlite") -> int:
    """How many ranges of a large ledger are checked at once. SQLite: one forked worker
    process per two available CPUs, as each keeps two busy (SQLite joining, Python
    hashing), at most MAX_WORKERS; 1 where processes cannot be forked. PostgreSQL: one
    connection more than CPUs, as its server processes also wait for the disk (or the
    operating system's cache) now and then."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    if dialect == "postgresql":
        return min(cpus, MAX_WORKERS) + 1
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(cpus // 2, MAX_WORKERS))


def _can_split(engine: Engine) -> bool:
    if engine.dialect.name == "postgresql":
        return True
    # SQLite ranges go to forked processes; an in-memory database exists only here.
    database = engine.url.database or ""
    return (
        engine.dialect.name == "sqlite"
        and "fork" in multiprocessing.get_all_start_methods()
        and database not in ("", ":memory:")
        and "mode=memory" not in database
    )


def _scan_parallel(
    engine: Engine, upto: int, workers: int, on_progress: Callable[[int], None]
) -> list[_Scan]:
    """Split 1..upto into ranges, a few per worker (so the progress bar moves), check them
    on ``workers`` connections at once and return them in order: on PostgreSQL from
    threads (the server does the work), on SQLite in forked processes (the hashing is done
    here, under Python's lock). Each range starts from the stored hash of the event before
    it, which the range before checks against that event's body: every link is checked."""
    size = max(BATCH[engine.dialect.name], -(-upto // (workers * 4)))
    ranges = [(first, min(first + size - 1, upto)) for first in range(1, upto + 1, size)]
    pool: Executor
    if engine.dialect.name == "postgresql":
        pool = ThreadPoolExecutor(workers, thread_name_prefix="ledger-verify")
        futures = [pool.submit(_scan_range, engine, first, last) for first, last in ranges]
    else:
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_worker_start,
            initargs=(engine,),
        )
        futures = [pool.submit(_worker_scan, first, last) for first, last in ranges]
    scans = []
    with pool:
        for future in futures:
            scan = future.result()
            on_progress(scan.count)
            scans.append(scan)
            if not scan.complete:
                for later in futures:
                    later.cancel()
                break
    return scans


def _merge(session: Session, scans: list[_Scan], upto: int) -> Verification:
    """One verdict from the ranges' outcomes, as if one scan had gone from 1 to upto."""
    count, prev = 0, GENESIS
    for scan in scans:
        if scan.problem is not None:
            return Verification(
                False, count + scan.count, scan.broken_seq - 1, scan.last_hash,
                scan.broken_seq, scan.problem,
            )  # fmt: skip
        count, prev = count + scan.count, scan.last_hash
        if scan.broken_seq is not None:
            # Events are missing from broken_seq on: a gap if any event follows, else a
            # deleted tail, which the head check below reports.
            following = session.scalar(
                select(LedgerEvent.seq)
                .where(LedgerEvent.seq > scan.broken_seq, LedgerEvent.seq <= upto)
                .order_by(LedgerEvent.seq)
                .limit(1)
            )
            if following is not None:
                return Verification(
                    False,
                    count,
                    scan.broken_seq - 1,
                    prev,
                    scan.broken_seq,
                    f"sequence gap: expected {scan.broken_seq}, found {following}",
                )
            break
    return Verification(True, count, count, prev)


# --- the columns the database generates from the body ----------------------------------------


def _normalised(expression: str) -> str:
    """An expression without spaces, parentheses, ``::text`` and case, so that the text
    a database reports compares with the text the model compiles to."""
    return re.sub(r"[\s()]|::text", "", expression).lower()


def _column_expressions(session: Session) -> dict[str, str | None]:
    """Each column of ledger_events, and its generation expression (None: not generated)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        rows = connection.exec_driver_sql(
            "SELECT column_name, is_generated, generation_expression "
            "FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'ledger_events'"
        ).all()
        return {name: expr if generated == "ALWAYS" else None for name, generated, expr in rows}
    # SQLite: table_xinfo flags generated columns (hidden 2 virtual, 3 stored); their
    # expressions are only in the CREATE TABLE text, as written.
    hidden = {
        row[1]: row[6]
        for row in connection.exec_driver_sql("PRAGMA table_xinfo(ledger_events)").all()
    }
    sql = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'ledger_events'"
    ).scalar_one_or_none()
    expressions: dict[str, str | None] = {}
    for name, flag in hidden.items():
        found = re.search(
            rf'[(,]\s*"?{re.escape(name)}"?\s[^,]*?GENERATED\s+ALWAYS\s+AS\s*\((.*?)\)'
            r"\s*(?:VIRTUAL|STORED)?\s*(?:NOT\s+NULL\s*)?(?:,|\)\s*$)",
            sql or "",
            re.IGNORECASE | re.DOTALL,
        )
        expressions[name] = found.group(1) if flag in (2, 3) and found else None
    return expressions


def _generation_expression(column: str, dialect: Dialect) -> str:
    """The expression the model generates the column with, as this database spells it."""
    computed = LedgerEvent.__table__.c[column].computed
    assert computed is not None
    return str(computed.sqltext.compile(dialect=dialect))


def _generated_problem(session: Session) -> Verification | None:
    """Confirm (from the catalog, not the rows) that every field column is still
    generated from the body by the vault's own expression. Someone who dropped an
    expression could rewrite that column at will; then name the first event whose column
    differs from its body (if any yet) and the columns."""
    dialect = session.connection().dialect
    actual = _column_expressions(session)
    expected = {name: _generation_expression(name, dialect) for name in GENERATED_COLUMNS}
    wrong = [
        name
        for name in GENERATED_COLUMNS
        if actual.get(name) is None
        or _normalised(actual[name] or "") != _normalised(expected[name])
    ]
    if not wrong:
        return None
    present = [name for name in wrong if name in actual]
    broken_seq = None
    if present:
        differs = "IS NOT" if dialect.name == "sqlite" else "IS DISTINCT FROM"
        # Only constant column names and the vault's own expressions go into this text.
        broken_seq = (
            session.connection()
            .exec_driver_sql(
                "SELECT min(seq) FROM ledger_events WHERE "  # noqa: S608
                + " OR ".join(f"{name} {differs} {expected[name]}" for name in present)
            )
            .scalar()
        )
    return Verification(
        False,
        0,
        0,
        GENESIS,
        broken_seq,
        "columns no longer generated from the event's body by the vault's expression: "
        + ", ".join(wrong),
    )


def verify(
    session: Session,
    on_progress: Callable[[int], None] = lambda n: None,
    *,
    workers: int | None = None,
) -> Verification:
    """Verify the chain up to the head as it is now (events appended meanwhile are left for
    the next run), then check that the head names the last event: a deleted tail shows.

    First, once, that the field columns are still generated from the body (else nothing
    else is trusted). Large ledgers are checked in ranges on ``workers`` connections at
    once (default: see default_workers), which see only committed events; ``workers=1``
    checks in this process on the session's connection."""
    problem = _generated_problem(session)
    if problem is not None:
        return problem
    head = session.get(LedgerHead, 1)
    head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS)
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    workers = default_workers(engine.dialect.name) if workers is None else workers
    with _no_cyclic_gc():
        if workers > 1 and head_seq >= PARALLEL_MIN and _can_split(engine):
            scans = _scan_parallel(engine, head_seq, workers, on_progress)
        else:
            dbapi, dialect = _dbapi(session)
            scans = [_scan(dbapi, dialect, 1, head_seq, GENESIS, on_progress)]
    result = _merge(session, scans, head_seq)
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
