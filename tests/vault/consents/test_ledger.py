"""The hash-chained ledger: append, verify, tamper detection and concurrent writers.

Every test runs on SQLite (a file) and PostgreSQL (a schema of its own). The concurrency
tests start real threads and real processes (spawn) that each build their own app and
engine from the same database URL, so the head-row lock is exercised across connections
and across processes, not just inside one session.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.schema import CreateColumn

from consent import ledger
from consent.ledger_verify import Verification
from tests.vault.consents.tampering import rewrite_from
from vault import create_app
from vault.consents import ledger as store
from vault.consents.models import LedgerEvent
from vault.extensions import db

if TYPE_CHECKING:
    from tests.conftest import TestDatabase

EVENTS = 5
POSITIONS = (1, 3, 5)  # first, middle, last


def _append(number: int, *, source: str = "ui", writer: str = "test") -> store.Appended:
    return store.append(
        db.session,
        event_type="topic_consent",
        subject=f"subject-{number % 7}",
        actor=f"customer:{writer}",
        source=source,
        vendor_id="0b9c1f7e-1234-4d6f-9a1b-2c3d4e5f6a7b",
        channel="email",
        topic=f"newsletter-{number}",
        prev_state={"state": "withdrawn", "expires_at": None},
        new_state={"state": "granted", "expires_at": None, "note": "café ✓"},
        notice_version=3,
    )


def _fill(app: Flask, count: int = EVENTS) -> list[store.Appended]:
    with app.app_context():
        appended = [_append(number) for number in range(count)]
        db.session.commit()
        return appended


def _verify(app: Flask) -> Verification:
    with app.app_context():
        try:
            return store.verify(db.session)
        finally:
            db.session.remove()


def _cli_verify(app: Flask) -> tuple[int, dict[str, Any]]:
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


# --- basics ----------------------------------------------------------------------------------


def _rows(app: Flask) -> list[dict[str, Any]]:
    """Every event's fields as the database reads them from its body (generated columns or
    expressions over the body), and its hash."""
    names = dict.fromkeys([*ledger.HASHED_FIELDS, "hash", "body", "body_seq"])
    query = sa.select(*(getattr(LedgerEvent, name).label(name) for name in names))
    with app.app_context():
        rows = db.session.execute(query.order_by(LedgerEvent.seq)).mappings().all()
        db.session.remove()
    return [dict(row) for row in rows]


def test_append_chains_events_and_verify_reports_the_head(app: Flask) -> None:
    appended = _fill(app)
    assert [event.seq for event in appended] == [1, 2, 3, 4, 5]
    rows = _rows(app)
    assert rows[0]["prev_hash"] == ledger.GENESIS
    for before, row in itertools.pairwise(rows):
        assert row["prev_hash"] == before["hash"]
    for row in rows:
        # The definition: SHA-256 over json.dumps of the 13 hashed fields, sorted, compact;
        # the stored body is exactly those bytes, and the columns generated from it give
        # back the fields.
        body = {name: row[name] for name in ledger.HASHED_FIELDS}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert row["body"] == text
        assert hashlib.sha256(text.encode()).hexdigest() == row["hash"]
        assert ledger.canonical_bytes(row) == text.encode()
    assert rows[0]["notice_version"] == 3 and rows[0]["channel"] == "email"
    assert json.loads(rows[0]["new_state"]) == {
        "state": "granted",
        "expires_at": None,
        "note": "café ✓",
    }

    result = _verify(app)
    assert result.ok and result.count == 5
    assert (result.head_seq, result.head_hash) == (5, appended[-1].hash)
    code, output = _cli_verify(app)
    assert code == 0
    assert output == {"ok": True, "head_seq": 5, "head_hash": appended[-1].hash, "count": 5}


def test_empty_ledger_verifies(app: Flask) -> None:
    code, output = _cli_verify(app)
    assert code == 0
    assert output == {"ok": True, "head_seq": 0, "head_hash": ledger.GENESIS, "count": 0}


def test_append_refuses_an_unknown_source(app: Flask) -> None:
    with app.app_context(), pytest.raises(ValueError, match="source"):
        _append(1, source="fax")


def test_rolled_back_append_leaves_no_trace(app: Flask) -> None:
    _fill(app, 2)
    with app.app_context():
        _append(99)
        db.session.rollback()
        assert _append(3).seq == 3
        db.session.commit()
    assert _verify(app).ok


AWKWARD = [
    "",
    'quote " backslash \\ slash /',
    "control \x00\x01\x1f\x7f \b\f\n\r\t",
    "unicode café ✓ 𝄞 \u2028\u2029 \ufeff",
    "zeros 0000",
    ',"seq":1,"prev_hash":"' + "0" * 64 + '"',  # the keys verify looks for, inside a value
]


@pytest.mark.parametrize("text", AWKWARD)
def test_a_new_event_is_byte_for_byte_json_dumps_of_its_fields(text: str) -> None:
    """The definition, json.dumps of the 13 fields sorted and compact, on awkward values."""
    prev_hash = hashlib.sha256(text.encode(errors="replace")).hexdigest()
    body, digest = ledger.new_event(
        2**40 + 1,
        prev_hash,
        event_type=text,
        subject=text,
        actor=text,
        source="ui",
        channel=text,
        prev_state=text,
        new_state={"text": text},
        notice_version=0,
        at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
    )
    event = {
        "seq": 2**40 + 1,
        "at": "2026-12-01T12:00:00.000000Z",
        "event_type": text,
        "subject": text,
        "vendor_id": None,
        "channel": text,
        "topic": None,
        "prev_state": json.dumps(text, ensure_ascii=False),
        "new_state": json.dumps({"text": text}, ensure_ascii=False, separators=(",", ":")),
        "actor": text,
        "source": "ui",
        "notice_version": 0,
        "prev_hash": prev_hash,
    }
    definition = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert body == definition
    assert digest == hashlib.sha256(definition.encode()).hexdigest()


def test_awkward_text_round_trips_through_the_generated_columns(app: Flask) -> None:
    """json_extract (SQLite) and ->> (PostgreSQL) undo exactly the escapes Python's json
    wrote, so the generated columns give back the very values appended; and a value that
    spells verify's substrings changes nothing."""
    texts = [text.replace("\x00", "") for text in AWKWARD]  # PostgreSQL text cannot hold NUL
    with app.app_context():
        for number, text in enumerate(texts):
            store.append(
                db.session,
                event_type=text[:40] or "x",
                subject=text[:64],
                actor=text[:64],
                source="system",
                topic=text[:64],
                prev_state={"text": text},
                new_state=text,
                notice_version=number,
            )
        db.session.commit()
    for number, (text, row) in enumerate(zip(texts, _rows(app), strict=True)):
        assert (row["event_type"], row["subject"], row["actor"]) == (
            text[:40] or "x",
            text[:64],
            text[:64],
        )
        assert json.loads(row["prev_state"]) == {"text": text}
        assert json.loads(row["new_state"]) == text
        assert row["notice_version"] == number
        assert row["vendor_id"] is None and row["channel"] is None
    result = _verify(app)
    assert result.ok and result.count == len(AWKWARD)


