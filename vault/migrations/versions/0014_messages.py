"""messages: the outbox and the contact log; frequency caps count delivered messages

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 02:40:00.000000

``messages`` is the outbox of businesses' messages (subject and body encrypted under the
customer's data key), ``contact_log`` the append-only record of every contact decision,
delivery outcome and contact permit. ``contact_records``, which nothing ever wrote, is
dropped: frequency caps count delivered messages (``messages.sent_at``) instead.
"""

import sqlalchemy as sa
from alembic import op

import vault.models

# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("vendor_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("subject_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("body_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("not_before", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("ledger_seq", sa.Integer(), nullable=False),
        sa.Column("ledger_hash", sa.String(length=64), nullable=False),
        sa.Column("deferred_until", vault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("lease_until", vault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("provider_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", vault.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_messages_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"],
            ["vendors.id"],
            name=op.f("fk_messages_vendor_id_vendors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("idempotency_key", "vendor_id", name="uq_messages_vendor_key"),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_due", ["status", "not_before"], unique=False)
        batch_op.create_index(
            "ix_messages_sent", ["user_id", "vendor_id", "channel", "sent_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_messages_user_id"), ["user_id"], unique=False)

    op.create_table(
        "contact_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("vendor_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=40), nullable=True),
        sa.Column("permit_id", sa.String(length=40), nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=10), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=True),
        sa.Column("ledger_seq", sa.Integer(), nullable=True),
        sa.Column("ledger_hash", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_contact_log_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_contact_log_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"],
            ["vendors.id"],
            name=op.f("fk_contact_log_vendor_id_vendors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_log")),
    )
    with op.batch_alter_table("contact_log", schema=None) as batch_op:
        batch_op.create_index("ix_contact_log_vendor_at", ["vendor_id", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_contact_log_message_id"), ["message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_contact_log_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("contact_records", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_records_lookup")
    op.drop_table("contact_records")


def downgrade():
    op.create_table(
        "contact_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("vendor_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("topic_id", sa.String(length=36), nullable=True),
        sa.Column("at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_contact_records_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"],
            ["vendors.id"],
            name=op.f("fk_contact_records_vendor_id_vendors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_records")),
    )
    with op.batch_alter_table("contact_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_contact_records_lookup", ["user_id", "vendor_id", "channel", "at"], unique=False
        )
    # Delivered messages become the history frequency caps count again.
    op.execute(
        "INSERT INTO contact_records (user_id, vendor_id, channel, at) "
        "SELECT user_id, vendor_id, channel, sent_at FROM messages WHERE sent_at IS NOT NULL"
    )
    with op.batch_alter_table("contact_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_log_user_id"))
        batch_op.drop_index(batch_op.f("ix_contact_log_message_id"))
        batch_op.drop_index("ix_contact_log_vendor_at")
    op.drop_table("contact_log")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_user_id"))
        batch_op.drop_index("ix_messages_sent")
        batch_op.drop_index("ix_messages_due")
    op.drop_table("messages")
