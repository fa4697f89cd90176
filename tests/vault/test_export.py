"""Download my data: one JSON attachment with the account and the whole profile."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests import factories
from vault.extensions import db
from vault.profile.operations import load_profile
from vault.services import keys

PROFILE = {
    "given_name": "Zoë",
    "family_name": "Ørsted",
    "phone_number": "+4930901820",
    "address": {"street_address": "Unter den Linden 1", "locality": "Berlin", "country": "DE"},
    "birthdate": "1990-04-01",
    "locale": "de-DE",
    "zoneinfo": "Europe/Berlin",
    "website": "https://example.de/",
    "interests": ["cycling", "jazz"],
}


@pytest.fixture
def person(app) -> factories.CreatedUser:
    return factories.customer(app, profile=dict(PROFILE))


@pytest.fixture
def client(app, person) -> FlaskClient:
    client = app.test_client()
    factories.log_in(client, person.email, person.password)
    return client


def download(client: FlaskClient) -> tuple[Any, dict[str, Any]]:
    response = client.get("/my-data/export.json")
    assert response.status_code == 200
    return response, json.loads(response.get_data(as_text=True))


def test_export_is_a_json_attachment(client):
    response, _ = download(client)
    assert response.mimetype == "application/json"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert 'filename="cmr-vault-my-data-' in disposition and disposition.endswith('.json"')
    assert "no-store" in response.headers["Cache-Control"]


def test_export_holds_the_account_and_the_whole_profile(app, client, person):
    _, document = download(client)
    assert document["format"] == "cmr-vault-export/1"
    account = document["account"]
    assert account["id"] == person.id
    assert account["role"] == "customer" and account["status"] == "active"
    assert account["two_factor_enabled"] is False
    with app.app_context():
        stored = load_profile(db.session, keys(), person.id)
    assert document["profile"] == stored == {**PROFILE, "email": person.email}
    # Non-ASCII survives as text, not as mangled bytes.
    assert "Zoë" in client.get("/my-data/export.json").get_data(as_text=True)


def test_export_says_whether_the_phone_number_is_confirmed(app, client, person):
    _, document = download(client)
    assert document["account"]["phone_confirmed_at"] is None
    factories.give_confirmed_phone(app, person.id)
    _, document = download(client)
    assert document["account"]["phone_confirmed_at"] is not None
    assert document["profile"]["phone_number"] == factories.PHONE


def test_export_follows_profile_changes(app, client, person):
    response = factories.post_form(client, "/profile", {"email": person.email, "given_name": "Ada"})
    assert response.status_code == 302
    _, document = download(client)
    assert document["profile"] == {"email": person.email, "given_name": "Ada"}


def test_export_holds_no_secrets_and_nobody_elses_data(app, client, person):
    other = factories.customer(app, profile={"given_name": "Someone Else"})
    with app.app_context():
        user = person.load()
        secrets = [user.password_hash, user.email_index.hex(), user.session_token]
    _, document = download(client)
    text = json.dumps(document)
    for secret in secrets:
        assert secret not in text
    assert "password_hash" not in text and "totp_secret" not in text
    assert other.email not in text and "Someone Else" not in text and other.id not in text


def test_only_the_owner_can_download(app, person):
    assert app.test_client().get("/my-data/export.json").status_code == 302
    other = factories.customer(app)
    client = app.test_client()
    factories.log_in(client, other.email, other.password)
    _, document = download(client)
    assert document["account"]["id"] == other.id
    assert person.email not in json.dumps(document)
