"""The consent ledger: appends and verification, each beside its floor in the same run.

* Append: one event per transaction through ``vault.consents.ledger.append`` + an ORM session's
  commit (what every consent change pays on top of its own writes), beside a raw
  single-row INSERT + COMMIT through the DB-API into a table with the same columns and
  indexes, in the same database; each side on one connection it holds throughout.
* Verify: ``vault.consents.ledger.verify`` over N events (1,000,000 by default) in a fresh
  process, as the CLI runs it (every body streamed, parsed and hashed in Python), its time
  against the goal (15 s) and its peak resident memory against the goal (150 MB), printed
  beside bare single-threaded ``hashlib.sha256(...).hexdigest()`` over exactly the same
  canonical bytes (the bytes stored in each event's ``body``), for information. The events are
  generated fast: the chain is computed in Python and bulk-inserted (executemany on SQLite,
  COPY on PostgreSQL) in big transactions, not appended one by one; the database
  generates the field columns from each body as it would for an append.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from bench.profile_store import Target, _migrate, _postgres_target, _sqlite_target, bench_config
from bench.timing import Rate, run_for
from consent import ledger
from vault.consents import ledger as ledger_store
from vault.crypto.keyring import Keyring

BATCH = 50_000
RAW_TABLE = "bench_ledger_raw"
COLUMNS = [*ledger.HASHED_FIELDS, "hash"]
# What an append writes; the database generates the rest from the body.
EVENT_COLUMNS = ["seq", "hash", "body"]


@dataclass(frozen=True)
class LedgerResult:
    database: str
    append: Rate
    raw_insert: Rate
    events: int
    event_bytes: int
    verify: Rate  # one process, every body parsed and hashed in Python
    verify_peak_mb: float  # the verifying process's peak resident memory
    hashlib: Rate
    generate_seconds: float


def _app(target: Target, keyring_text: str) -> Flask:
    """The app as the operator CLI builds it (``vault.cli``): bulk generation and
    verification run long, which the request-serving statement timeout would cut."""
    from vault import create_app

    return create_app({**bench_config(target, keyring_text), "VAULT_DB_STATEMENT_TIMEOUT": None})


def _progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def _raw_table(metadata: sa.MetaData) -> sa.Table:
    """ledger_events' columns and indexes under other names: the same row, the same index
    maintenance, none of the ledger's logic."""
    return sa.Table(
        RAW_TABLE,
        metadata,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False, index=True),
        sa.Column("subject", sa.String(64), nullable=False, index=True),
        sa.Column("vendor_id", sa.String(36), index=True),
        sa.Column("channel", sa.String(10)),
        sa.Column("topic", sa.String(64)),
        sa.Column("prev_state", sa.Text, nullable=False),
        sa.Column("new_state", sa.Text, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("source", sa.String(12), nullable=False),
        sa.Column("notice_version", sa.Integer),
        sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
    )


def _event(seq: int, prev_hash: str) -> dict[str, Any]:
    """A typical topic-consent change, as append() stores it."""
    return {
        "seq": seq,
        "at": f"2025-06-01T12:00:00.{seq % 1_000_000:06d}Z",
        "event_type": "topic_consent",
        "subject": "s" + hashlib.blake2s(str(seq % 5000).encode(), digest_size=21).hexdigest(),
        "vendor_id": f"0b9c1f7e-1234-4d6f-9a1b-{seq % 97:012d}",
        "channel": ("email", "sms", "phone", "post", "push")[seq % 5],
        "topic": "newsletter-weekly",
        "prev_state": '{"expires_at":null,"state":"withdrawn"}',
        "new_state": '{"expires_at":null,"state":"granted"}',
        "actor": "customer",
        "source": "ui",
        "notice_version": 3,
        "prev_hash": prev_hash,
    }


def _measure_appends(app: Flask, seconds: float) -> tuple[Rate, Rate]:
    from vault.extensions import db

    counter = itertools.count()
    session: Session

    def append_one() -> None:
        number = next(counter)
        ledger_store.append(
            session,
            event_type="topic_consent",
            subject=f"subject-{number % 5000}",
            actor="customer",
            source="ui",
            vendor_id="0b9c1f7e-1234-4d6f-9a1b-2c3d4e5f6a7b",
            channel="email",
            topic="newsletter-weekly",
            prev_state={"state": "withdrawn", "expires_at": None},
            new_state={"state": "granted", "expires_at": None},
            notice_version=3,
        )
        session.commit()

    with app.app_context():
        _raw_table(sa.MetaData()).create(db.engine)
        # Both sides hold one connection for all their transactions, as the raw side must;
        # the vault's side still goes through an ORM session and its transaction, as every
        # consent change does. (Checking a connection out of the pool and back in for each
        # transaction is the web request's cost, paid once per request, not the ledger's.)
        with db.engine.connect() as connection:
            session = Session(bind=connection)
            append = run_for(seconds, append_one)
            session.close()

        raw = db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            marker = "%s" if db.engine.dialect.name == "postgresql" else "?"
            statement = (
                f"INSERT INTO {RAW_TABLE} ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join([marker] * len(COLUMNS))})"
            )
            numbers = itertools.count(1)

            def insert_one() -> None:
                seq = next(numbers)
                row = _event(seq, f"{seq:064x}")
                cursor.execute(statement, (*row.values(), f"{seq + 1:064x}"))
                raw.commit()

            raw_insert = run_for(seconds, insert_one)
            cursor.execute(f"DROP TABLE {RAW_TABLE}")
            raw.commit()
        finally:
            raw.close()
    return append, raw_insert


