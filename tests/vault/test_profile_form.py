"""The profile form: every malformed value is refused beside its field and stores nothing."""

from __future__ import annotations

import html
import re
from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from vault.extensions import db
from vault.profile.operations import load_profile
from vault.profile.views import profile_to_form
from vault.services import keys

FULL_PROFILE = {
    "given_name": "Ada",
    "middle_name": "King",
    "family_name": "Lovelace",
    "nickname": "Countess",
    "phone_number": "+442079460958",
    "address": {
        "street_address": "12 St James's Square",
        "locality": "London",
        "region": "Greater London",
        "postal_code": "SW1Y 4JH",
        "country": "United Kingdom",
    },
    "birthdate": "1985-12-10",
    "gender": "female",
    "locale": "en-GB",
    "zoneinfo": "Europe/London",
    "website": "https://example.org/ada",
    "interests": ["mathematics", "poetry", "engines"],
}


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "VAULT_LOGIN_RATE_LIMIT": "1000 per minute"}


@pytest.fixture
def person(app: Flask) -> factories.CreatedUser:
    return factories.customer(app, profile=dict(FULL_PROFILE))


@pytest.fixture
def client(app: Flask, person: factories.CreatedUser) -> FlaskClient:
    client = app.test_client()
    factories.log_in(client, person.email, person.password)
    return client


def stored(app: Flask, person: factories.CreatedUser) -> dict[str, Any]:
    with app.app_context():
        return load_profile(db.session, keys(), person.id)


def field_error(page: str, name: str) -> str | None:
    fid = name.replace(".", "-")
    match = re.search(rf'<p class="error" id="{re.escape(fid)}-error">(.*?)</p>', page, re.S)
    return html.unescape(match.group(1)) if match else None


def submit(client: FlaskClient, app: Flask, person: factories.CreatedUser, **changes: str):
    """Post the whole form as the page shows it, with some fields changed."""
    form = profile_to_form(stored(app, person))
    form.update(changes)
    return factories.post_form(client, "/profile", form)


def test_form_shows_the_stored_profile(app, client, person):
    page = client.get("/profile").get_data(as_text=True)
    assert 'name="address.street_address"' in page
    assert 'value="12 St James&#39;s Square"' in page
    assert 'value="mathematics, poetry, engines"' in page
    assert stored(app, person) == {**FULL_PROFILE, "email": person.email}


TOMORROW = (date.today() + timedelta(days=1)).isoformat()

MALFORMED = [
    ("email", "not-an-email", "like name@example.com"),
    ("email", "a@b@example.com", "like name@example.com"),
    ("email", "x" * 250 + "@example.com", "254"),
    ("email", "", "e-mail"),
    ("phone_number", "004930123456", "E.164"),
    ("phone_number", "+44 20 7946 0958", "E.164"),
    ("phone_number", "+1555", "numbering plan"),
    ("phone_number", "+4420794609581234567890", "20"),
    ("phone_number", "call me", "E.164"),
    ("birthdate", TOMORROW, "past"),
    ("birthdate", "2001-02-30", "date"),
    ("birthdate", "10/12/1985", "date"),
    ("birthdate", "1850-01-01", "1900"),
    ("locale", "english!!", "BCP 47"),
    ("locale", "x" * 40, "35"),
    ("zoneinfo", "Mars/Olympus_Mons", "IANA"),
    ("zoneinfo", "../../etc/passwd", "IANA"),
    ("website", "javascript:alert(1)", "URL"),
    ("website", "ftp://example.org/file", "URL"),
    ("website", "example.org", "URL"),
    ("website", "https://example.org/" + "a" * 500, "500"),
    ("interests", ", ".join(f"tag{n}" for n in range(31)), "At most 30"),
    ("interests", "cycling, " + "x" * 33, "32"),
    ("interests", "jazz, <script>", "short tags"),
    ("given_name", "A" * 101, "At most 100"),
    ("family_name", "L" * 101, "At most 100"),
    ("nickname", "N" * 101, "At most 100"),
    ("gender", "g" * 51, "At most 50"),
    ("address.postal_code", "1" * 21, "At most 20"),
    ("address.street_address", "s" * 201, "At most 200"),
]