# --- tampering -------------------------------------------------------------------------------


def _altered(column: str, value: Any, seq: int) -> Any:
    """The stored value with exactly one character (one byte) changed."""
    if column == "seq":
        return seq + 6  # 1 -> 7, 3 -> 9, 5 -> 11: a different seq, unused, one edit
    text = str(value)
    # In the body, a character inside the topic's value: still valid JSON, which the
    # database needs to generate the columns (it refuses a body it cannot parse).
    index = text.index('"topic":"') + 12 if column == "body" else len(text) // 2
    replacement = "0" if text[index] != "0" else "1"
    assert len(replacement.encode()) == len(text[index].encode()) == 1
    return text[:index] + replacement + text[index + 1 :]


def _expect_broken(app: Flask, seq: int | None, *words: str) -> None:
    result = _verify(app)
    assert not result.ok
    assert result.broken_seq == seq, result
    assert all(word in (result.problem or "") for word in words), result
    code, output = _cli_verify(app)
    assert code == 1
    assert output["ok"] is False and output["broken_seq"] == seq
    assert output["problem"]


@pytest.fixture
def tamper(app: Flask, database: TestDatabase) -> Iterator[sa.Engine]:
    """Five events, and an engine of its own, as an administrator's, to change them with."""
    _fill(app)
    engine = database.engine()
    yield engine
    engine.dispose()