def _generate(app: Flask, events: int) -> tuple[Rate, int, float]:
    """Write ``events`` chained events straight into ledger_events (replacing what the
    append measurement left) and time bare hashlib over each batch's canonical bytes."""
    from vault.extensions import db

    started = time.perf_counter()
    hashing_seconds = 0.0
    total_bytes = 0
    sha256 = hashlib.sha256
    with app.app_context():
        postgres = db.engine.dialect.name == "postgresql"
        raw = db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("DELETE FROM ledger_events")
            marker = "%s" if postgres else "?"
            insert = (
                f"INSERT INTO ledger_events ({', '.join(EVENT_COLUMNS)}) "
                f"VALUES ({', '.join([marker] * len(EVENT_COLUMNS))})"
            )
            prev = ledger.GENESIS
            for first in range(1, events + 1, BATCH):
                last = min(first + BATCH - 1, events)
                rows = []
                blobs = []
                for seq in range(first, last + 1):
                    event = _event(seq, prev)
                    blob = ledger.canonical_bytes(event)
                    prev = sha256(blob).hexdigest()
                    blobs.append(blob)
                    rows.append((seq, prev, blob.decode()))
                # The baseline: bare hashlib over exactly these bytes, nothing else.
                begin = time.perf_counter()
                for blob in blobs:
                    sha256(blob).hexdigest()
                hashing_seconds += time.perf_counter() - begin
                total_bytes += sum(map(len, blobs))
                if postgres:
                    copy_sql = f"COPY ledger_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
                    with cursor.copy(copy_sql) as copy:
                        for row in rows:
                            copy.write_row(row)
                else:
                    cursor.executemany(insert, rows)
                raw.commit()
                _progress(f"generated {last:,} of {events:,} ledger events")
            cursor.execute(f"UPDATE ledger_head SET seq = {events}, hash = '{prev}' WHERE id = 1")
            raw.commit()
            # What a ledger that grew over months has had done to it: on PostgreSQL vacuumed
            # (hint bits set, so the first read does not rewrite every page) and analysed;
            # on SQLite the write-ahead log checkpointed into the database file.
            if postgres:
                raw.dbapi_connection.autocommit = True
                cursor.execute("VACUUM ANALYZE ledger_events")
                raw.dbapi_connection.autocommit = False
            else:
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            # And the operating system done writing the hundreds of megabytes just written:
            # otherwise the first verify runs beside the kernel flushing them to disk.
            os.sync()
        finally:
            raw.close()
    return Rate(events, hashing_seconds), total_bytes, time.perf_counter() - started


def _measure_verify(target: Target, events: int) -> tuple[Rate, float]:
    """verify in a fresh Python process, as `vault ledger verify` runs; only verify itself
    is timed. Returns its rate and the process's peak resident memory in MB."""
    child = subprocess.run(
        [sys.executable, "-c", "from bench.ledger import _verify_child; _verify_child()"],
        input=json.dumps({"url": target.url, "engine_options": target.engine_options}),
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"verify in a child process failed: {child.stderr}")
    outcome = json.loads(child.stdout.strip().splitlines()[-1])
    if not outcome["ok"] or outcome["count"] != events:
        raise RuntimeError(f"benchmark ledger did not verify: {outcome}")
    return Rate(events, outcome["seconds"]), outcome["peak_mb"]


def _verify_child() -> None:
    """Run in the child: the settings on stdin, the outcome as a JSON line on stdout."""
    settings = json.loads(sys.stdin.read())
    target = Target("child", settings["url"], settings["engine_options"])
    app = _app(target, Keyring.generate().dumps())
    from vault.extensions import db

    with app.app_context():
        begin = time.perf_counter()
        result = ledger_store.verify(db.session)
        elapsed = time.perf_counter() - begin
        db.session.remove()
        db.engine.dispose()
    print(
        json.dumps(
            {"ok": result.ok, "count": result.count, "seconds": elapsed, "peak_mb": _peak_mb()}
        )
    )


def _peak_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec; ru_maxrss
    can carry the peak of the process that started this one (it was the bench's parent
    with a million generated events in memory, 155 MB, before exec)."""
    import resource

    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


@contextlib.contextmanager
def _target(database_url: str | None) -> Iterator[Target]:
    with _postgres_target(database_url) if database_url else _sqlite_target() as target:
        yield target


def measure(seconds: float, events: int, database_url: str | None = None) -> LedgerResult:
    with _target(database_url) as target:
        app = _app(target, Keyring.generate().dumps())
        try:
            _migrate(app)
            _progress(f"ledger appends and raw INSERT+COMMIT ({2 * seconds:g} s)")
            append, raw_insert = _measure_appends(app, seconds)
            _progress(f"generating {events:,} chained ledger events")
            hashing, size, generate_seconds = _generate(app, events)
            _progress(f"verifying {events:,} ledger events (every body parsed and hashed here)")
            verify, peak_mb = _measure_verify(target, events)
        finally:
            from vault.extensions import db

            with app.app_context():
                db.session.remove()
                db.engine.dispose()
    return LedgerResult(
        target.description,
        append,
        raw_insert,
        events,
        size,
        verify,
        peak_mb,
        hashing,
        generate_seconds,
    )
