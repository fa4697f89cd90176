"""pairwise subjects: each vendor's sub of each of its customers, kept at the first grant

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 17:45:00.000000

The subs of existing grants are computed here, which needs the keyring's pseudonym secret:
run it through `vault db upgrade` (the app's keys), not from plain SQL (`--sql`).
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

import vault.models

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "pairwise_subjects",
        sa.Column("vendor_id", sa.String(length=36), nullable=False),
        sa.Column("sub", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_pairwise_subjects_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"],
            ["vendors.id"],
            name=op.f("fk_pairwise_subjects_vendor_id_vendors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("vendor_id", "sub", name=op.f("pk_pairwise_subjects")),
        sa.UniqueConstraint("vendor_id", "user_id", name=op.f("uq_pairwise_subjects_vendor_id")),
    )
    with op.batch_alter_table("pairwise_subjects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pairwise_subjects_user_id"), ["user_id"], unique=False)
    _backfill()


def _backfill() -> None:
    bind = op.get_bind()
    pairs = bind.execute(sa.text("SELECT DISTINCT vendor_id, user_id FROM oauth_grants")).all()
    if not pairs:
        return
    if context.is_offline_mode():
        raise RuntimeError(
            "pairwise subjects of existing grants need the keyring: run `vault db upgrade`"
        )
    from flask import current_app

    # The keyed hash every sub is (vault.oauth.scopes.pairwise_sub); changing it would
    # change every vendor's subs, so it is as fixed as this migration.
    from vault.crypto.keyed_hash import pseudonyms

    secret = current_app.extensions["vault.keys"].secret("pseudonym")
    by_vendor: dict[str, list[str]] = {}
    for vendor_id, user_id in pairs:
        by_vendor.setdefault(vendor_id, []).append(user_id)
    table = sa.table(
        "pairwise_subjects",
        sa.column("vendor_id"),
        sa.column("sub"),
        sa.column("user_id"),
        sa.column("created_at", vault.models.UTCDateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    rows = [
        {"vendor_id": vendor_id, "sub": sub, "user_id": user_id, "created_at": now}
        for vendor_id, user_ids in by_vendor.items()
        for sub, user_id in pseudonyms(secret, f"sub:{vendor_id}", user_ids).items()
    ]
    op.bulk_insert(table, rows)


def downgrade():
    with op.batch_alter_table("pairwise_subjects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pairwise_subjects_user_id"))
    op.drop_table("pairwise_subjects")