@pytest.mark.parametrize("column", ["seq", "hash", "body"])
def test_changing_one_byte_of_a_stored_column_names_that_event(
    app: Flask, tamper: sa.Engine, column: str
) -> None:
    table = LedgerEvent.__table__
    for seq in POSITIONS:
        with tamper.begin() as conn:
            original = conn.execute(
                sa.select(table.c[column]).where(table.c.seq == seq)
            ).scalar_one()
            changed = _altered(column, original, seq)
            conn.execute(sa.update(table).where(table.c.seq == seq).values({column: changed}))
        _expect_broken(app, seq)

        where = table.c.seq == (changed if column == "seq" else seq)
        with tamper.begin() as conn:
            conn.execute(sa.update(table).where(where).values({column: original}))
        assert _verify(app).ok


@pytest.mark.parametrize("column", ["event_type", "subject", "vendor_id", "prev_hash", "body_seq"])
def test_the_database_refuses_to_update_a_generated_column(
    app: Flask, tamper: sa.Engine, column: str
) -> None:
    table = LedgerEvent.__table__
    with pytest.raises(sa.exc.DBAPIError, match=r"generated|DEFAULT"), tamper.begin() as conn:
        conn.execute(sa.update(table).where(table.c.seq == 3).values({column: "0"}))
    assert _verify(app).ok


def test_a_column_no_longer_generated_is_checked_against_the_body(
    app: Flask, database: TestDatabase
) -> None:
    """An administrator who drops a generation expression (PostgreSQL) or rebuilds the
    table without them (SQLite) could then rewrite the column at will: verify compares
    every event's columns with its body and names the first that differs."""
    _fill(app)
    engine = database.engine()
    try:
        with engine.begin() as conn:
            if database.backend == "postgresql":
                conn.execute(sa.text("ALTER TABLE ledger_events ALTER subject DROP EXPRESSION"))
            else:
                conn.execute(sa.text("CREATE TABLE copied AS SELECT * FROM ledger_events"))
                conn.execute(sa.text("DROP TABLE ledger_events"))
                conn.execute(sa.text("ALTER TABLE copied RENAME TO ledger_events"))
        assert _verify(app).ok  # every value still says what its body says
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE ledger_events SET subject = 'someone' WHERE seq = 3"))
        _expect_broken(app, 3, "subject")
    finally:
        _restore_subject(database, engine)


def test_a_column_generated_from_another_key_is_named(app: Flask, database: TestDatabase) -> None:
    """Still generated, but from another key of the body: subject from actor."""
    _fill(app)
    engine = database.engine()
    try:
        with engine.begin() as conn:
            if database.backend == "postgresql":
                conn.execute(sa.text("ALTER TABLE ledger_events DROP COLUMN subject"))
                conn.execute(
                    sa.text(
                        "ALTER TABLE ledger_events ADD COLUMN subject VARCHAR(64) "
                        "GENERATED ALWAYS AS ((body::jsonb ->> 'actor')) STORED"
                    )
                )
            else:
                sql = conn.execute(
                    sa.text("SELECT sql FROM sqlite_schema WHERE name = 'ledger_events'")
                ).scalar_one()
                swapped = sql.replace("TABLE ledger_events", "TABLE swapped")
                conn.execute(sa.text(swapped.replace("'$.subject'", "'$.actor'")))
                conn.execute(
                    sa.text(
                        "INSERT INTO swapped (seq, hash, body) SELECT seq, hash, body "
                        "FROM ledger_events"
                    )
                )
                conn.execute(sa.text("DROP TABLE ledger_events"))
                conn.execute(sa.text("ALTER TABLE swapped RENAME TO ledger_events"))
        _expect_broken(app, 1, "subject")
    finally:
        _restore_subject(database, engine)


