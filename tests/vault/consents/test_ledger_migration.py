"""Migration 0007 keeps every ledger event: the columns are then generated from each body,
the hashes and the chain are unchanged, and the downgrade gives the plain columns back.
An event whose columns were edited after 0006 stored its body stops the upgrade."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask

from consent import ledger
from vault.consents import ledger as ledger_store
from vault.consents.models import LedgerEvent
from vault.extensions import db

if TYPE_CHECKING:
    from tests.conftest import TestDatabase

FIELDS = ledger.HASHED_FIELDS


def _events(count: int) -> list[dict[str, Any]]:
    """Chained events as 0006 stored them: every field a column, and the body."""
    events, prev = [], ledger.GENESIS
    for seq in range(1, count + 1):
        event = {
            "seq": seq,
            "at": f"2026-01-0{seq}T12:00:00.000000Z",
            "event_type": "topic_consent",
            "subject": f"subject-{seq}",
            "vendor_id": None if seq == 2 else "0b9c1f7e-1234-4d6f-9a1b-2c3d4e5f6a7b",
            "channel": "email",
            "topic": "newsletter",
            "prev_state": '{"state":"withdrawn"}',
            "new_state": json.dumps({"state": "granted", "note": 'café "✓"'}),
            "actor": "customer",
            "source": "ui",
            "notice_version": None if seq == 3 else seq,
            "prev_hash": prev,
        }
        body = ledger.canonical_bytes(event)
        prev = hashlib.sha256(body).hexdigest()
        events.append({**event, "hash": prev, "body": body.decode()})
    return events


def _at_0006_with(app: Flask, events: list[dict[str, Any]]) -> None:
    with app.app_context():
        flask_migrate.downgrade(revision="0006")
        table = sa.table("ledger_events", *(sa.column(name) for name in events[0]))
        with db.engine.begin() as conn:
            conn.execute(sa.insert(table), events)
            conn.execute(
                sa.text("UPDATE ledger_head SET seq = :seq, hash = :hash WHERE id = 1"),
                {"seq": events[-1]["seq"], "hash": events[-1]["hash"]},
            )
        db.engine.dispose()


def _rows(app: Flask) -> list[dict[str, Any]]:
    with app.app_context():
        names = ", ".join([*FIELDS, "hash", "body"])
        rows = db.session.execute(sa.text(f"SELECT {names} FROM ledger_events ORDER BY seq"))
        result = [dict(row._mapping) for row in rows]
        db.session.remove()
        return result


@pytest.fixture
def back_at_head(app: Flask, database: TestDatabase) -> Any:
    """PostgreSQL's schema outlives the test: leave it migrated to the head and empty."""
    yield
    with app.app_context():
        if database.backend == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM ledger_events"))
            flask_migrate.upgrade()
        db.engine.dispose()


@pytest.mark.usefixtures("back_at_head")
def test_upgrade_keeps_every_event_and_downgrade_gives_the_columns_back(app: Flask) -> None:
    events = _events(5)
    _at_0006_with(app, events)
    with app.app_context():
        flask_migrate.upgrade(revision="0007")
        db.engine.dispose()
    assert _rows(app) == events
    with app.app_context():
        # 0009 drops the unindexed generated columns; the model reads them from the body.
        flask_migrate.upgrade()
        db.engine.dispose()
        names = [*FIELDS, "hash", "body"]
        query = sa.select(*(getattr(LedgerEvent, name).label(name) for name in names))
        at_head = [
            dict(row) for row in db.session.execute(query.order_by(LedgerEvent.seq)).mappings()
        ]
        result = ledger_store.verify(db.session)
        db.session.remove()
    assert at_head == events
    assert result.ok and (result.count, result.head_hash) == (5, events[-1]["hash"])

    with app.app_context():
        flask_migrate.downgrade(revision="0006")
        db.engine.dispose()
    assert _rows(app) == events


@pytest.mark.usefixtures("back_at_head")
def test_upgrade_refuses_events_whose_columns_were_edited(
    app: Flask, capfd: pytest.CaptureFixture[str]
) -> None:
    events = _events(4)
    events[2]["subject"] = "edited"  # the body still names the original subject
    _at_0006_with(app, events)
    # Flask-Migrate logs the migration's error (to stderr, as alembic.ini says) and exits.
    with app.app_context(), pytest.raises(SystemExit):
        flask_migrate.upgrade()
    logged = capfd.readouterr().err
    assert "differ from their hashed body" in logged and "seq 3." in logged
    with app.app_context():
        db.engine.dispose()
    with app.app_context():
        # Nothing changed: still 0006's table with the edited column.
        query = sa.text("SELECT subject FROM ledger_events WHERE seq = 3")
        assert db.session.execute(query).scalar() == "edited"
        db.session.remove()
