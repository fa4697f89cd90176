"""Rate limits on the token endpoint: per client and address, so a stranger who knows a
vendor's client_id cannot spend the vendor's budget."""

from __future__ import annotations

import base64

import pytest

from vault.extensions import db
from vault.vendors.operations import create_client, create_vendor


@pytest.fixture
def app_config(app_config):
    return {**app_config, "VAULT_TOKEN_RATE_LIMIT": "3 per minute"}


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def test_guessing_secrets_from_elsewhere_does_not_lock_the_vendor_out(app):
    with app.app_context():
        vendor = create_vendor(db.session, "Target")
        new = create_client(db.session, vendor, redirect_uris=["https://t.example/cb"])
        db.session.commit()
        client_id, secret = new.client.client_id, new.client_secret
    attacker = app.test_client()
    form = {"grant_type": "refresh_token", "refresh_token": "nope"}
    stranger = {"REMOTE_ADDR": "203.0.113.9"}
    for _ in range(3):
        response = attacker.post(
            "/oauth/token", data=form, headers=_basic(client_id, "wrong"), environ_base=stranger
        )
        assert response.status_code == 401
    limited = attacker.post(
        "/oauth/token", data=form, headers=_basic(client_id, "wrong"), environ_base=stranger
    )
    assert limited.status_code == 429
    # The token endpoint's clients are OAuth libraries: RFC 6749 error JSON (vault.errors).
    assert limited.headers["Content-Type"] == "application/json"
    assert limited.get_json()["error"] == "temporarily_unavailable"
    # The vendor itself, from its own address, is still answered (400: the token is unknown).
    vendor_call = app.test_client().post(
        "/oauth/token", data=form, headers=_basic(client_id, secret)
    )
    assert vendor_call.status_code == 400
    assert vendor_call.get_json()["error"] == "invalid_grant"
