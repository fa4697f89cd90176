"""The whole OAuth flow with a real client library as the vendor and a person in chromium.

Discovery, authorize with PKCE, the customer unticks one scope on the consent screen,
token exchange, the profile API returns exactly the approved claims, refresh, revocation
from /connections, and then the API answers 401 invalid_token and introspection says
inactive.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask

from tests import factories
from vault.extensions import db
from vault.vendors.operations import create_client, create_vendor

pytestmark = pytest.mark.browser


@pytest.fixture
def vendor_client(live_app: Flask, live_server: str) -> dict[str, str]:
    with live_app.app_context():
        vendor = create_vendor(db.session, "Acme Outdoor", website="https://acme.example")
        new = create_client(
            db.session,
            vendor,
            redirect_uris=[live_server + "/vendor/callback"],
            scopes=["openid", "profile", "email", "phone"],
        )
        db.session.commit()
        return {"client_id": new.client.client_id, "client_secret": new.client_secret or ""}


def test_customer_unticks_a_scope_and_revokes_in_one_click(
    live_app: Flask, live_server: str, vendor_client: dict[str, str], page: Any
) -> None:
    from playwright.sync_api import expect

    customer = factories.customer(
        live_app,
        profile={"given_name": "Grace", "family_name": "Hopper", "phone_number": "+14155550123"},
    )
    metadata = requests.get(live_server + "/.well-known/openid-configuration", timeout=10).json()
    assert metadata["code_challenge_methods_supported"] == ["S256"]

    vendor = OAuth2Session(
        vendor_client["client_id"],
        vendor_client["client_secret"],
        scope="openid profile email phone",
        redirect_uri=live_server + "/vendor/callback",
        code_challenge_method="S256",
    )
    verifier = generate_token(48)
    url, state = vendor.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=generate_token(16)
    )

    # The customer logs in and lands on the consent screen.
    page.goto(live_server + "/login")
    page.get_by_label("E-mail").fill(customer.email)
    page.get_by_label("Password").fill(customer.password)
    page.get_by_role("button", name="Log in").click()
    page.goto(url)
    expect(page.get_by_role("heading", name=re.compile("Acme Outdoor asks"))).to_be_visible()
    expect(page.get_by_text("+14155550123")).to_be_visible()  # shows the value it would reveal
    page.get_by_label("Your phone number").uncheck()
    page.get_by_label("30 days").check()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(re.compile(r"/vendor/callback\?"))
    callback = page.url
    assert f"state={state}" in callback

    token = vendor.fetch_token(
        metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )
    assert token["scope"].split() == ["openid", "profile", "email"]
    claims = vendor.get(live_server + "/api/v1/profile").json()
    assert claims["given_name"] == "Grace" and claims["email"] == customer.email
    assert "phone_number" not in claims

    vendor.scope = None  # refresh with the scope actually granted
    refreshed = vendor.refresh_token(metadata["token_endpoint"])
    assert refreshed["access_token"] != token["access_token"]
    assert vendor.get(live_server + "/api/v1/profile").status_code == 200

    # Revoking in the browser kills every token of the grant at once.
    page.goto(live_server + "/connections")
    expect(page.get_by_role("heading", name="Acme Outdoor")).to_be_visible()
    page.get_by_role("button", name="Revoke access of Acme Outdoor").click()
    expect(page.get_by_text("can no longer read your data")).to_be_visible()

    denied = vendor.get(live_server + "/api/v1/profile")
    assert denied.status_code == 401
    assert denied.headers["Content-Type"] == "application/problem+json"
    assert denied.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in denied.headers["WWW-Authenticate"]
    introspection = requests.post(
        metadata["introspection_endpoint"],
        data={"token": refreshed["access_token"]},
        auth=(vendor_client["client_id"], vendor_client["client_secret"]),
        timeout=10,
    ).json()
    assert introspection == {"active": False}

    # The customer sees the read in their activity log.
    page.goto(live_server + "/activity")
    expect(page.get_by_role("cell", name="Acme Outdoor").first).to_be_visible()
