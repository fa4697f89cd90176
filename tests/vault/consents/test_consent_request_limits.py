"""Consent requests a customer no longer receives, and how many a business may send (issue 9,
item 17): over HTTP with Authlib's OAuth2Session as the vendor (client credentials) against
a live vault, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from authlib.integrations.requests_client import OAuth2Session

from tests.vault.consents.test_vendor_api import Shop, _connect, _session, _shop
from tests.vault.oauth.conftest import Vault
from vault.consents.operations import (
    ConsentChanges,
    VendorSettings,
    end_relationship,
    save_consents,
)
from vault.extensions import db
from vault.models import utcnow
from vault.oauth.models import Grant
from vault.oauth.operations import revoke_grant
from vault.services import keys

LIMIT = 2


@pytest.fixture
def live_config_overrides() -> dict[str, Any]:
    return {"VAULT_CONSENT_REQUEST_RATE_LIMIT": f"{LIMIT} per day"}


@pytest.fixture
def acme(vault: Vault) -> Shop:
    return _shop(vault, "Acme", {"news": "marketing", "survey": "research", "orders": "service"})


def _ask(vault: Vault, session: OAuth2Session, sub: str, **change: Any):
    body = {"sub": sub, "topics": ["news"], "channels": ["email"], "message": "Deals?", **change}
    return session.post(vault.base + "/api/v1/consent-requests", json=body, timeout=10)


def _problem(response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "https://cmr-vault.example/problems/" + slug
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def _stored(vault: Vault) -> int:
    return vault.sql("SELECT count(*) FROM consent_requests")[0][0]


def _grant_id(vault: Vault, user_id: str, shop: Shop) -> str:
    return vault.sql(
        "SELECT id FROM oauth_grants WHERE user_id = :u AND vendor_id = :v",
        u=user_id,
        v=shop.client.vendor_id,
    )[0][0]


def test_a_blocked_business_is_refused_and_nothing_is_stored(vault: Vault, acme: Shop):
    customer = vault.customer()
    sub = _connect(vault, customer.id, acme)
    with vault.app.app_context():
        save_consents(
            db.session,
            keys(),
            customer.id,
            ConsentChanges(vendors={acme.client.vendor_id: VendorSettings(blocked=True)}),
        )
        db.session.commit()
    session = _session(vault, acme, "consent:request")
    for _ in range(LIMIT + 2):  # never stored, so never counted either
        body = _problem(_ask(vault, session, sub), 403, "vendor-blocked")
        assert "blocked all contact from your business" in body["detail"]
    assert _stored(vault) == 0


def test_a_business_whose_connection_the_customer_ended_is_refused_until_reconnected(
    vault: Vault, acme: Shop
):
    customer = vault.customer()
    sub = _connect(vault, customer.id, acme)
    with vault.app.app_context():
        grant = db.session.get(Grant, _grant_id(vault, customer.id, acme))
        end_relationship(db.session, keys(), customer.id, grant, stop_contact=False)
        db.session.commit()
    session = _session(vault, acme, "consent:request")
    body = _problem(_ask(vault, session, sub), 403, "connection-ended")
    assert "ended their connection" in body["detail"]
    assert _stored(vault) == 0
    # The customer connects again: the business may ask again.
    assert _connect(vault, customer.id, acme) == sub
    assert _ask(vault, session, sub).status_code == 201


def test_grants_that_ended_without_the_customer_leave_requests_open(vault: Vault, acme: Shop):
    """A grant that ran out (the customer chose its length) or that the vault revoked
    itself (a replayed refresh token) is not the customer ending the connection."""
    expired, replayed = vault.customer(), vault.customer()
    sub_expired = _connect(vault, expired.id, acme, expired=True)
    sub_replayed = _connect(vault, replayed.id, acme)
    with vault.app.app_context():
        grant = db.session.get(Grant, _grant_id(vault, replayed.id, acme))
        revoke_grant(db.session, grant, reason="refresh_token_replay")
        db.session.commit()
    session = _session(vault, acme, "consent:request")
    assert _ask(vault, session, sub_expired).status_code == 201
    assert _ask(vault, session, sub_replayed).status_code == 201


def test_an_earlier_revocation_does_not_count_once_a_later_grant_ran_out(vault: Vault, acme: Shop):
    customer = vault.customer()
    sub = _connect(vault, customer.id, acme)
    with vault.app.app_context():
        first = db.session.get(Grant, _grant_id(vault, customer.id, acme))
        end_relationship(db.session, keys(), customer.id, first, stop_contact=False)
        first.revoked_at = utcnow() - timedelta(minutes=10)
        # Connected again later, for a time the customer chose, which has run out.
        db.session.add(
            Grant(
                user_id=customer.id,
                client_id=acme.client.client_id,
                vendor_id=acme.client.vendor_id,
                scope="openid",
                created_at=utcnow() - timedelta(minutes=5),
                expires_at=utcnow() - timedelta(minutes=1),
            )
        )
        db.session.commit()
    session = _session(vault, acme, "consent:request")
    assert _ask(vault, session, sub).status_code == 201


def test_a_pending_request_is_closed_when_the_customer_blocks(vault: Vault, acme: Shop):
    customer = vault.customer()
    sub = _connect(vault, customer.id, acme)
    session = _session(vault, acme, "consent:request")
    created = _ask(vault, session, sub)
    assert created.status_code == 201
    with vault.app.app_context():
        save_consents(
            db.session,
            keys(),
            customer.id,
            ConsentChanges(vendors={acme.client.vendor_id: VendorSettings(blocked=True)}),
        )
        db.session.commit()
    fetched = session.get(created.headers["Location"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.json()["status"] == "closed" and fetched.json()["answered_at"]


def test_new_requests_per_business_and_customer_are_rate_limited(vault: Vault, acme: Shop):
    bolt = _shop(vault, "Bolt", {"news": "marketing"})
    customer, other = vault.customer(), vault.customer()
    sub = _connect(vault, customer.id, acme)
    sub_other = _connect(vault, other.id, acme)
    bolt_sub = _connect(vault, customer.id, bolt)
    session = _session(vault, acme, "consent:request")

    first = _ask(vault, session, sub)
    assert first.status_code == 201
    # Asking again while it is pending returns it and costs nothing.
    for _ in range(LIMIT + 1):
        again = _ask(vault, session, sub)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert _ask(vault, session, sub, channels=["post"]).status_code == 201  # the 2nd new one

    limited = _ask(vault, session, sub, channels=["sms"])
    body = _problem(limited, 429, "consent-request-limit")
    assert f"{LIMIT} per 1 day" in body["detail"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 86400
    assert _stored(vault) == LIMIT
    # Other topics do not get around it, and refused requests are not counted.
    _problem(_ask(vault, session, sub, topics=["survey"]), 429, "consent-request-limit")
    assert _stored(vault) == LIMIT

    # The limit is per business and customer: the same business may ask someone else, and
    # another business may ask this customer.
    assert _ask(vault, session, sub_other).status_code == 201
    bolt_session = _session(vault, bolt, "consent:request")
    assert _ask(vault, bolt_session, bolt_sub).status_code == 201


def test_the_openapi_document_names_the_new_answers(vault: Vault):
    import requests

    doc = requests.get(vault.base + "/api/openapi.json", timeout=10).json()
    responses = doc["paths"]["/api/v1/consent-requests"]["post"]["responses"]
    assert "vendor-blocked" in responses["403"]["description"]
    assert "connection-ended" in responses["403"]["description"]
    assert "consent-request-limit" in responses["429"]["description"]
