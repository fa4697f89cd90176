"""last access of a grant is derived from the access log, not stored on the grant

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

"""

import sqlalchemy as sa
from alembic import op

import vault.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("oauth_grants", schema=None) as batch_op:
        batch_op.drop_column("last_access_at")
    with op.batch_alter_table("access_events", schema=None) as batch_op:
        batch_op.create_index("ix_access_events_grant_id_at", ["grant_id", "at"], unique=False)


def downgrade():
    with op.batch_alter_table("access_events", schema=None) as batch_op:
        batch_op.drop_index("ix_access_events_grant_id_at")
    with op.batch_alter_table("oauth_grants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("last_access_at", vault.models.UTCDateTime(timezone=True), nullable=True)
        )