@pytest.mark.parametrize(("name", "value", "hint"), MALFORMED)
def test_malformed_value_is_refused_beside_its_field(app, client, person, name, value, hint):
    before = stored(app, person)
    response = submit(client, app, person, **{name: value})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    error = field_error(page, name)
    assert error is not None, page
    assert hint.lower() in error.lower(), error
    assert "Nothing was saved" in page
    assert 'aria-invalid="true"' in page
    assert stored(app, person) == before


def test_several_errors_at_once_each_beside_its_field(app, client, person):
    before = stored(app, person)
    response = submit(
        client, app, person, phone_number="12345", zoneinfo="Nowhere/Town", given_name="Grace"
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert field_error(page, "phone_number") and field_error(page, "zoneinfo")
    assert field_error(page, "given_name") is None
    # What the person typed is kept in the form so they can correct it.
    assert 'value="Nowhere/Town"' in page and 'value="Grace"' in page
    assert stored(app, person) == before


@pytest.mark.parametrize("name", ["is_admin", "role", "address.planet", "address", "sub"])
def test_unknown_field_is_refused_by_name(app, client, person, name):
    before = stored(app, person)
    response = submit(client, app, person, **{name: "yes"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    label = name.replace("address.", "address ").replace("_", " ")
    assert f'<a href="#{name.replace(".", "-")}">{label}</a>: This form has no such field' in page
    assert stored(app, person) == before


def test_values_are_normalised_and_saved(app, client, person):
    response = submit(
        client,
        app,
        person,
        given_name="  Grace ",
        interests="Jazz, cycling, jazz, , Cooking",
        zoneinfo="America/New_York",
    )
    assert response.status_code == 302
    profile = stored(app, person)
    assert profile["given_name"] == "Grace"
    assert profile["interests"] == ["Jazz", "cycling", "Cooking"]
    assert profile["zoneinfo"] == "America/New_York"


def test_markup_is_stored_as_text_and_escaped_on_the_page(app, client, person):
    payload = '"><script>alert(1)</script>'
    assert submit(client, app, person, nickname=payload).status_code == 302
    assert stored(app, person)["nickname"] == payload
    page = client.get("/profile").get_data(as_text=True)
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;" in page


def test_clearing_fields_removes_them(app, client, person):
    blank_address = {f"address.{part}": "" for part in FULL_PROFILE["address"]}
    response = submit(
        client, app, person, given_name="", interests="", website="  ", **blank_address
    )
    assert response.status_code == 302
    profile = stored(app, person)
    for claim in ("given_name", "interests", "website", "address"):
        assert claim not in profile
    assert profile["family_name"] == "Lovelace"


def test_clearing_one_address_part_keeps_the_others(app, client, person):
    assert submit(client, app, person, **{"address.region": ""}).status_code == 302
    address = stored(app, person)["address"]
    assert "region" not in address
    assert address["locality"] == "London"


# A changed e-mail address waits for its confirmation link, and a taken one is answered
# like a free one: tests/vault/accounts/test_email_change.py.


def test_staff_cannot_open_or_post_the_profile_form(app):
    from vault.accounts.models import Role

    staff = factories.customer(app, role=Role.ADMIN)
    client = app.test_client()
    factories.log_in(client, staff.email, staff.password)
    assert client.get("/profile").status_code == 403
    token = factories.csrf_token(client, "/security")
    response = client.post("/profile", data={"csrf_token": token, "email": "admin2@example.com"})
    assert response.status_code == 403
    with app.app_context():
        assert load_profile(db.session, keys(), staff.id) == {"email": staff.email}
