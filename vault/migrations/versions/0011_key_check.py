"""key check: proof that the configured keyring is this vault's own

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 22:30:00.000000

One row, written by the app on its first start after this migration (the keys never reach
the migration): a fixed value wrapped by the master key and an HMAC of a fixed label under
each keyed-hash secret. At start the vault checks them and refuses a keyring that is not
this vault's (vault.keys.check).
"""

import sqlalchemy as sa
from alembic import op

import vault.models

# revision identifiers, used by Alembic.
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "key_check",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("master_key_id", sa.String(length=64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("secret_checks", sa.JSON(), nullable=False),
        sa.Column("created_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("wrapped_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_check")),
    )


def downgrade():
    op.drop_table("key_check")