def _restore_subject(database: TestDatabase, engine: sa.Engine) -> None:
    """PostgreSQL's schema outlives the test: give subject back its own expression (and
    index). SQLite's database file is the test's own."""
    if database.backend == "postgresql":
        column = CreateColumn(LedgerEvent.__table__.c.subject).compile(dialect=engine.dialect)
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE ledger_events DROP COLUMN subject"))
            conn.execute(sa.text(f"ALTER TABLE ledger_events ADD COLUMN {column}"))
            conn.execute(
                sa.text("CREATE INDEX ix_ledger_events_subject ON ledger_events (subject)")
            )
    engine.dispose()


def test_deleting_the_last_event_is_detected(app: Flask, tamper: sa.Engine) -> None:
    with tamper.begin() as conn:
        conn.execute(sa.delete(LedgerEvent.__table__).where(LedgerEvent.__table__.c.seq == 5))
    result = _verify(app)
    assert not result.ok
    assert result.broken_seq == 5 and result.count == 4
    assert "head" in (result.problem or "")
    code, output = _cli_verify(app)
    assert code == 1 and output["broken_seq"] == 5


def test_deleting_an_event_in_the_middle_is_a_gap(app: Flask, tamper: sa.Engine) -> None:
    with tamper.begin() as conn:
        conn.execute(sa.delete(LedgerEvent.__table__).where(LedgerEvent.__table__.c.seq == 2))
    result = _verify(app)
    assert not result.ok and result.broken_seq == 2
    assert "gap" in (result.problem or "")


def test_a_fork_cannot_be_stored(app: Flask, database: TestDatabase) -> None:
    """A second event on the same predecessor (a fork) breaks the unique prev_hash."""
    appended = _fill(app, 3)
    engine = database.engine()
    event = {
        "seq": 4,
        "at": ledger.timestamp(datetime.now(UTC)),
        "event_type": "topic_consent",
        "subject": "fork",
        "vendor_id": None,
        "channel": None,
        "topic": None,
        "prev_state": "null",
        "new_state": "null",
        "actor": "attacker",
        "source": "system",
        "notice_version": None,
        "prev_hash": appended[1].hash,  # the predecessor of seq 3
    }
    try:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.insert(LedgerEvent.__table__).values(
                    seq=4,
                    hash=ledger.event_hash(event),
                    body=ledger.canonical_bytes(event).decode(),
                )
            )
    finally:
        engine.dispose()
    assert _verify(app).ok


def _rewrite_stored_prev_hash(
    database: TestDatabase, engine: sa.Engine, seq: int, value: str
) -> None:
    """Rewrite the prev_hash the database stores for ``seq`` without touching its body, as
    someone with the database file (SQLite: PRAGMA writable_schema) or a superuser's
    catalog access (PostgreSQL: pg_attribute) can: make the generated column a plain one
    for a moment, write it, and make it generated again. No UPDATE could do it."""
    with engine.begin() as conn:
        if database.backend == "postgresql":
            flip = (
                "UPDATE pg_attribute SET attgenerated = :flag "
                "WHERE attrelid = 'ledger_events'::regclass AND attname = 'prev_hash'"
            )
            conn.execute(sa.text(flip), {"flag": ""})
            conn.execute(
                sa.text("UPDATE ledger_events SET prev_hash = :value WHERE seq = :seq"),
                {"value": value, "seq": seq},
            )
            conn.execute(sa.text(flip), {"flag": "s"})
            return
        generated = (
            "prev_hash VARCHAR(64) NOT NULL "
            "GENERATED ALWAYS AS (json_extract(body, '$.prev_hash')) STORED"
        )
        original = conn.execute(
            sa.text("SELECT sql FROM sqlite_schema WHERE name = 'ledger_events'")
        ).scalar_one()
        assert generated in original
        plain = original.replace(generated, "prev_hash VARCHAR(64) NOT NULL")
    for schema_text in (plain, original):
        # Each step on a fresh connection: SQLite reads the schema text when it opens one.
        engine.dispose()
        with engine.begin() as conn:
            if schema_text is original:
                conn.execute(
                    sa.text("UPDATE ledger_events SET prev_hash = :value WHERE seq = :seq"),
                    {"value": value, "seq": seq},
                )
            conn.exec_driver_sql("PRAGMA writable_schema = ON")
            conn.execute(
                sa.text("UPDATE sqlite_schema SET sql = :sql WHERE name = 'ledger_events'"),
                {"sql": schema_text},
            )
            conn.exec_driver_sql("PRAGMA writable_schema = OFF")
    engine.dispose()


