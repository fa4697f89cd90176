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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import methodcaller
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from consent.models import LedgerEvent, LedgerHead, body_field

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
# The columns the database generates from the body: every hashed field but seq, which is
# the primary key (SQLite cannot generate one) and is checked against the body instead.
GENERATED_FIELDS = HASHED_FIELDS[1:]
SOURCES = ("ui", "api", "unsubscribe", "system")

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_state(state: Any) -> str:
    return _ENCODER.encode(state)


def canonical_bytes(event: dict[str, Any]) -> bytes:
    return _ENCODER.encode({name: event[name] for name in HASHED_FIELDS}).encode()


def event_hash(event: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(event)).hexdigest()


def timestamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Plain SQL on the session's own DB-API connection (inside its transaction): SQLAlchemy's
# per-statement handling, even for prebuilt Core statements, cost more than the statements
# themselves. Only constant names go into these texts; values are bound.
_NEXT_SEQ = "UPDATE ledger_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash"
_INSERT = "INSERT INTO ledger_events (seq, hash, body) VALUES (?, ?, ?)"
_SET_HEAD_HASH = "UPDATE ledger_head SET hash = ? WHERE id = 1"
# PostgreSQL: insert the event and move the head hash in one statement, one round trip.
_INSERT_AND_SET_HEAD_HASH = (
    "WITH event AS (INSERT INTO ledger_events (seq, hash, body) VALUES (%s, %s, %s)) "
    "UPDATE ledger_head SET hash = %s WHERE id = 1"
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
    dbapi, dialect = _dbapi(session)
    cursor = dbapi.cursor()
    try:
        # Taking the head row's lock first makes every appender wait its turn.
        cursor.execute(_NEXT_SEQ)
        seq, prev_hash = cursor.fetchone()
        body = _ENCODER.encode(
            {
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
        )
        digest = hashlib.sha256(body.encode()).hexdigest()
        if dialect == "postgresql":
            cursor.execute(_INSERT_AND_SET_HEAD_HASH, (seq, digest, body, digest))
        else:
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


BATCH = 20000
# Below this many events one process verifies: starting workers costs more than it saves.
PARALLEL_MIN = 100_000
MAX_WORKERS = 4

_hexdigest = methodcaller("hexdigest")
_sha256 = hashlib.sha256


def _needles(prefix: str, values: Iterable[str], suffix: str) -> list[str]:
    """[prefix + value + suffix for value in values], built by two C loops (join, split)
    instead of a Python one; the values are hex digests or numbers, never a newline."""
    return (prefix + (suffix + "\n" + prefix).join(values) + suffix).split("\n")


def _row_problem(seq: Any, expected: int, prev: str, digest: Any, body: Any) -> str | None:
    """What is wrong with one event, checked one step after another (None: nothing).

    The body's own prev_hash and seq are found as substrings: every value in a canonical
    body is a JSON string, integer or null, and a quote inside a string is always escaped,
    so ``,"prev_hash":"`` and ``,"seq":`` occur only where those keys are."""
    if seq != expected:
        return f"sequence gap: expected {expected}, found {seq}"
    if not isinstance(body, str) or not isinstance(digest, str):
        return "the event's body or hash is not text"
    try:
        data = body.encode()
    except UnicodeEncodeError:
        return "the event's body is not valid text"
    if _sha256(data).hexdigest() != digest:
        return "hash does not match the event's body"
    if f',"prev_hash":"{prev}"' not in body:
        return "prev_hash does not match the previous event's hash"
    if f',"seq":{seq},' not in body:
        return "the body's seq is not the event's seq"
    return None


def _batch_ok(rows: list[tuple[Any, ...]], expected: int, prev: str) -> bool:
    """The checks of _row_problem over a whole batch at once, each a C-level loop (map,
    list comparison) rather than Python code per event; hashing is most of what is left.
    False means some event is broken (or odd): _row_problem then finds which."""
    try:
        seqs, hashes, bodies = zip(*rows, strict=True)
        if seqs != tuple(range(expected, expected + len(rows))):
            return False
        digests = list(map(_hexdigest, map(_sha256, map(str.encode, bodies))))
        if digests != list(hashes):
            return False
        links = _needles(',"prev_hash":"', [prev, *digests[:-1]], '"')
        if not all(map(str.__contains__, bodies, links)):
            return False
        return all(map(str.__contains__, bodies, _needles(',"seq":', map(str, seqs), ",")))
    except (TypeError, ValueError):  # a value that is not text: let _row_problem say so
        return False


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


def _rows(dbapi: Any, dialect: str, query: str, batch: int) -> Iterator[list[tuple[Any, ...]]]:
    """The query's rows in batches straight from the driver: on PostgreSQL through a
    server-side (named) cursor, so a million events never sit in memory."""
    if dialect == "postgresql":
        cursor = dbapi.cursor(name="ledger_verify")
        cursor.itersize = batch
    else:
        cursor = dbapi.cursor()
        cursor.arraysize = batch
    try:
        cursor.execute(query)
        while rows := cursor.fetchmany(batch):
            yield rows
    finally:
        cursor.close()


def _scan(
    dbapi: Any,
    dialect: str,
    first: int,
    last: int,
    prev: str,
    on_progress: Callable[[int], None],
    batch: int = BATCH,
) -> _Scan:
    """Check events first..last in seq order: each body hashes to its hash, names the
    previous event's hash as prev_hash and its own seq. Only seq, hash and body are read."""
    query = (
        "SELECT seq, hash, body FROM ledger_events "  # noqa: S608 -- two ints
        f"WHERE seq BETWEEN {int(first)} AND {int(last)} ORDER BY seq"
    )
    expected = first
    for rows in _rows(dbapi, dialect, query, batch):
        if not _batch_ok(rows, expected, prev):
            for seq, digest, body in rows:
                problem = _row_problem(seq, expected, prev, digest, body)
                if problem is not None:
                    return _Scan(expected - first, prev, expected, problem)
                prev, expected = digest, expected + 1
        else:
            expected += len(rows)
            prev = rows[-1][1]
        on_progress(len(rows))
    if expected <= last:  # the range ends early: events missing from ``expected`` on
        return _Scan(expected - first, prev, expected)
    return _Scan(expected - first, prev)


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


# --- verification in worker processes ---------------------------------------------------------

_worker: dict[str, Engine] = {}


def _worker_start(engine: Engine) -> None:
    """In a freshly forked worker: forget the parent's pooled connections (they are the
    parent's to use and close) and open new ones from the same engine configuration."""
    engine.dispose(close=False)
    _worker["engine"] = engine
    gc.disable()


def _worker_scan(first: int, last: int) -> _Scan:
    engine = _worker["engine"]
    connection = engine.raw_connection()
    try:
        dbapi = connection.dbapi_connection
        prev = GENESIS
        if first > 1:
            cursor = dbapi.cursor()
            cursor.execute(f"SELECT hash FROM ledger_events WHERE seq = {int(first) - 1}")  # noqa: S608
            found = cursor.fetchone()
            cursor.close()
            # A missing predecessor shows in the range before this one, which comes first.
            prev = found[0] if found else ""
        return _scan(dbapi, engine.dialect.name, first, last, prev, lambda count: None)
    finally:
        connection.rollback()
        connection.close()


def default_workers() -> int:
    """Worker processes for a large ledger: one per available CPU, at most MAX_WORKERS;
    1 where processes cannot be forked (each worker inherits the engine's settings)."""
    if "fork" not in multiprocessing.get_all_start_methods() or os.name != "posix":
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def _can_fork_for(engine: Engine) -> bool:
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    # An in-memory SQLite database exists only in this process's connection.
    database = engine.url.database or ""
    return not (
        engine.dialect.name == "sqlite"
        and (database in ("", ":memory:") or "mode=memory" in database)
    )


def _scan_parallel(
    engine: Engine, upto: int, workers: int, on_progress: Callable[[int], None]
) -> list[_Scan]:
    """Split 1..upto into ranges, a few per worker (so the progress bar moves), check them
    in forked worker processes, each on its own connection, and return them in order.
    Each range starts from the stored hash of the event before it, which the range
    before checks against that event's body, so every link is checked exactly once."""
    size = max(BATCH, -(-upto // (workers * 4)))
    ranges = [(first, min(first + size - 1, upto)) for first in range(1, upto + 1, size)]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_worker_start, initargs=(engine,)
    ) as pool:
        futures = [pool.submit(_worker_scan, first, last) for first, last in ranges]
        scans = []
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


def _generated_problem(session: Session) -> Verification | None:
    """Confirm (from the catalog, not the rows) that every field column is still
    generated from the body by the vault's own expression. Someone who dropped an
    expression could rewrite that column at will; then name the first event whose column
    differs from its body (if any yet) and the columns."""
    dialect = session.connection().dialect
    actual = _column_expressions(session)
    wrong = [
        name
        for name in GENERATED_FIELDS
        if actual.get(name) is None
        or _normalised(actual[name] or "")
        != _normalised(str(body_field(name, name == "notice_version").compile(dialect=dialect)))
    ]
    if not wrong:
        return None
    present = [name for name in wrong if name in actual]
    broken_seq = None
    if present:
        differs = "IS NOT" if dialect.name == "sqlite" else "IS DISTINCT FROM"
        compiled = {
            name: body_field(name, name == "notice_version").compile(dialect=dialect)
            for name in present
        }
        # Only constant column names and the vault's own expressions go into this text.
        broken_seq = (
            session.connection()
            .exec_driver_sql(
                "SELECT min(seq) FROM ledger_events WHERE "  # noqa: S608
                + " OR ".join(f"{name} {differs} {compiled[name]}" for name in present)
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
    else is trusted). Large ledgers are checked by ``workers`` forked processes (default:
    one per CPU, see default_workers), each over ranges of the committed events."""
    problem = _generated_problem(session)
    if problem is not None:
        return problem
    head = session.get(LedgerHead, 1)
    head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS)
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    workers = default_workers() if workers is None else workers
    with _no_cyclic_gc():
        if workers > 1 and head_seq >= PARALLEL_MIN and _can_fork_for(engine):
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
