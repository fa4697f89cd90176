"""A business's message, from its API call to the customer's unsubscribe, in chromium.

The business sends an e-mail through ``POST /api/v1/messages`` (Authlib's OAuth2Session,
client credentials), the outbox worker delivers it into the loopback SMTP server, the
customer logs in, opens Messages, reads it under the business's name and unsubscribes from
it there; the business's next message about that topic by e-mail is a 403, and its portal
lists both messages by the customer's pairwise sub. Screenshots go to
``VAULT_E2E_SCREENSHOTS`` (default: the system temp dir) as ``vault-messages-*.png``.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask

from consent.engine import State
from tests import factories
from vault.accounts.models import Role
from vault.consents.operations import ConsentChanges, TopicChoice, save_consents
from vault.extensions import db
from vault.messages.worker import Worker
from vault.oauth.models import Grant
from vault.oauth.operations import remember_subject
from vault.services import keys
from vault.vendors.models import VendorMember
from vault.vendors.operations import create_client, create_vendor, declare_topic

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(os.environ.get("VAULT_E2E_SCREENSHOTS", tempfile.gettempdir()))
MOBILE = {"width": 375, "height": 812}


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"vault-messages-{name}.png"), full_page=True)


def log_in(page: Any, base: str, user: factories.CreatedUser) -> None:
    page.goto(base + "/login")
    page.get_by_label("E-mail").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


def test_customer_reads_a_business_message_and_unsubscribes_from_it(
    live_app: Flask, live_server: str, page: Any, mailbox: Any, browser: Any
) -> None:
    from playwright.sync_api import expect

    customer = factories.customer(
        live_app, profile={"given_name": "Ada", "zoneinfo": "Europe/Berlin"}
    )
    member = factories.customer(live_app, role=Role.VENDOR_MEMBER)
    with live_app.app_context():
        vendor = create_vendor(db.session, "Acme Outdoor")
        new = create_client(
            db.session,
            vendor,
            redirect_uris=["https://acme.example/cb"],
            scopes=["openid", "messages:send"],
        )
        newsletter = declare_topic(
            db.session, vendor, "newsletter", "marketing", "Deals, twice a month."
        )
        db.session.add(
            Grant(
                user_id=customer.id,
                client_id=new.client.client_id,
                vendor_id=vendor.id,
                scope="openid",
            )
        )
        db.session.add(VendorMember(user_id=member.id, vendor_id=vendor.id))
        sub = remember_subject(db.session, keys(), vendor.id, customer.id)
        save_consents(
            db.session,
            keys(),
            customer.id,
            ConsentChanges(topics={(newsletter.id, "email"): TopicChoice(State.GRANTED)}),
        )
        db.session.commit()
        client_id, client_secret = new.client.client_id, new.client_secret

    # The business, as its own systems would: client credentials, then the messages API.
    meta = requests.get(live_server + "/.well-known/oauth-authorization-server", timeout=10).json()
    business = OAuth2Session(
        client_id,
        client_secret,
        scope="messages:send",
        token_endpoint_auth_method="client_secret_basic",
    )
    business.fetch_token(meta["token_endpoint"], grant_type="client_credentials")

    def send(subject: str) -> requests.Response:
        return business.post(
            live_server + "/api/v1/messages",
            json={
                "sub": sub,
                "channel": "email",
                "topic": "newsletter",
                "subject": subject,
                "body": "Fresh snow, fresh deals.\nSee you on the slopes.",
            },
            headers={"Idempotency-Key": str(uuid.uuid4())},
            timeout=10,
        )

    accepted = send("Winter deals")
    assert accepted.status_code == 202, accepted.text
    first_id = accepted.json()["id"]

    # The outbox worker delivers it into the loopback SMTP server.
    worker = Worker(live_app)
    assert worker.run_once() == 1
    mail = mailbox.only_to(customer.email)
    assert mail.subject == "Winter deals"
    listed = re.search(r"<([^>]+)>", mail.message["List-Unsubscribe"])
    assert listed is not None
    mail_unsubscribe_path = urlsplit(listed.group(1)).path

    # The customer finds it under Messages, under the business's name.
    log_in(page, live_server, customer)
    page.get_by_role("navigation").get_by_role("link", name="Messages").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Messages")
    expect(page.get_by_text("Times are in your time zone, Europe/Berlin.")).to_be_visible()
    acme = page.get_by_role("region", name="Acme Outdoor")
    message = acme.locator(f"#message-{first_id}")
    expect(message.get_by_role("heading", name="Winter deals")).to_be_visible()
    expect(message).to_contain_text("e-mail")
    expect(message).to_contain_text("newsletter")
    expect(message).to_contain_text("Deals, twice a month.")
    expect(message).to_contain_text("Sent")
    body = message.get_by_text("Fresh snow, fresh deals.")
    expect(body).to_be_hidden()  # behind the disclosure
    message.get_by_text("Read the message").click()
    expect(body).to_be_visible()
    screenshot(page, "customer")
    content = page.content()
    assert customer.email not in content  # the list shows what was sent, not where

    # The list's link is the one the e-mail carried: the same consent, the same page.
    link = message.get_by_role("link", name="Unsubscribe from newsletter by e-mail")
    assert link.get_attribute("href") == mail_unsubscribe_path
    link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Unsubscribe from Acme Outdoor?")
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")

    # Back on the list: it says so, and offers no unsubscribe link any more.
    page.get_by_role("navigation").get_by_role("link", name="Messages").click()
    expect(message).to_contain_text("You have unsubscribed from newsletter by e-mail.")
    expect(message.get_by_role("link", name=re.compile("^Unsubscribe"))).to_have_count(0)
    page.set_viewport_size(MOBILE)
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"/messages is {overflow}px wider than a phone"

    # The business's next e-mail about the newsletter is refused, and nothing more is sent.
    refused = send("More deals")
    assert refused.status_code == 403, refused.text
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert refused.json()["rule"] == "withdrawn"
    assert worker.run_once() == 0
    assert len(mailbox.to(customer.email)) == 1

    # The business's portal lists both, by the pairwise sub, never the address.
    portal = browser.new_context().new_page()
    try:
        log_in(portal, live_server, member)
        portal.goto(live_server + "/business/messages")
        rows = portal.get_by_role("table").get_by_role("row")
        expect(rows).to_have_count(3)  # the header and the two messages
        expect(rows.nth(1)).to_contain_text("blocked")
        expect(rows.nth(1)).to_contain_text("withdrawn")
        expect(rows.nth(2)).to_contain_text(first_id)
        expect(rows.nth(2)).to_contain_text("sent")
        expect(rows.nth(2)).to_contain_text(sub)
        assert customer.email not in portal.content()
        screenshot(portal, "portal")
    finally:
        portal.context.close()