def test_a_forged_event_with_a_rewritten_stored_link_is_named(
    app: Flask, database: TestDatabase
) -> None:
    """The forger changes event 3 (and recomputes its hash), then makes event 4's stored
    prev_hash name the new hash without changing event 4's body -- so that every later
    hash, and every receipt that carries one, stays as it was. Event 4's body still names
    the old hash: verify reads the link from the body, on both databases, and names
    event 4 (the stored column differs from the body too)."""
    appended = _fill(app)
    engine = database.engine()
    try:
        with engine.begin() as conn:
            body = conn.execute(
                sa.text("SELECT body FROM ledger_events WHERE seq = 3")
            ).scalar_one()
            forged = json.loads(body) | {"subject": "someone-else"}
            forged_hash = ledger.event_hash(forged)
            conn.execute(
                sa.text("UPDATE ledger_events SET body = :body, hash = :hash WHERE seq = 3"),
                {"body": ledger.canonical_bytes(forged).decode(), "hash": forged_hash},
            )
        _rewrite_stored_prev_hash(database, engine, 4, forged_hash)
        with engine.connect() as conn:
            stored = conn.execute(
                sa.text("SELECT prev_hash, hash FROM ledger_events WHERE seq = 4")
            ).one()
        assert stored == (forged_hash, appended[3].hash)  # the link rewritten, the body not

        _expect_broken(app, 4, "prev_hash")
        # --independent, from before every verify read each body, is still accepted.
        result = app.test_cli_runner().invoke(args=["ledger", "verify", "--independent"])
        assert result.exit_code == 1
        assert json.loads(result.stdout.strip().splitlines()[-1])["broken_seq"] == 4
    finally:
        engine.dispose()


# --- anchors ---------------------------------------------------------------------------------


def _cli_verify_with(app: Flask, *arguments: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["ledger", "verify", *arguments])
    return result.exit_code, result.output


def test_an_anchor_catches_a_chain_rewritten_to_the_head(app: Flask, tamper: sa.Engine) -> None:
    """A rewrite from event 3 to the head leaves a chain that verifies on its own; the head
    recorded before (as verify prints it) no longer matches, an anchor before the rewrite
    still does."""
    code, output = _cli_verify(app)
    assert code == 0
    old_head = f"{output['head_seq']}:{output['head_hash']}"
    with tamper.connect() as conn:
        second = conn.execute(sa.text("SELECT hash FROM ledger_events WHERE seq = 2")).scalar_one()

    new_head = rewrite_from(tamper, 3)
    assert new_head != output["head_hash"]
    assert _cli_verify(app)[0] == 0  # the chain alone cannot tell

    code, text = _cli_verify_with(app, "--anchor", f"2:{second}", "--anchor", old_head)
    assert code == 1
    verdict = json.loads(text.strip().splitlines()[-1])
    assert verdict["ok"] is False and verdict["broken_seq"] == 5
    assert "rewritten" in verdict["problem"] and new_head in verdict["problem"]

    code, text = _cli_verify_with(app, "--anchor", f"2:{second}")
    assert code == 0
    assert json.loads(text.strip().splitlines()[-1])["anchors_checked"] == 1


def test_an_anchor_beyond_the_head_fails(app: Flask) -> None:
    _fill(app)
    code, text = _cli_verify_with(app, "--anchor", f"9:{'a' * 64}")
    assert code == 1
    verdict = json.loads(text.strip().splitlines()[-1])
    assert verdict["broken_seq"] == 9 and "ends at 5" in verdict["problem"]


@pytest.mark.parametrize(
    ("anchor", "words"),
    [
        ("5", "SEQ:HASH"),
        ("0:" + "a" * 64, "SEQ:HASH"),
        ("x:" + "a" * 64, "SEQ:HASH"),
        ("5:" + "A" * 64, "64 lowercase hex"),
        ("5:abc", "64 lowercase hex"),
    ],
)
def test_a_malformed_anchor_is_refused_with_a_message(app: Flask, anchor: str, words: str) -> None:
    _fill(app)
    code, text = _cli_verify_with(app, "--anchor", anchor)
    assert code == 2  # click's usage error: nothing was verified
    assert "Invalid value for '--anchor'" in text and words in text
    assert _verify(app).ok


