"""vendor verification: when and by whom; unsafe vendor URLs removed; stale requests closed

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 10:00:00.000000

The verified badge now records when and by whom it was given (``vault vendors verify``),
and any change of the vendor's name, website, logo or privacy policy clears it.

Vendor URLs are https only from now on (``vault.vendors.urls``). Rows stored earlier may
hold a ``javascript:`` or ``data:`` link, one without a host or with credentials in it:
such a URL is removed (set to NULL) here, and a vendor whose URLs were removed loses its
badge, as after any other change of what the badge vouches for. http and https links with
a host are left alone (http ones are refused at the next save outside development).

Consent requests still pending from a business the customer blocked, or whose connection
the customer ended (no live grant, and the grant that ended last was revoked by the
customer), are closed (status ``closed``), as the vault does from now on when the customer
blocks or revokes.
"""

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

import vault.models

# revision identifiers, used by Alembic.
revision = "0012"
down_revision = "0011"
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
    _close_stale_requests(connection)


def _aware(value):
    if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
        return value
    if isinstance(value, str):  # SQLite without the model's type
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _close_stale_requests(connection):
    requests = sa.table(
        "consent_requests",
        sa.column("id", sa.String),
        sa.column("user_id", sa.String),
        sa.column("vendor_id", sa.String),
        sa.column("status", sa.String),
        sa.column("answered_at", vault.models.UTCDateTime(timezone=True)),
    )
    prefs = sa.table(
        "vendor_preferences",
        sa.column("user_id", sa.String),
        sa.column("vendor_id", sa.String),
        sa.column("blocked", sa.Boolean),
    )
    grants = sa.table(
        "oauth_grants",
        sa.column("user_id", sa.String),
        sa.column("vendor_id", sa.String),
        sa.column("expires_at", vault.models.UTCDateTime(timezone=True)),
        sa.column("revoked_at", vault.models.UTCDateTime(timezone=True)),
        sa.column("revoked_reason", sa.String),
    )
    now = datetime.now(UTC)
    pairs = set(
        connection.execute(
            sa.select(requests.c.user_id, requests.c.vendor_id)
            .where(requests.c.status == "pending")
            .distinct()
        ).all()
    )
    stale = []
    for user_id, vendor_id in pairs:
        blocked = connection.execute(
            sa.select(prefs.c.blocked).where(
                prefs.c.user_id == user_id, prefs.c.vendor_id == vendor_id
            )
        ).scalar()
        if blocked:
            stale.append((user_id, vendor_id))
            continue
        rows = connection.execute(
            sa.select(grants.c.expires_at, grants.c.revoked_at, grants.c.revoked_reason).where(
                grants.c.user_id == user_id, grants.c.vendor_id == vendor_id
            )
        ).all()
        live, last_end, by_customer = False, None, False
        for expires_at, revoked_at, reason in rows:
            expires_at, revoked_at = _aware(expires_at), _aware(revoked_at)
            if revoked_at is None and (expires_at is None or expires_at > now):
                live = True
                continue
            end = min(t for t in (revoked_at, expires_at) if t is not None)
            if last_end is None or end > last_end:
                last_end, by_customer = end, end == revoked_at and reason == "customer"
        if not live and by_customer:
            stale.append((user_id, vendor_id))
    for user_id, vendor_id in stale:
        connection.execute(
            sa.update(requests)
            .where(
                requests.c.user_id == user_id,
                requests.c.vendor_id == vendor_id,
                requests.c.status == "pending",
            )
            .values(status="closed", answered_at=now)
        )


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        # Not batch mode: it would copy, drop and rename ``vendors``, and dropping the table
        # cascades (foreign keys are on) to every grant, topic and request of every vendor.
        # Plain columns without constraints can be dropped in place (SQLite 3.35+).
        op.execute("ALTER TABLE vendors DROP COLUMN verified_by")
        op.execute("ALTER TABLE vendors DROP COLUMN verified_at")
        return
    op.drop_column("vendors", "verified_by")
    op.drop_column("vendors", "verified_at")
