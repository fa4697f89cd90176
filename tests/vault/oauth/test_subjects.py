"""Pairwise subjects are kept when a customer's first grant with a vendor starts, so the
consent API maps subs back with an index lookup; migration 0008 fills them in for grants
that existed before."""

from __future__ import annotations

import secrets

import flask_migrate
import sqlalchemy as sa
from sqlalchemy import select

from tests import factories
from vault.extensions import db
from vault.oauth import operations
from vault.oauth.models import Grant, PairwiseSubject
from vault.oauth.scopes import pairwise_sub
from vault.services import keys
from vault.vendors.operations import create_client, create_vendor


def _client(name: str, vendor=None):
    vendor = vendor or create_vendor(db.session, name)
    return create_client(
        db.session, vendor, redirect_uris=["https://shop.example/cb"], scopes=["openid", "email"]
    ).client


def test_the_first_grant_keeps_the_sub_once_per_vendor(app):
    customer = factories.customer(app)
    with app.app_context():
        web = _client("Shop Ltd")
        mobile = _client("Shop Ltd", vendor=web.vendor)  # a second client of the same vendor
        other = _client("Other Ltd")
        for client in (web, mobile, other):
            operations.approve(db.session, keys(), customer.id, client, ["openid"], "1y")
        db.session.commit()
        rows = db.session.scalars(
            select(PairwiseSubject).where(PairwiseSubject.user_id == customer.id)
        ).all()
        assert sorted((row.vendor_id, row.sub) for row in rows) == sorted(
            (vendor_id, pairwise_sub(keys(), vendor_id, customer.id))
            for vendor_id in {web.vendor_id, other.vendor_id}
        )


def test_resolving_finds_only_the_vendors_own_customers(app):
    ann, bob = factories.customer(app), factories.customer(app)
    with app.app_context():
        shop, rival = _client("Shop Ltd"), _client("Rival Ltd")
        operations.approve(db.session, keys(), ann.id, shop, ["openid"], "1y")
        operations.approve(db.session, keys(), bob.id, rival, ["openid"], "1y")
        db.session.commit()
        ann_sub = pairwise_sub(keys(), shop.vendor_id, ann.id)
        bob_at_rival = pairwise_sub(keys(), rival.vendor_id, bob.id)
        bob_at_shop = pairwise_sub(keys(), shop.vendor_id, bob.id)  # never a customer there
        # More subs than one IN list holds, most of them unknown.
        noise = [secrets.token_hex(32) for _ in range(operations._SUBJECTS_PER_QUERY + 7)]
        asked = [*noise, ann_sub, bob_at_rival, bob_at_shop, ann_sub]
        assert operations.resolve_subjects(db.session, shop.vendor_id, asked) == {ann_sub: ann.id}
        assert operations.resolve_subjects(db.session, rival.vendor_id, asked) == {
            bob_at_rival: bob.id
        }
        # A token issued for one customer sees that customer only.
        assert operations.resolve_subjects(db.session, shop.vendor_id, asked, bob.id) == {}


def test_a_revoked_grant_keeps_its_subject(app):
    customer = factories.customer(app)
    with app.app_context():
        shop = _client("Shop Ltd")
        operations.approve(db.session, keys(), customer.id, shop, ["openid"], "1y")
        db.session.commit()
        grant = db.session.scalars(select(Grant).where(Grant.user_id == customer.id)).one()
        operations.revoke_grant(db.session, grant)
        db.session.commit()
        sub = pairwise_sub(keys(), shop.vendor_id, customer.id)
        assert operations.resolve_subjects(db.session, shop.vendor_id, [sub]) == {sub: customer.id}


def test_migration_0008_fills_in_the_subjects_of_existing_grants(app):
    customer = factories.customer(app)
    with app.app_context():
        shop = _client("Shop Ltd")
        db.session.add(
            Grant(
                user_id=customer.id,
                client_id=shop.client_id,
                vendor_id=shop.vendor_id,
                scope="openid",
            )
        )
        db.session.commit()
        vendor_id = shop.vendor_id
        db.session.remove()
        db.engine.dispose()
        flask_migrate.downgrade(revision="0007")
        db.engine.dispose()
        flask_migrate.upgrade()
        db.engine.dispose()
        rows = db.session.execute(
            sa.text("SELECT vendor_id, sub, user_id FROM pairwise_subjects")
        ).all()
        assert [tuple(row) for row in rows] == [
            (vendor_id, pairwise_sub(keys(), vendor_id, customer.id), customer.id)
        ]
