"""Migration 0012 on data stored before it: unsafe vendor URLs are removed (and the badge
of a vendor that lost one), and requests still pending from a business the customer
blocked or left are closed. Both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask

from tests import factories
from vault.consents.models import ConsentRequest, VendorPreference
from vault.extensions import db
from vault.models import utcnow
from vault.oauth.models import Grant
from vault.vendors.operations import create_client, create_vendor

if TYPE_CHECKING:
    from tests.conftest import TestDatabase


@pytest.fixture
def back_at_head(app: Flask, database: TestDatabase) -> Any:
    yield
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


def _vendor(name: str) -> tuple[str, str]:
    vendor = create_vendor(db.session, name)
    client = create_client(db.session, vendor, redirect_uris=["https://x.example/cb"]).client
    return vendor.id, client.client_id


@pytest.mark.usefixtures("back_at_head")
def test_upgrade_removes_unsafe_urls_and_closes_stale_requests(app: Flask) -> None:
    customer = factories.customer(app)
    now = utcnow()
    with app.app_context():
        vendors = {name: _vendor(name) for name in ("Evil", "Fine", "Blocked", "Left", "Open")}
        for name in ("Left", "Open"):
            vendor_id, client_id = vendors[name]
            db.session.add(
                Grant(
                    user_id=customer.id,
                    client_id=client_id,
                    vendor_id=vendor_id,
                    scope="openid",
                    revoked_at=now - timedelta(days=1) if name == "Left" else None,
                    revoked_reason="customer" if name == "Left" else None,
                )
            )
        db.session.add(
            VendorPreference(user_id=customer.id, vendor_id=vendors["Blocked"][0], blocked=True)
        )
        requests = {}
        for name in ("Blocked", "Left", "Open"):
            row = ConsentRequest(
                vendor_id=vendors[name][0], user_id=customer.id, topics=[], channels=["email"]
            )
            db.session.add(row)
            db.session.flush()
            requests[name] = row.id
        db.session.commit()

        flask_migrate.downgrade(revision="0009")
        db.engine.dispose()
        # As the portal and the CLI let them be stored before 0012.
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE vendors SET verified = :yes, website = :js, logo_url = :data, "
                    "privacy_policy_url = :fine WHERE id = :id"
                ),
                {
                    "yes": True,
                    "js": "javascript:alert(1)",
                    "data": "data:image/svg+xml,<svg onload=alert(1)>",
                    "fine": "https://evil.example/privacy",
                    "id": vendors["Evil"][0],
                },
            )
            conn.execute(
                sa.text("UPDATE vendors SET verified = :yes, website = :site WHERE id = :id"),
                {"yes": True, "site": "http://fine.example/", "id": vendors["Fine"][0]},
            )
        db.engine.dispose()
        flask_migrate.upgrade()
        db.engine.dispose()

        rows = {
            row.name: row
            for row in db.session.execute(
                sa.text("SELECT name, verified, website, logo_url, privacy_policy_url FROM vendors")
            )
        }
        evil, fine = rows["Evil"], rows["Fine"]
        assert (evil.website, evil.logo_url, evil.privacy_policy_url) == (
            None,
            None,
            "https://evil.example/privacy",
        )
        assert not evil.verified
        assert (fine.website, bool(fine.verified)) == ("http://fine.example/", True)
        statuses = {
            name: db.session.get(ConsentRequest, request_id).status
            for name, request_id in requests.items()
        }
        assert statuses == {"Blocked": "closed", "Left": "closed", "Open": "pending"}
        db.session.remove()
