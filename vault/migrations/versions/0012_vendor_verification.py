"""vendor verification: when and by whom; unsafe vendor URLs removed

Revision ID: 0012
Revises: 0009
Create Date: 2026-11-24 10:00:00.000000

The verified badge now records when and by whom it was given (``vault vendors verify``),
and any change of the vendor's name, website, logo or privacy policy clears it.

Vendor URLs are https only from now on (``vault.vendors.urls``). Rows stored earlier may
hold a ``javascript:`` or ``data:`` link, one without a host or with credentials in it:
such a URL is removed (set to NULL) here, and a vendor whose URLs were removed loses its
badge, as after any other change of what the badge vouches for. http and https links with
a host are left alone (http ones are refused at the next save outside development).
"""

import re
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

import vault.models

# revision identifiers, used by Alembic.
revision = "0012"
down_revision = "0009"
branch_labels = None
depends_on = None

URL_COLUMNS = ("website", "logo_url", "privacy_policy_url")
# A copy of the rule's core as of this revision, so later changes of the app's rule do
# not change what this migration did.
_INVISIBLE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")


def _safe(url: str) -> bool:
    if _INVISIBLE.search(url) or "\\" in url:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018
    except ValueError:
        return False
    return (
        parts.scheme.lower() in ("http", "https")
        and bool(parts.hostname)
        and "@" not in parts.netloc
    )


def upgrade():
    with op.batch_alter_table("vendors", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("verified_at", vault.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("verified_by", sa.String(length=120), nullable=True))

    vendors = sa.table(
        "vendors",
        sa.column("id", sa.String),
        sa.column("verified", sa.Boolean),
        *(sa.column(name, sa.String) for name in URL_COLUMNS),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(vendors.c.id, *(vendors.c[name] for name in URL_COLUMNS))
    ).all()
    for row in rows:
        unsafe = {
            name: None
            for name in URL_COLUMNS
            if getattr(row, name) is not None and not _safe(getattr(row, name))
        }
        if unsafe:
            connection.execute(
                sa.update(vendors).where(vendors.c.id == row.id).values(**unsafe, verified=False)
            )


def downgrade():
    with op.batch_alter_table("vendors", schema=None) as batch_op:
        batch_op.drop_column("verified_by")
        batch_op.drop_column("verified_at")
