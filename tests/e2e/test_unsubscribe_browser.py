"""A person follows the unsubscribe link of a business's e-mail in chromium, not logged in:
the page says what it stops and names nothing of them; one click unsubscribes, without
sending the link onwards as a Referer; logged in later, their consent page shows it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from consent.engine import State
from tests import factories
from vault.consents.models import LedgerEvent
from vault.consents.operations import ConsentChanges, TopicChoice, save_consents
from vault.extensions import db
from vault.oauth.models import Grant
from vault.oauth.operations import remember_subject
from vault.services import keys
from vault.unsubscribe.tokens import UnsubscribeTarget, make_token
from vault.vendors.operations import create_client, create_vendor, declare_topic

pytestmark = pytest.mark.browser


def test_customer_unsubscribes_from_a_business_email_in_one_click(
    live_app: Flask, live_server: str, page: Any
) -> None:
    from playwright.sync_api import expect

    customer = factories.customer(live_app, profile={"given_name": "Ada", "family_name": "King"})
    with live_app.app_context():
        vendor = create_vendor(db.session, "Acme Outdoor")
        client = create_client(
            db.session, vendor, redirect_uris=["https://acme.example/cb"], scopes=["openid"]
        ).client
        newsletter = declare_topic(
            db.session, vendor, "newsletter", "marketing", "Deals, twice a month."
        )
        db.session.add(
            Grant(
                user_id=customer.id,
                client_id=client.client_id,
                vendor_id=vendor.id,
                scope="openid",
            )
        )
        remember_subject(db.session, keys(), vendor.id, customer.id)
        save_consents(
            db.session,
            keys(),
            customer.id,
            ConsentChanges(topics={(newsletter.id, "email"): TopicChoice(State.GRANTED)}),
        )
        db.session.commit()
        token = make_token(
            UnsubscribeTarget("msg-1", customer.id, vendor.id, "email", "newsletter")
        )

    opened = page.goto(f"{live_server}/unsubscribe/{token}")
    assert opened is not None and opened.status == 200
    assert opened.headers["referrer-policy"] == "no-referrer"
    assert opened.headers["cache-control"] == "no-store"
    expect(page).to_have_title(re.compile("Unsubscribe"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Unsubscribe from Acme Outdoor?")
    expect(page.locator("#unsubscribe")).to_contain_text(
        "This stops Acme Outdoor from contacting you by e-mail about newsletter."
    )
    expect(page.locator("#unsubscribe")).to_contain_text("Deals, twice a month.")
    content = page.content()
    for private in (customer.email, "Ada", "King"):
        assert private not in content
    expect(page.get_by_role("navigation")).to_contain_text("Log in")  # no one is logged in

    with page.expect_request(lambda request: request.method == "POST") as sent:
        page.get_by_role("button", name="Unsubscribe").click()
    assert "referer" not in sent.value.headers  # the link is not handed on, even to us
    assert sent.value.post_data == "List-Unsubscribe=One-Click"

    expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
    expect(page.get_by_role("status")).to_contain_text(
        "Acme Outdoor may no longer contact you by e-mail about newsletter."
    )
    expect(page.get_by_role("button", name="Unsubscribe")).to_have_count(0)
    with live_app.app_context():
        sources = db.session.scalars(select(LedgerEvent.source).order_by(LedgerEvent.seq)).all()
    assert sources[-1] == "unsubscribe"

    # The link followed again later: it says so, with no button and no second change.
    page.goto(f"{live_server}/unsubscribe/{token}")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
    expect(page.get_by_role("button", name="Unsubscribe")).to_have_count(0)
    with live_app.app_context():
        assert db.session.scalars(select(LedgerEvent.source)).all().count("unsubscribe") == 1

    # Logged in, the customer's own consent page shows the withdrawal and its receipt.
    page.goto(live_server + "/login")
    page.get_by_label("E-mail").fill(customer.email)
    page.get_by_label("Password").fill(customer.password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("navigation").get_by_role("link", name="Consents").click()
    email_cell = page.locator("td.cell").filter(
        has=page.get_by_label("newsletter by e-mail", exact=True)
    )
    expect(email_cell).to_contain_text("Refused")
    expect(email_cell).to_contain_text(
        "You withdrew consent for Acme Outdoor to contact you by e-mail about newsletter."
    )
    page.goto(live_server + "/consents/receipts")
    expect(page.get_by_role("row")).to_have_count(3)  # the header, the grant, the withdrawal
