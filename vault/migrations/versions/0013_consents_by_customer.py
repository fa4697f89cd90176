"""consents by customer: one consent answer reads only that customer's rows

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 03:00:00.000000

A single consent check or ``GET /api/v1/consents/{sub}`` asks for one customer's rows with
one business. ``topic_consents`` (key user_id, topic_id, channel) and ``oauth_grants``
(an index on user_id, one on vendor_id) left the planner a choice, and without statistics
(SQLite never analyses by itself, PostgreSQL only after autovacuum) it took the vendor_id
index: every row of the business, 15,000 of them for 10,000 customers. An index on
(user_id, vendor_id) matches both conditions, so the lookup is the customer's rows at any
size of the business. On ``oauth_grants`` it replaces the index on user_id alone, whose
lookups it serves as well. The other tables a consent answer reads already lead with
user_id (their keys; ``ix_contact_records_lookup``).
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_topic_consents_customer", "topic_consents", ["user_id", "vendor_id"])
    op.create_index("ix_oauth_grants_customer", "oauth_grants", ["user_id", "vendor_id"])
    op.drop_index("ix_oauth_grants_user_id", table_name="oauth_grants")


def downgrade():
    op.create_index("ix_oauth_grants_user_id", "oauth_grants", ["user_id"])
    op.drop_index("ix_oauth_grants_customer", table_name="oauth_grants")
    op.drop_index("ix_topic_consents_customer", table_name="topic_consents")
