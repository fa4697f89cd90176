"""Answering a business's consent request on /consents tells the truth (issue 9, items 14,
15 and 17): the customer's own "allowed until" date survives a yes, a yes that other
settings still overrule says so and offers the switch, and requests from a business the
customer blocked or left are closed and hidden. Test client on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jws
from sqlalchemy import select

from tests import factories
from tests.vault.consents.test_consent_pages import (
    World,
    _business,
    _events_after,
    _request,
    _save,
    _state,
)
from vault.accounts.models import User
from vault.consents.models import ChannelSetting, ConsentReceipt, ConsentRequest, LedgerEvent
from vault.consents.operations import ConsentChanges, VendorSettings, save_consents
from vault.extensions import db
from vault.oauth.models import Grant
from vault.profile.operations import load_profile, save_profile
from vault.services import keys
from vault.vendors.models import Vendor
from vault.vendors.operations import declare_topic

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture
def world(app: Flask, customer: factories.CreatedUser) -> World:
    """Acme, with topics newsletter (marketing) and orders (service), connected."""
    vendor_id, grant_id, topics = _business(app, customer.id)
    return World(customer, vendor_id, grant_id, topics)


def _approve(client: FlaskClient, request_id: str):
    return factories.post_form(
        client, f"/consents/requests/{request_id}/approve", {}, form_page="/consents"
    )


def _allow_until(client: FlaskClient, world: World, channel: str, days: int = 60) -> str:
    newsletter = world.topics["newsletter"]
    day = (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%d")
    response = _save(
        client,
        {f"topic-{newsletter}-{channel}": "granted", f"expires-{newsletter}-{channel}": day},
    )
    assert response.status_code == 302
    return day


def _topics(app: Flask, user_id: str) -> dict[str, tuple[str, str | None]]:
    return {
        channel: (state, expires.strftime("%Y-%m-%d") if expires else None)
        for _, channel, state, expires in _state(app, user_id)["topics"]
    }


def test_approving_texts_to_an_unconfirmed_number_says_to_confirm_it(app, logged_in, world):
    with app.app_context():
        user = db.session.get(User, world.customer.id)
        profile = load_profile(db.session, keys(), user.id)
        save_profile(db.session, keys(), user, {**profile, "phone_number": factories.PHONE})
        db.session.commit()
    request_id = _request(app, world, channels=["email", "sms"])
    response = _approve(logged_in, request_id)
    page = logged_in.get(response.headers["Location"]).get_data(as_text=True)
    assert "You said yes, but Acme still cannot contact you in every way it asked" in page
    assert "Acme may now contact you about <strong>newsletter</strong> by e-mail." in page
    assert (
        "Acme still cannot contact you about <strong>newsletter</strong> by text message: "
        '<span class="reason">There is no confirmed phone number in your profile to reach '
        "you by text message.</span>"
    ) in page
    assert 'href="/profile#phone-confirmation">Confirm your phone number</a>' in page
    # Once confirmed, the same yes lets the texts through.
    factories.confirm_phone(app, world.customer.id)
    page = logged_in.get(response.headers["Location"]).get_data(as_text=True)
    assert "You allowed Acme to contact you as it asked" in page


# --- item 14: the customer's own "allowed until" date ----------------------------------------


def test_approving_keeps_the_customers_own_allowed_until_date(app, logged_in, world):
    day = _allow_until(logged_in, world, "email")
    request_id = _request(app, world, channels=["email", "push"])
    card = logged_in.get("/consents").get_data(as_text=True)
    assert 'Your own "allowed until" dates stay as they are' in card
    assert f"newsletter by e-mail until {day}" in card
    before = _state(app, world.customer.id)

    response = _approve(logged_in, request_id)
    assert response.status_code == 302

    # E-mail keeps its date (nothing changed there, so no event); push is newly allowed.
    assert _topics(app, world.customer.id) == {"email": ("granted", day), "push": ("granted", None)}
    assert _events_after(app, before["head"][0]) == [("topic_granted", "push", "newsletter")]
    page = logged_in.get(response.headers["Location"]).get_data(as_text=True)
    assert f"until {day} (your own date, kept)" in page


def test_a_yes_to_a_new_notice_keeps_the_date_in_the_ledger_and_the_receipt(app, logged_in, world):
    day = _allow_until(logged_in, world, "email")
    with app.app_context():
        vendor = db.session.get(Vendor, world.vendor_id)
        declare_topic(db.session, vendor, "newsletter", "marketing", "Now weekly.")  # version 2
        db.session.commit()
    request_id = _request(app, world, channels=["email"])
    before = _state(app, world.customer.id)
    assert _approve(logged_in, request_id).status_code == 302

    assert _topics(app, world.customer.id) == {"email": ("granted", day)}
    with app.app_context():
        [event] = db.session.scalars(
            select(LedgerEvent).where(LedgerEvent.seq > before["head"][0])
        ).all()
        assert event.event_type == "topic_granted"
        new_state = json.loads(event.new_state)
        assert new_state["notice_version"] == 2
        assert new_state["expires_at"].startswith(day)
        receipt = db.session.scalars(
            select(ConsentReceipt).order_by(ConsentReceipt.ledger_seq.desc())
        ).first()
        assert receipt.ledger_seq == event.seq
    payload = json.loads(jws.extract_compact(receipt.jws.encode()).payload)
    [purpose] = payload["services"][0]["purposes"]
    assert purpose["termination"] == f"expires {day}"


# --- item 15: a yes that the channel switch still overrules -----------------------------------


def test_approving_while_the_channel_is_off_says_so_and_offers_to_switch_it_on(
    app, logged_in, world
):
    factories.give_confirmed_phone(app, world.customer.id)  # texts need a confirmed number
    with app.app_context():
        save_consents(
            db.session, keys(), world.customer.id, ConsentChanges(channels={"sms": False})
        )
        db.session.commit()
    request_id = _request(app, world, channels=["email", "sms"])

    response = _approve(logged_in, request_id)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/consents/requests/{request_id}")
    page = logged_in.get(response.headers["Location"]).get_data(as_text=True)
    assert "You allowed Acme" not in page
    assert "You said yes, but Acme still cannot contact you in every way it asked" in page
    assert "Acme may now contact you about <strong>newsletter</strong> by e-mail." in page
    assert (
        "Contact by text message is switched off for every business, so it stays off: "
        "Acme still cannot contact you about <strong>newsletter</strong> by text message."
    ) in page
    action = "/consents/channels/sms/on"
    assert f'action="{action}"' in page
    # The consent page agrees: text messages stay refused.
    consents = logged_in.get("/consents").get_data(as_text=True)
    assert "You switched off every contact by text message." in consents

    # The offered switch, with the page's CSRF token, as a browser submits it.
    with_token = {"csrf_token": _CSRF.search(page).group(1), "request_id": request_id}
    before = _state(app, world.customer.id)
    switched = logged_in.post(action, data=with_token)
    assert switched.status_code == 302
    assert switched.headers["Location"].endswith(f"/consents/requests/{request_id}")
    assert _events_after(app, before["head"][0]) == [("channel_switched", "sms", None)]
    with app.app_context():
        assert db.session.get(ChannelSetting, (world.customer.id, "sms")).enabled
    page = logged_in.get(switched.headers["Location"]).get_data(as_text=True)
    assert "You allowed Acme to contact you as it asked" in page
    assert "Contact by text message is on again for every business." in page


def test_the_switch_needs_csrf_and_a_real_channel(app, logged_in, world):
    with app.app_context():
        save_consents(
            db.session, keys(), world.customer.id, ConsentChanges(channels={"sms": False})
        )
        db.session.commit()
    before = _state(app, world.customer.id)
    assert logged_in.post("/consents/channels/sms/on").status_code == 400  # no token
    token = factories.csrf_token(logged_in, "/consents")
    assert (
        logged_in.post("/consents/channels/fax/on", data={"csrf_token": token}).status_code == 404
    )
    assert _state(app, world.customer.id) == before


def test_another_customers_request_page_is_not_found(app, logged_in, world):
    other = factories.customer(app)
    request_id = _request(app, world, user_id=other.id)
    assert logged_in.get(f"/consents/requests/{request_id}").status_code == 404


# --- item 17: requests from a business the customer blocked or left ---------------------------


def test_blocking_a_business_closes_and_hides_its_pending_requests(app, logged_in, world):
    request_id = _request(app, world)
    assert "Our weekly deals" in logged_in.get("/consents").get_data(as_text=True)
    vid = world.vendor_id
    response = _save(logged_in, {f"vendor-{vid}": "1", f"block-{vid}": "on"})
    assert response.status_code == 302
    assert "Our weekly deals" not in logged_in.get("/consents").get_data(as_text=True)
    with app.app_context():
        row = db.session.get(ConsentRequest, request_id)
        assert row.status == "closed" and row.answered_at is not None
    assert _approve(logged_in, request_id).status_code == 409
    # Unblocking does not bring the closed request back.
    _save(logged_in, {f"vendor-{vid}": "1"})
    assert "Our weekly deals" not in logged_in.get("/consents").get_data(as_text=True)


def test_ending_the_connection_closes_and_hides_its_pending_requests(app, logged_in, world):
    request_id = _request(app, world)
    response = factories.post_form(
        logged_in, f"/connections/{world.grant_id}/revoke", {}, form_page="/connections"
    )
    assert response.status_code == 302
    assert "Our weekly deals" not in logged_in.get("/consents").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(ConsentRequest, request_id).status == "closed"


def test_requests_left_pending_from_a_blocked_business_are_hidden_and_cannot_be_approved(
    app, logged_in, world
):
    """However a pending request and a block came together (data from before this rule, a
    block written by another path), the page hides it and approving it is refused."""
    request_id = _request(app, world)
    with app.app_context():
        # The block without the operation that closes requests.
        from vault.consents.models import VendorPreference

        db.session.add(
            VendorPreference(user_id=world.customer.id, vendor_id=world.vendor_id, blocked=True)
        )
        db.session.commit()
    assert "Our weekly deals" not in logged_in.get("/consents").get_data(as_text=True)
    before = _state(app, world.customer.id)
    assert _approve(logged_in, request_id).status_code == 409
    assert _state(app, world.customer.id) == before


def test_a_grant_that_only_expired_does_not_close_requests(app, logged_in, world):
    request_id = _request(app, world)
    with app.app_context():
        grant = db.session.get(Grant, world.grant_id)
        grant.expires_at = datetime.now(UTC) - timedelta(minutes=1)
        db.session.commit()
    assert "Our weekly deals" in logged_in.get("/consents").get_data(as_text=True)
    assert _approve(logged_in, request_id).status_code == 302


def test_blocking_through_the_operation_closes_requests(app, world):
    request_id = _request(app, world)
    with app.app_context():
        save_consents(
            db.session,
            keys(),
            world.customer.id,
            ConsentChanges(vendors={world.vendor_id: VendorSettings(blocked=True)}),
        )
        db.session.commit()
        assert db.session.get(ConsentRequest, request_id).status == "closed"
