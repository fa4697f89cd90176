"""ledger events: unindexed fields are read from the body, no longer generated columns

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 18:45:00.000000

On PostgreSQL generated columns are always stored, so every event kept its fields twice
(about 870 bytes a row instead of 560) and verify read all of it. The fields nobody filters
by (at, channel, topic, prev_state, new_state, actor, source, notice_version) are now read
from the body when queried (consent.models.LedgerEvent); event_type, subject, vendor_id,
prev_hash and body_seq stay generated columns. On SQLite those columns were virtual
(nothing stored), so only the schema changes there.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# name -> (SQL type, integer?), frozen here: the columns 0007 generated and this drops.
FIELDS = {
    "at": ("VARCHAR(32)", False),
    "channel": ("VARCHAR(10)", False),
    "topic": ("VARCHAR(64)", False),
    "prev_state": ("TEXT", False),
    "new_state": ("TEXT", False),
    "actor": ("VARCHAR(64)", False),
    "source": ("VARCHAR(12)", False),
    "notice_version": ("INTEGER", True),
}


def upgrade():
    for name in FIELDS:
        # Both databases drop a generated column in place (SQLite since 3.35).
        op.execute(f"ALTER TABLE ledger_events DROP COLUMN {name}")


def downgrade():
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, (sql_type, integer) in FIELDS.items():
        if postgresql:
            value = f"(body::jsonb ->> '{name}')" + ("::integer" if integer else "")
            generated = f"GENERATED ALWAYS AS ({value}) STORED"
        else:
            # SQLite can add only a VIRTUAL generated column, which is what 0007 made.
            generated = f"GENERATED ALWAYS AS (json_extract(body, '$.{name}')) VIRTUAL"
        op.execute(f"ALTER TABLE ledger_events ADD COLUMN {name} {sql_type} {generated}")