# --- verification streams in batches ---------------------------------------------------------


def test_batches_of_the_stream_do_not_hide_a_broken_event(
    app: Flask, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events are read in batches (a server-side cursor on PostgreSQL): with batches of 4,
    a change at the first and last event and on both sides of batch boundaries (1-4, 5-8,
    ...) is named exactly, as are deletions there."""
    monkeypatch.setattr(store, "STREAM_BATCH", 4)
    appended = _fill(app, 23)
    result = _verify(app)
    assert (result.ok, result.count, result.head_hash) == (True, 23, appended[-1].hash)
    engine = database.engine()
    table = LedgerEvent.__table__
    try:
        for seq in (1, 4, 5, 8, 9, 23):
            with engine.begin() as conn:
                body = conn.execute(sa.select(table.c.body).where(table.c.seq == seq)).scalar_one()
                conn.execute(
                    sa.update(table)
                    .where(table.c.seq == seq)
                    .values(body=_altered("body", body, seq))
                )
            assert _verify(app).broken_seq == seq
            with engine.begin() as conn:
                conn.execute(sa.update(table).where(table.c.seq == seq).values(body=body))
        for deleted, problem in ((8, "gap"), (9, "gap"), (23, "head")):
            stored = sa.select(table.c.seq, table.c.hash, table.c.body)
            stored = stored.where(table.c.seq == deleted)
            with engine.begin() as conn:
                row = conn.execute(stored).one()
                conn.execute(sa.delete(table).where(table.c.seq == deleted))
            verdict = _verify(app)
            assert verdict.broken_seq == deleted, verdict
            assert problem in (verdict.problem or ""), verdict
            with engine.begin() as conn:
                conn.execute(sa.insert(table).values(row._asdict()))
        assert _verify(app).ok
    finally:
        engine.dispose()


# --- concurrency -----------------------------------------------------------------------------

THREADS = 4
PROCESSES = 4
PER_WRITER = 50


def _assert_one_unbroken_chain(app: Flask, total: int) -> None:
    with app.app_context():
        seqs = db.session.execute(sa.select(LedgerEvent.seq).order_by(LedgerEvent.seq)).scalars()
        assert list(seqs) == list(range(1, total + 1))
        actors = db.session.execute(
            sa.select(LedgerEvent.actor, sa.func.count()).group_by(LedgerEvent.actor)
        ).all()
        db.session.remove()
    assert all(count == PER_WRITER for _, count in actors)
    code, output = _cli_verify(app)
    assert code == 0, output
    assert output["ok"] is True
    assert output["count"] == output["head_seq"] == total


def test_threads_appending_at_once_make_one_chain(app: Flask) -> None:
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            with app.app_context():
                start.wait()
                for index in range(PER_WRITER):
                    _append(index, writer=f"thread-{number}")
                    db.session.commit()
                db.session.remove()
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    _assert_one_unbroken_chain(app, THREADS * PER_WRITER)


def _process_writer(config: dict[str, Any], number: int, start: Any, failures: Any) -> None:
    """Runs in a spawned process: its own app, engine and connection pool."""
    try:
        child = create_app(config)
        with child.app_context():
            start.wait(timeout=120)
            for index in range(PER_WRITER):
                _append(index, source="api", writer=f"process-{number}")
                db.session.commit()
            db.session.remove()
            db.engine.dispose()
    except BaseException as exc:
        failures.put(f"process {number}: {exc!r}")
        raise


def test_processes_appending_at_once_make_one_chain(app: Flask, app_config: dict[str, Any]) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    failures = context.Queue()
    processes = [
        context.Process(target=_process_writer, args=(app_config, n, start, failures))
        for n in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    messages = []
    while not failures.empty():
        messages.append(failures.get())
    assert not messages, messages
    assert [process.exitcode for process in processes] == [0] * PROCESSES
    _assert_one_unbroken_chain(app, PROCESSES * PER_WRITER)
