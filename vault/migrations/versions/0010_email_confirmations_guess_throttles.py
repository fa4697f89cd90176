"""e-mail confirmations (double opt-in) and per-account guess throttles

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 10:00:00.000000

Accounts that exist keep working: their addresses were taken as given before confirmation
existed. New sign-ups and e-mail changes wait in email_confirmations until their link is
followed.
"""

import sqlalchemy as sa
from alembic import op

import vault.models

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "email_confirmations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("email_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("sealed_email", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_email_confirmations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_confirmations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_email_confirmations_token_hash")),
    )
    with op.batch_alter_table("email_confirmations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_email_confirmations_email_index"), ["email_index"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_email_confirmations_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_email_confirmations_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "guess_throttles",
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.LargeBinary(length=32), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", vault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "subject", name=op.f("pk_guess_throttles")),
    )
    with op.batch_alter_table("guess_throttles", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_guess_throttles_updated_at"), ["updated_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("guess_throttles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guess_throttles_updated_at"))
    op.drop_table("guess_throttles")
    with op.batch_alter_table("email_confirmations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_confirmations_user_id"))
        batch_op.drop_index(batch_op.f("ix_email_confirmations_expires_at"))
        batch_op.drop_index(batch_op.f("ix_email_confirmations_email_index"))
    op.drop_table("email_confirmations")
