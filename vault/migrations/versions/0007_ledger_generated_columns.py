"""ledger events: the body is the single source of truth, the other fields are generated

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 17:30:00.000000

Rebuilds ledger_events as (seq, hash, body) plus columns the database generates from body
(SQLite: json_extract, VIRTUAL but for prev_hash and body_seq; PostgreSQL: STORED
body::jsonb ->> name), keeping every event. First the columns are compared with the
values the body gives; if any differ (someone edited a column since 0006 stored the
body), the upgrade stops before changing anything and names the events, instead of
silently replacing the edited values.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD = "ledger_events_0006"
# name, type, nullable -- the fields of the canonical JSON, frozen here so that later
# changes to the models cannot change what this migration builds.
FIELDS = (
    ("at", sa.String(length=32), False),
    ("event_type", sa.String(length=40), False),
    ("subject", sa.String(length=64), False),
    ("vendor_id", sa.String(length=36), True),
    ("channel", sa.String(length=10), True),
    ("topic", sa.String(length=64), True),
    ("prev_state", sa.Text(), False),
    ("new_state", sa.Text(), False),
    ("actor", sa.String(length=64), False),
    ("source", sa.String(length=12), False),
    ("notice_version", sa.Integer(), True),
    ("prev_hash", sa.String(length=64), False),
)
NAMES = [name for name, _, _ in FIELDS]
# Generated from the body only: the body's seq, beside the real seq (the primary key).
BODY_SEQ = ("body_seq", sa.Integer(), False)
STORED = ("prev_hash", "body_seq")  # read by verify for every event
INDEXED = ("event_type", "subject", "vendor_id")


def _expression(dialect: str, column: str) -> str:
    key = "seq" if column == "body_seq" else column
    if dialect == "sqlite":
        return f"json_extract(body, '$.{key}')"
    value = f"(body::jsonb ->> '{key}')"
    return f"{value}::integer" if key in ("notice_version", "seq") else value


def _drop_indexes() -> None:
    for name in INDEXED:
        op.drop_index(f"ix_ledger_events_{name}", table_name="ledger_events")


def _create_indexes() -> None:
    for name in INDEXED:
        op.create_index(f"ix_ledger_events_{name}", "ledger_events", [name], unique=False)


def _set_aside(dialect: str) -> None:
    """Rename the current table out of the way, freeing its index and constraint names
    (on PostgreSQL a constraint's name is also its index's, unique in the schema)."""
    _drop_indexes()
    op.rename_table("ledger_events", OLD)
    if dialect == "postgresql":
        for constraint in (
            "pk_ledger_events",
            "uq_ledger_events_hash",
            "uq_ledger_events_prev_hash",
        ):
            op.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT {constraint} TO {constraint}_0006")


def _constraints() -> list:
    return [
        sa.PrimaryKeyConstraint("seq", name="pk_ledger_events"),
        sa.UniqueConstraint("hash", name="uq_ledger_events_hash"),
        sa.UniqueConstraint("prev_hash", name="uq_ledger_events_prev_hash"),
    ]


def _edited(dialect: str) -> list[int]:
    """Events whose columns differ from what the new table would generate from the body
    (someone edited a column since 0006 stored the body): the first 20 seqs."""
    differs = "IS NOT" if dialect == "sqlite" else "IS DISTINCT FROM"
    columns = [*NAMES, "body_seq"]
    old = {**{name: name for name in NAMES}, "body_seq": "seq"}
    # Only constant names and the expressions above go into this text.
    return (
        op.get_bind()
        .exec_driver_sql(
            "SELECT seq FROM ledger_events WHERE "  # noqa: S608
            + " OR ".join(
                f"{old[column]} {differs} {_expression(dialect, column)}" for column in columns
            )
            + " ORDER BY seq LIMIT 20"
        )
        .scalars()
        .all()
    )


def _rebuild(dialect: str, columns: list[sa.Column], copied: list[str]) -> None:
    """ledger_events anew with these columns (seq first) and the same constraints and
    indexes, every event copied over in seq order."""
    _set_aside(dialect)
    op.create_table(
        "ledger_events",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        *columns,
        *_constraints(),
    )
    names = ", ".join(["seq", *copied])
    op.execute(
        f"INSERT INTO ledger_events ({names}) SELECT {names} FROM {OLD} ORDER BY seq"  # noqa: S608
    )
    op.drop_table(OLD)
    _create_indexes()


def upgrade():
    dialect = op.get_bind().dialect.name
    # Checked before anything changes, so that a refusal leaves the database as it was.
    edited = _edited(dialect)
    if edited:
        raise RuntimeError(
            "ledger events whose columns differ from their hashed body (edited after "
            f"migration 0006?): seq {', '.join(map(str, edited))}. `vault ledger verify` "
            "names the first; restore those columns from the body, then upgrade again."
        )
    generated = [
        sa.Column(
            name,
            kind,
            sa.Computed(
                sa.text(_expression(dialect, name)),
                # VIRTUAL on SQLite but what verify reads for every event; STORED on
                # PostgreSQL, which can index only those.
                persisted=True if dialect == "postgresql" or name in STORED else None,
            ),
            nullable=nullable,
        )
        for name, kind, nullable in (*FIELDS, BODY_SEQ)
    ]
    stored = [
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    ]
    _rebuild(dialect, [*stored, *generated], ["hash", "body"])


def downgrade():
    plain = [sa.Column(name, kind, nullable=nullable) for name, kind, nullable in FIELDS]
    stored = [
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    ]
    _rebuild(op.get_bind().dialect.name, [*plain, *stored], [*NAMES, "hash", "body"])
