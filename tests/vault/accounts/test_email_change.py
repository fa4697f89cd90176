"""Changing the e-mail address on the profile: double opt-in, no enumeration, rate limited.

The profile keeps the current address (and login) until the link mailed to the new one is
followed by the same account. A taken address gets the same answer as a free one; its
owner is told someone tried. Mail is read from the loopback SMTP server.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from vault.accounts.models import EmailConfirmation
from vault.extensions import db
from vault.profile.operations import load_profile
from vault.profile.views import profile_to_form
from vault.services import keys


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {
        **app_config,
        "VAULT_LOGIN_RATE_LIMIT": "1000 per minute",
        "VAULT_ISSUER": "https://vault.example.com",
    }


@pytest.fixture
def person(app: Flask) -> factories.CreatedUser:
    return factories.customer(app, profile={"given_name": "Ada"})


@pytest.fixture
def client(app: Flask, person: factories.CreatedUser) -> FlaskClient:
    client = app.test_client()
    factories.log_in(client, person.email, person.password)
    return client


def stored(app: Flask, person: factories.CreatedUser) -> dict[str, Any]:
    with app.app_context():
        return load_profile(db.session, keys(), person.id)


def change_email(client: FlaskClient, app: Flask, person, email: str, **other: str):
    form = profile_to_form(stored(app, person))
    form.update(email=email, **other)
    return factories.post_form(client, "/profile", form)


def can_log_in(app: Flask, email: str, password: str) -> bool:
    response = factories.post_form(
        app.test_client(), "/login", {"email": email, "password": password}
    )
    return response.status_code == 302


def shown(client: FlaskClient, response) -> str:
    """What the person sees after saving: the page the redirect leads to, tokens removed."""
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get(response.location).get_data(as_text=True)
    return re.sub(r'name="csrf_token"[^>]*value="[^"]*"', "", page)


def test_a_new_address_is_used_only_once_its_link_is_followed(app, client, person, mailbox):
    new = factories.unique_email("moved")
    response = change_email(client, app, person, new, given_name="Ada Augusta")
    page = shown(client, response)
    assert "we sent a link" in page and new in page
    # The rest of the profile is saved; the address and the login are not changed yet.
    assert stored(app, person) == {"given_name": "Ada Augusta", "email": person.email}
    assert f'value="{person.email}"' in page
    assert can_log_in(app, person.email, person.password)
    assert not can_log_in(app, new, person.password)

    mail = mailbox.only_to(new)
    assert mail.subject == "Confirm your new address for CMR Vault"
    link = factories.confirmation_path(mailbox, new)
    assert client.get(link).status_code == 200  # a form; following the link changes nothing
    assert stored(app, person)["email"] == person.email
    response = factories.post_form(client, link, {})
    assert response.status_code == 302
    assert stored(app, person)["email"] == new
    assert can_log_in(app, new, person.password)
    assert not can_log_in(app, person.email, person.password)
    # The old address hears of it; the freed address can be used by somebody else now.
    assert mailbox.only_to(person.email).subject == "Your CMR Vault login address was changed"
    factories.customer(app, email=person.email)
    # The link is spent.
    assert factories.post_form(client, link, {}, form_page="/profile").status_code == 404


def test_a_taken_address_gets_the_same_answer_and_its_owner_is_told(app, client, person, mailbox):
    owner = factories.customer(app)
    free = factories.unique_email("free")
    taken_page = shown(client, change_email(client, app, person, owner.email.upper()))
    free_page = shown(client, change_email(client, app, person, free))
    assert taken_page.replace(owner.email.upper(), "ADDRESS") == free_page.replace(free, "ADDRESS")
    assert "Another account" not in taken_page
    note = mailbox.only_to(owner.email.upper())
    assert note.subject == "Someone tried to use your address for another account"
    assert "/confirm/" not in note.text
    # Nothing pending for the taken address, nothing changed for either account.
    with app.app_context():
        pending = db.session.scalars(sa.select(EmailConfirmation)).all()
    assert len(pending) == 1 and pending[0].user_id == person.id
    assert stored(app, person)["email"] == person.email
    assert can_log_in(app, owner.email, owner.password)


def test_changes_are_rate_limited_per_account_and_per_address(app, client, person, mailbox):
    app.config.update(
        VAULT_EMAIL_CHANGE_RATE_LIMIT="3 per hour", VAULT_MAIL_RATE_LIMIT="2 per hour"
    )
    statuses = [
        change_email(client, app, person, factories.unique_email("n")).status_code for _ in range(4)
    ]
    assert statuses == [302, 302, 302, 429]

    # Per address: a second account may not flood one address either.
    other = factories.customer(app)
    other_client = app.test_client()
    factories.log_in(other_client, other.email, other.password)
    target = factories.unique_email("target")
    responses = [change_email(other_client, app, other, target) for _ in range(3)]
    assert [r.status_code for r in responses] == [302, 302, 429]
    assert "Too many confirmation mails" in responses[-1].get_data(as_text=True)
    assert len(mailbox.to(target)) == 2
    assert stored(app, other)["email"] == other.email


def test_a_link_works_only_for_the_account_that_asked(app, client, person, mailbox):
    new = factories.unique_email("mine")
    change_email(client, app, person, new)
    link = factories.confirmation_path(mailbox, new)

    anonymous = app.test_client().get(link)
    assert anonymous.status_code == 302 and anonymous.location.startswith("/login")

    stranger = factories.customer(app)
    other = app.test_client()
    factories.log_in(other, stranger.email, stranger.password)
    assert other.get(link).status_code == 404
    assert factories.post_form(other, link, {}, form_page="/profile").status_code == 404
    assert stored(app, stranger)["email"] == stranger.email
    assert stored(app, person)["email"] == person.email
    # Still good for its own account.
    assert factories.post_form(client, link, {}).status_code == 302
    assert stored(app, person)["email"] == new


def test_only_the_newest_request_counts(app, client, person, mailbox):
    first, second = factories.unique_email("first"), factories.unique_email("second")
    change_email(client, app, person, first)
    first_link = factories.confirmation_path(mailbox, first)
    change_email(client, app, person, second)
    assert client.get(first_link).status_code == 404
    factories.post_form(client, factories.confirmation_path(mailbox, second), {})
    assert stored(app, person)["email"] == second


def test_an_address_taken_meanwhile_is_not_moved_to(app, client, person, mailbox):
    new = factories.unique_email("raced")
    change_email(client, app, person, new)
    link = factories.confirmation_path(mailbox, new)
    factories.customer(app, email=new)
    response = factories.post_form(client, link, {})
    assert response.status_code == 409
    assert stored(app, person)["email"] == person.email


def test_the_pending_address_is_not_stored_in_the_clear(app, client, person, mailbox):
    new = factories.unique_email("secret")
    change_email(client, app, person, new)
    with app.app_context():
        rows = db.session.execute(sa.text("SELECT * FROM email_confirmations")).all()
    assert len(rows) == 1
    stored_bytes = b"".join(
        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in rows[0]
    )
    assert new.encode() not in stored_bytes and new.split("@")[0].encode() not in stored_bytes


def test_the_same_address_in_other_letters_is_not_a_change(app, client, person, mailbox):
    response = change_email(client, app, person, person.email.upper())
    assert response.status_code == 302
    assert mailbox.received == []
    assert stored(app, person)["email"] == person.email.upper()
    assert can_log_in(app, person.email, person.password)
