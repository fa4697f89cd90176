"""A person sets their contact preferences in chromium and reads why each decision is what
it is; then ends a connection and finds the termination receipt."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask

from tests import factories
from vault.extensions import db
from vault.oauth.models import Grant
from vault.oauth.operations import remember_subject
from vault.services import keys
from vault.vendors.operations import create_client, create_vendor, declare_topic

pytestmark = pytest.mark.browser


@pytest.fixture
def shop(live_app: Flask) -> dict[str, str]:
    with live_app.app_context():
        vendor = create_vendor(db.session, "Acme Outdoor")
        client = create_client(
            db.session,
            vendor,
            redirect_uris=["https://acme.example/callback"],
            scopes=["openid", "email"],
        ).client
        declare_topic(db.session, vendor, "newsletter", "marketing", "Deals, twice a month.")
        declare_topic(db.session, vendor, "orders", "service")
        api = create_client(
            db.session,
            vendor,
            redirect_uris=["https://acme.example/unused"],
            scopes=["consent:check"],
        )
        db.session.commit()
        return {
            "vendor_id": vendor.id,
            "client_id": client.client_id,
            "api_client_id": api.client.client_id,
            "api_client_secret": api.client_secret or "",
        }


def vendor_batch_check(
    live_server: str, shop: dict[str, str], items: list[dict[str, str]]
) -> list[dict[str, Any]]:
    """The business asks the vault, with client credentials through Authlib's client."""
    from authlib.integrations.requests_client import OAuth2Session

    vendor = OAuth2Session(shop["api_client_id"], shop["api_client_secret"], scope="consent:check")
    vendor.fetch_token(live_server + "/oauth/token", grant_type="client_credentials")
    response = vendor.post(live_server + "/api/v1/consents/check", json={"items": items})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_customer_sets_channels_consent_and_quiet_hours(
    live_app: Flask, live_server: str, shop: dict[str, str], page: Any
) -> None:
    from playwright.sync_api import expect

    customer = factories.customer(live_app)
    with live_app.app_context():
        db.session.add(
            Grant(
                user_id=customer.id,
                client_id=shop["client_id"],
                vendor_id=shop["vendor_id"],
                scope="openid email",
            )
        )
        remember_subject(db.session, keys(), shop["vendor_id"], customer.id)
        db.session.commit()
    # Quiet hours that start two hours from now: nothing is deferred while the test runs.
    local = datetime.now(UTC).astimezone(ZoneInfo("Europe/Berlin"))
    start = (local + timedelta(hours=2)).strftime("%H:%M")
    end = (local + timedelta(hours=3)).strftime("%H:%M")

    page.goto(live_server + "/login")
    page.get_by_label("E-mail").fill(customer.email)
    page.get_by_label("Password").fill(customer.password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("navigation").get_by_role("link", name="Consents").click()
    expect(page.get_by_role("heading", name=re.compile("Acme Outdoor"))).to_be_visible()
    expect(
        page.get_by_text(
            "You have not allowed Acme Outdoor to contact you by e-mail about newsletter."
        )
    ).to_be_visible()

    page.get_by_label("Contact by text message").uncheck()
    page.get_by_label("newsletter by e-mail", exact=True).select_option("granted")
    page.get_by_label("Quiet from").fill(start)
    page.get_by_label("Quiet until").fill(end)
    page.get_by_label("Time zone").select_option("Europe/Berlin")
    page.get_by_role("button", name="Save my choices").click()

    expect(page.get_by_text(re.compile(r"Saved\. 3 change"))).to_be_visible()
    email_cell = page.locator("td.cell").filter(
        has=page.get_by_label("newsletter by e-mail", exact=True)
    )
    expect(email_cell).to_contain_text("Allowed")
    expect(email_cell).to_contain_text(
        "You allowed Acme Outdoor to contact you by e-mail about newsletter."
    )
    sms_cell = page.locator("td.cell").filter(
        has=page.get_by_label("newsletter by text message", exact=True)
    )
    expect(sms_cell).to_contain_text("Refused")
    expect(sms_cell).to_contain_text("You switched off every contact by text message.")
    expect(page.get_by_label("Contact by text message")).not_to_be_checked()
    expect(page.get_by_label("Quiet from")).to_have_value(start)
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    expect(
        page.get_by_text(
            "orders is a service message and you have an active connection with Acme Outdoor."
        ).first
    ).to_be_visible()

    # The business's batch check now returns the decisions and reasons the page shows.
    with live_app.app_context():
        from vault.oauth.scopes import pairwise_sub

        sub = pairwise_sub(keys(), shop["vendor_id"], customer.id)
    results = vendor_batch_check(
        live_server,
        shop,
        [
            {"sub": sub, "channel": "email", "topic": "newsletter"},
            {"sub": sub, "channel": "sms", "topic": "newsletter"},
            {"sub": sub, "channel": "email", "topic": "orders"},
            {"sub": sub, "channel": "post", "topic": "newsletter"},
        ],
    )
    assert [(r["outcome"], r["rule"]) for r in results] == [
        ("allow", "granted"),
        ("deny", "channel_off"),
        ("allow", "service_relationship"),
        ("deny", "no_consent"),
    ]
    assert results[0]["reason"] == (
        "You allowed Acme Outdoor to contact you by e-mail about newsletter."
    )
    assert results[1]["reason"] == "You switched off every contact by text message."
    # The quiet hours saved in the browser are what the engine applies: inside them, the
    # same e-mail is deferred to their end.
    with live_app.app_context():
        from consent.engine import Topic, VendorRef, decide
        from vault.consents.snapshot import load_consents

        settings = load_consents(db.session, [customer.id], datetime.now(UTC), shop["vendor_id"])[
            customer.id
        ]
    inside = (local + timedelta(hours=2, minutes=30)).astimezone(UTC)
    deferred = decide(
        settings,
        VendorRef(shop["vendor_id"], "Acme Outdoor"),
        "email",
        Topic("newsletter", "marketing"),
        inside,
    )
    assert (deferred.outcome, deferred.rule) == ("defer", "quiet_hours")
    assert deferred.not_before is not None
    assert deferred.not_before.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") == end

    # A bad value is shown next to its field and nothing is saved.
    page.get_by_label("At most per day (per channel)").fill("lots")
    page.get_by_label("newsletter by e-mail", exact=True).select_option("withdrawn")
    page.get_by_role("button", name="Save my choices").click()
    expect(
        page.get_by_text("Enter a whole number from 0 to 1000, or leave it empty.")
    ).to_be_visible()
    page.goto(live_server + "/consents")
    expect(email_cell).to_contain_text("You allowed Acme Outdoor")

    # Every change has a receipt to read and download.
    page.get_by_role("link", name="your receipts").click()
    expect(page.get_by_role("row")).to_have_count(4)  # the header and three receipts
    with page.expect_download() as download:
        page.get_by_role("link", name="Download (JWS)").first.click()
    assert download.value.suggested_filename.endswith(".jws")

    # Ending the connection (stop contact is ticked by default) yields a termination receipt.
    page.goto(live_server + "/connections")
    expect(page.get_by_label(re.compile("Also stop all contact from Acme Outdoor"))).to_be_checked()
    page.get_by_role("button", name="Revoke access of Acme Outdoor").click()
    expect(page.get_by_text("It may no longer contact you either.")).to_be_visible()
    page.goto(live_server + "/consents/receipts")
    expect(page.get_by_role("cell", name="termination")).to_be_visible()
    page.goto(live_server + "/consents")
    expect(email_cell).to_contain_text("You blocked all contact from Acme Outdoor.")


def test_a_yes_to_a_request_says_what_stays_off_and_offers_the_switch(
    live_app: Flask, live_server: str, shop: dict[str, str], page: Any, tmp_path: Any
) -> None:
    """Issue 9, items 14 and 15: the customer allows e-mail until a date of their own and has
    text messages off; the business asks for both; the yes keeps the date and says plainly
    that text messages stay off, with a button that switches them on."""
    from playwright.sync_api import expect

    from consent.engine import State
    from vault.consents.models import ConsentRequest
    from vault.consents.operations import ConsentChanges, TopicChoice, save_consents
    from vault.vendors.models import ContactTopic

    # A confirmed number: once switched on, text messages have somewhere to go.
    customer = factories.customer_with_phone(live_app)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=90)
    day = until.strftime("%Y-%m-%d")
    with live_app.app_context():
        db.session.add(
            Grant(
                user_id=customer.id,
                client_id=shop["client_id"],
                vendor_id=shop["vendor_id"],
                scope="openid email",
            )
        )
        newsletter = db.session.scalars(
            db.select(ContactTopic).where(
                ContactTopic.vendor_id == shop["vendor_id"], ContactTopic.name == "newsletter"
            )
        ).one()
        save_consents(
            db.session,
            keys(),
            customer.id,
            ConsentChanges(
                channels={"sms": False},
                topics={(newsletter.id, "email"): TopicChoice(State.GRANTED, until)},
            ),
        )
        db.session.add(
            ConsentRequest(
                vendor_id=shop["vendor_id"],
                user_id=customer.id,
                topics=[newsletter.id],
                channels=["email", "sms"],
                message="Deals by e-mail and text, twice a month.",
            )
        )
        db.session.commit()

    page.goto(live_server + "/login")
    page.get_by_label("E-mail").fill(customer.email)
    page.get_by_label("Password").fill(customer.password)
    page.get_by_role("button", name="Log in").click()
    page.goto(live_server + "/consents")
    request_card = page.locator("article.request")
    expect(request_card).to_contain_text("Deals by e-mail and text, twice a month.")
    expect(request_card).to_contain_text(f"newsletter by e-mail until {day}")
    page.get_by_role("button", name="Allow Acme Outdoor").click()

    expect(
        page.get_by_role("heading", name="You said yes, but Acme Outdoor still cannot contact you")
    ).to_be_visible()
    expect(page.get_by_text(f"until {day} (your own date, kept)")).to_be_visible()
    expect(
        page.get_by_text(
            "Contact by text message is switched off for every business, so it stays off"
        )
    ).to_be_visible()
    expect(page.get_by_text("You allowed Acme Outdoor to contact you as it asked")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "request-answered.png"), full_page=True)

    page.get_by_role("button", name="Switch contact by text message on").click()
    expect(
        page.get_by_role("heading", name="You allowed Acme Outdoor to contact you as it asked")
    ).to_be_visible()
    expect(
        page.get_by_text("Contact by text message is on again for every business.")
    ).to_be_visible()
    page.goto(live_server + "/consents")
    expect(page.get_by_label("Contact by text message")).to_be_checked()
    expect(page.get_by_label("Allowed until (newsletter by e-mail)")).to_have_value(day)
