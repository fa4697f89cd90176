"""What someone with write access to the database could do to the ledger, for tests that
must show verify (or an anchor) catches it."""

from __future__ import annotations

import json

import sqlalchemy as sa

from consent import ledger


def rewrite_from(engine: sa.Engine, first: int) -> str:
    """Rewrite events from ``first`` to the head, hashes and all, as anyone who can write to
    the database could: another subject in event ``first``, then every later body's
    prev_hash, every hash and the head recomputed. Returns the new head hash."""
    with engine.begin() as conn:
        prev = (
            conn.execute(
                sa.text("SELECT hash FROM ledger_events WHERE seq = :seq"), {"seq": first - 1}
            ).scalar_one_or_none()
            or ledger.GENESIS
        )
        rows = conn.execute(
            sa.text("SELECT seq, body FROM ledger_events WHERE seq >= :seq ORDER BY seq"),
            {"seq": first},
        ).all()
        for seq, body in rows:
            fields = json.loads(body) | {"prev_hash": prev}
            if seq == first:
                fields["subject"] = "someone-else"
            prev = ledger.event_hash(fields)
            conn.execute(
                sa.text("UPDATE ledger_events SET body = :body, hash = :hash WHERE seq = :seq"),
                {"body": ledger.canonical_bytes(fields).decode(), "hash": prev, "seq": seq},
            )
        conn.execute(sa.text("UPDATE ledger_head SET hash = :hash WHERE id = 1"), {"hash": prev})
    return prev
