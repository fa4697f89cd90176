"""phone confirmation: the confirmed number's keyed hash on users, pending SMS codes

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 03:00:00.000000

Numbers saved before this revision start unconfirmed: nobody proved to hold them, so
businesses may text or call them only after the customer confirms them with a code
(``vault.profile.phone``); until then the consent engine answers ``unconfirmed_address``.
"""

import sqlalchemy as sa
from alembic import op

import vault.models

# revision identifiers, used by Alembic.
revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("phone_confirmed_index", sa.LargeBinary(length=32), nullable=True)
        )
        batch_op.add_column(
            sa.Column("phone_confirmed_at", vault.models.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "phone_codes",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("number_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_phone_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_phone_codes")),
    )
    with op.batch_alter_table("phone_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_phone_codes_expires_at"), ["expires_at"], unique=False)


def downgrade():
    with op.batch_alter_table("phone_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_phone_codes_expires_at"))
    op.drop_table("phone_codes")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), never batch mode: batch mode would
    # copy users and drop the old table, whose foreign keys (ON DELETE CASCADE, enforced by
    # vault.database) would delete every grant, token and consent of every customer.
    op.drop_column("users", "phone_confirmed_at")
    op.drop_column("users", "phone_confirmed_index")
