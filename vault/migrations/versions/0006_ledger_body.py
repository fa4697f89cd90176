"""ledger events keep their canonical JSON body

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 16:05:00.000000

"""

import json

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# consent.ledger's canonical encoding, frozen here so that later changes to the module
# cannot change what this migration writes: json.dumps of the 13 hashed fields, sorted
# keys, no spaces, non-ASCII kept -- the bytes each event's hash is the SHA-256 of.
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
BATCH = 5000


def _canonical(row) -> str:
    body = dict(zip(HASHED_FIELDS, row, strict=True))
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def upgrade():
    with op.batch_alter_table("ledger_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body", sa.Text(), nullable=True))

    connection = op.get_bind()
    events = sa.table(
        "ledger_events",
        *(sa.column(name) for name in HASHED_FIELDS),
        sa.column("body", sa.Text),
    )
    fill = (
        sa.update(events)
        .where(events.c.seq == sa.bindparam("at_seq"))
        .values(body=sa.bindparam("new_body"))
    )
    last = 0
    while True:
        rows = connection.execute(
            sa.select(*(events.c[name] for name in HASHED_FIELDS))
            .where(events.c.seq > last)
            .order_by(events.c.seq)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        connection.execute(
            fill, [{"at_seq": row[0], "new_body": _canonical(tuple(row))} for row in rows]
        )
        last = rows[-1][0]

    with op.batch_alter_table("ledger_events", schema=None) as batch_op:
        batch_op.alter_column("body", existing_type=sa.Text(), nullable=False)


def downgrade():
    with op.batch_alter_table("ledger_events", schema=None) as batch_op:
        batch_op.drop_column("body")
