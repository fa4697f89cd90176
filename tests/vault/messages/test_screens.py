"""The messages screens on SQLite and PostgreSQL: the customer's /messages (per business,
their own only, unsubscribe from there) and the business portal's list and test-message
form (through the messages API's own operation, so the consent engine decides)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from consent.engine import State
from tests import factories
from vault.accounts.models import Role
from vault.consents.operations import ConsentChanges, TopicChoice, save_consents
from vault.extensions import db
from vault.messages.models import ContactLog, Message
from vault.messages.operations import accept_message
from vault.oauth.models import Grant
from vault.oauth.operations import remember_subject
from vault.services import keys
from vault.unsubscribe.tokens import UnsubscribeTarget, read_token
from vault.vendors.models import Vendor, VendorMember
from vault.vendors.operations import create_client, create_vendor, declare_topic

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Shop:
    vendor_id: str
    client_id: str
    name: str
    topics: dict[str, str]  # name -> id


def make_shop(app: Flask, name: str, topics: dict[str, str]) -> Shop:
    with app.app_context():
        vendor = create_vendor(db.session, name)
        client = create_client(
            db.session, vendor, redirect_uris=["https://shop.example/cb"], scopes=["openid"]
        ).client
        ids = {
            topic: declare_topic(db.session, vendor, topic, purpose, f"{topic} of {name}").id
            for topic, purpose in topics.items()
        }
        db.session.commit()
        return Shop(vendor.id, client.client_id, name, ids)


def connect(app: Flask, user_id: str, shop: Shop, *allowed: tuple[str, str]) -> str:
    """A grant of the customer to the shop, the consents ``(topic, channel)`` given; the
    customer's sub for the shop."""
    with app.app_context():
        db.session.add(
            Grant(
                user_id=user_id, client_id=shop.client_id, vendor_id=shop.vendor_id, scope="openid"
            )
        )
        sub = remember_subject(db.session, keys(), shop.vendor_id, user_id)
        if allowed:
            save_consents(
                db.session,
                keys(),
                user_id,
                ConsentChanges(
                    topics={
                        (shop.topics[topic], channel): TopicChoice(State.GRANTED)
                        for topic, channel in allowed
                    }
                ),
            )
        db.session.commit()
        return sub


def send(
    app: Flask,
    shop: Shop,
    user_id: str,
    *,
    subject: str = "Hello",
    body: str = "Hi!",
    topic: str = "news",
    channel: str = "email",
    at: datetime = T0,
) -> Message:
    """A message through the API's operation, as POST /api/v1/messages stores it."""
    data: dict[str, Any] = {"sub": "s", "channel": channel, "topic": topic, "body": body}
    if channel == "email":
        data["subject"] = subject
    with app.app_context():
        vendor = db.session.get(Vendor, shop.vendor_id)
        accepted = accept_message(
            db.session,
            keys(),
            vendor,
            shop.client_id,
            user_id,
            data,
            f"k-{at.isoformat()}-{subject}",
            at,
        )
        db.session.commit()
        return accepted.message


def log_in(app: Flask, user: factories.CreatedUser) -> FlaskClient:
    client = app.test_client()
    factories.log_in(client, user.email, user.password)
    return client


def text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


@pytest.fixture
def shops(app: Flask) -> tuple[Shop, Shop]:
    acme = make_shop(app, "Acme Outdoor", {"news": "marketing", "orders": "service"})
    bolt = make_shop(app, "Bolt Bikes", {"news": "marketing"})
    return acme, bolt


# --- the customer ------------------------------------------------------------------------------


def test_customer_sees_each_business_messages_and_no_one_elses(
    app: Flask, shops: tuple[Shop, Shop]
) -> None:
    acme, bolt = shops
    ada = factories.customer(app)
    bob = factories.customer(app)
    connect(app, ada.id, acme, ("news", "email"))
    connect(app, ada.id, bolt, ("news", "email"))
    connect(app, bob.id, acme, ("news", "email"))
    first = send(app, acme, ada.id, subject="Spring sale", body="Tents at half price.\nToday.")
    send(app, bolt, ada.id, subject="New bikes in", at=T0 + timedelta(hours=1))
    send(app, acme, bob.id, subject="Bob's private offer", at=T0 + timedelta(hours=2))

    page = log_in(app, ada).get("/messages")
    assert page.status_code == 200
    body = text(page)
    # Per business, the business that wrote last first.
    assert body.index("Bolt Bikes") < body.index("Acme Outdoor")
    acme_section = body[body.index('id="business-' + acme.vendor_id) :]
    assert "Spring sale" in acme_section and "New bikes in" not in acme_section
    assert "New bikes in" in body
    assert "Bob's private offer" not in body
    # When (no zone in the profile: UTC, said so), channel, topic, status in words, body.
    assert "2026-11-30 09:00 UTC" in body
    assert "Times are in UTC" in body
    assert "e-mail" in body and "news" in body and "news of Acme Outdoor" in body
    assert "Waiting to be sent" in body
    assert re.search(
        r"<details class=\"message-body\">\s*<summary>Read the message</summary>\s*"
        r"<div class=\"body\">Tents at half price.\nToday.</div>",
        body,
    )
    # Each message links to its own unsubscribe page, naming exactly that consent.
    links = re.findall(r'href="(/unsubscribe/[^"]+)"', body)
    assert len(links) == 2
    with app.app_context():
        targets = {read_token(unquote(urlsplit(link).path.rsplit("/", 1)[1])) for link in links}
    assert UnsubscribeTarget(first.id, ada.id, acme.vendor_id, "email", "news") in targets


def test_another_customer_gets_404_for_a_business_page_by_id(
    app: Flask, shops: tuple[Shop, Shop]
) -> None:
    acme, bolt = shops
    ada = factories.customer(app)
    bob = factories.customer(app)
    connect(app, ada.id, acme, ("news", "email"))
    connect(app, ada.id, bolt, ("news", "email"))
    connect(app, bob.id, bolt, ("news", "email"))
    ada_message = send(app, acme, ada.id, subject="For Ada only")
    ada_bolt = send(app, bolt, ada.id, subject="Ada's bike")
    send(app, bolt, bob.id, subject="Bob's bike", at=T0 + timedelta(minutes=1))

    ada_client = log_in(app, ada)
    own = ada_client.get(f"/messages/from/{acme.vendor_id}")
    assert own.status_code == 200 and "For Ada only" in text(own)

    bob_client = log_in(app, bob)
    # A business that never wrote to Bob and that he is not connected to: not found.
    assert bob_client.get(f"/messages/from/{acme.vendor_id}").status_code == 404
    # Ada's message id as the cursor of Bob's page of a business both know: not found.
    assert (
        bob_client.get(f"/messages/from/{bolt.vendor_id}?before={ada_bolt.id}").status_code == 404
    )
    assert (
        bob_client.get(f"/messages/from/{acme.vendor_id}?before={ada_message.id}").status_code
        == 404
    )
    shown = text(bob_client.get(f"/messages/from/{bolt.vendor_id}"))
    assert "Bob's bike" in shown and "Ada's bike" not in shown
    assert "For Ada only" not in text(bob_client.get("/messages"))
    assert bob_client.get("/messages/from/no-such-vendor").status_code == 404


def test_connected_business_without_messages_and_empty_overview(
    app: Flask, shops: tuple[Shop, Shop]
) -> None:
    acme, _ = shops
    ada = factories.customer(app)
    connect(app, ada.id, acme)
    client = log_in(app, ada)
    overview = text(client.get("/messages"))
    assert "No business has sent you a message through CMR Vault yet." in overview
    page = client.get(f"/messages/from/{acme.vendor_id}")
    assert page.status_code == 200
    assert "Acme Outdoor has not sent you any messages through CMR Vault." in text(page)
    connections = text(client.get("/connections"))
    assert "none yet" in connections
    assert 'href="/messages">Messages</a>' in connections  # the navigation


def test_staff_vendor_members_and_strangers_do_not_reach_the_customer_pages(
    app: Flask, shops: tuple[Shop, Shop]
) -> None:
    acme, _ = shops
    member = factories.customer(app, role=Role.VENDOR_MEMBER)
    with app.app_context():
        db.session.add(VendorMember(user_id=member.id, vendor_id=acme.vendor_id))
        db.session.commit()
    assert log_in(app, member).get("/messages").status_code == 403
    assert log_in(app, member).get(f"/messages/from/{acme.vendor_id}").status_code == 403
    anonymous = app.test_client().get("/messages")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_times_in_the_profile_time_zone(app: Flask, shops: tuple[Shop, Shop]) -> None:
    acme, _ = shops
    ada = factories.customer(app, profile={"zoneinfo": "Asia/Tokyo"})
    connect(app, ada.id, acme, ("news", "email"))
    send(app, acme, ada.id)
    body = text(log_in(app, ada).get("/messages"))
    assert "Times are in your time zone, Asia/Tokyo." in body
    assert ">2026-11-30 18:00</time>" in body  # 09:00 UTC
    assert "09:00 UTC" not in body


def test_statuses_in_plain_words(app: Flask, shops: tuple[Shop, Shop]) -> None:
    acme, _ = shops
    ada = factories.customer(app)
    connect(app, ada.id, acme, ("news", "email"))
    sent = send(app, acme, ada.id, subject="Delivered one")
    failed = send(app, acme, ada.id, subject="Bounced one", at=T0 + timedelta(minutes=1))
    # One delivered, one bounced; then e-mail about news withdrawn: the next is a deny.
    with app.app_context():
        db.session.get(Message, sent.id).status = "sent"
        db.session.get(Message, sent.id).sent_at = T0 + timedelta(seconds=30)
        db.session.get(Message, failed.id).status = "failed"
        save_consents(
            db.session,
            keys(),
            ada.id,
            ConsentChanges(topics={(acme.topics["news"], "email"): TopicChoice(State.WITHDRAWN)}),
        )
        db.session.commit()
    denied = send(app, acme, ada.id, subject="Refused one", at=T0 + timedelta(minutes=2))
    assert denied.decision == "deny"
    body = text(log_in(app, ada).get(f"/messages/from/{acme.vendor_id}"))
    assert "Sent</span> <time" in body and "2026-11-30 09:00 UTC" in body
    assert "Could not be delivered" in body
    assert "Not sent" in body
    assert denied.reason in body  # the engine's words, addressed to the customer
    # Withdrawn: no unsubscribe link any more, the way back instead.
    assert "/unsubscribe/" not in body
    assert "You have unsubscribed from news by e-mail." in body


def test_a_message_held_for_quiet_hours_says_until_when(
    app: Flask, shops: tuple[Shop, Shop]
) -> None:
    acme, _ = shops
    ada = factories.customer(app, profile={"zoneinfo": "Europe/Berlin"})
    connect(app, ada.id, acme, ("news", "email"))
    with app.app_context():
        save_consents(
            db.session,
            keys(),
            ada.id,
            ConsentChanges(quiet_hours=(time(8, 0), time(20, 0), "Europe/Berlin")),
        )
        db.session.commit()
    held = send(app, acme, ada.id, subject="Quietly")  # 10:00 in Berlin
    assert held.status == "deferred"
    body = text(log_in(app, ada).get("/messages"))
    assert "Held for your quiet hours</span> until" in body
    assert ">2026-11-30 20:00</time>" in body  # the end of the quiet hours, Berlin time


def test_pages_of_a_business_newest_first(app: Flask, shops: tuple[Shop, Shop]) -> None:
    acme, _ = shops
    ada = factories.customer(app)
    connect(app, ada.id, acme, ("news", "email"))
    for n in range(23):
        send(app, acme, ada.id, subject=f"Letter {n:02d}", at=T0 + timedelta(minutes=n))
    client = log_in(app, ada)
    overview = text(client.get("/messages"))
    assert re.findall(r"Letter \d\d", overview) == ["Letter 22", "Letter 21", "Letter 20"]
    assert "23 messages, the newest 3 below." in overview

    first = text(client.get(f"/messages/from/{acme.vendor_id}"))
    shown = re.findall(r"Letter \d\d", first)
    assert shown == [f"Letter {n:02d}" for n in range(22, 2, -1)]
    older = re.search(r'href="([^"]+before=[^"]+)">Older messages', first)
    assert older is not None
    second = text(client.get(html.unescape(older.group(1))))
    assert re.findall(r"Letter \d\d", second) == ["Letter 02", "Letter 01", "Letter 00"]
    assert "Older messages" not in second and "Newest messages" in second


def test_unsubscribe_from_the_list_withdraws_that_consent_only(
    app: Flask, shops: tuple[Shop, Shop]
) -> None:
    acme, _ = shops
    ada = factories.customer_with_phone(app)  # texts go only to a confirmed number
    connect(app, ada.id, acme, ("news", "email"), ("news", "sms"))
    send(app, acme, ada.id, subject="Weekly news")
    client = log_in(app, ada)
    link = re.search(r'href="(/unsubscribe/[^"]+)"', text(client.get("/messages")))
    assert link is not None
    confirm = client.get(link.group(1))
    assert confirm.status_code == 200
    words = " ".join(re.sub(r"<[^>]+>", "", text(confirm)).split())
    assert "This stops Acme Outdoor from contacting you by e-mail about news." in words
    done = client.post(link.group(1), data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "You are unsubscribed" in text(done)

    after = text(client.get("/messages"))
    assert "You have unsubscribed from news by e-mail." in after
    assert "/unsubscribe/" not in after
    # The next e-mail about news is refused; a text message about news is still allowed.
    assert send(app, acme, ada.id, subject="Again", at=T0 + timedelta(hours=1)).decision == "deny"
    sms = send(app, acme, ada.id, channel="sms", body="News by SMS", at=T0 + timedelta(hours=2))
    assert sms.decision == "allow"


# --- the business portal -----------------------------------------------------------------------


def member_of(app: Flask, shop: Shop) -> FlaskClient:
    member = factories.customer(app, role=Role.VENDOR_MEMBER)
    with app.app_context():
        db.session.add(VendorMember(user_id=member.id, vendor_id=shop.vendor_id))
        db.session.commit()
    return log_in(app, member)


def test_portal_lists_only_the_vendors_messages_by_sub_never_the_address(
    app: Flask, shops: tuple[Shop, Shop]
) -> None:
    acme, bolt = shops
    ada = factories.customer(app, profile={"given_name": "Ada"})
    ada_sub = connect(app, ada.id, acme, ("news", "email"))
    bolt_sub = connect(app, ada.id, bolt, ("news", "email"))
    mine = send(app, acme, ada.id, subject="Acme secret subject")
    theirs = send(app, bolt, ada.id, subject="Bolt subject")

    client = member_of(app, acme)
    assert 'href="/business/messages"' in text(client.get("/business"))
    page = client.get("/business/messages")
    assert page.status_code == 200
    body = text(page)
    assert mine.id in body and ada_sub in body
    assert theirs.id not in body and bolt_sub not in body
    for private in (ada.email, "Ada", "Acme secret subject", "Hi!"):
        assert private not in body
    row = body[body.index(f'id="message-{mine.id}"') :]
    row = row[: row.index("</tr>")]
    assert ">queued<" in row and ">news<" in row and ">e-mail<" in row
    assert ">0<" in row and "2026-11-30 09:00:00" in row

    # The other business's member sees its own only; customers see no portal.
    other = text(member_of(app, bolt).get("/business/messages"))
    assert theirs.id in other and mine.id not in other
    assert log_in(app, ada).get("/business/messages").status_code == 403
    # A cursor naming another vendor's message is not found.
    assert client.get(f"/business/messages?before={theirs.id}").status_code == 404


def test_portal_pages_newest_first(app: Flask, shops: tuple[Shop, Shop]) -> None:
    acme, _ = shops
    ada = factories.customer(app)
    connect(app, ada.id, acme, ("news", "email"))
    ids = [
        send(app, acme, ada.id, subject=f"n{n}", at=T0 + timedelta(seconds=n)).id for n in range(27)
    ]
    client = member_of(app, acme)
    first = text(client.get("/business/messages"))
    shown = re.findall(r'id="message-(msg_[^"]+)"', first)
    assert shown == ids[::-1][:25]
    older = re.search(r'href="([^"]+before=[^"]+)">Older messages', first)
    assert older is not None
    second = text(client.get(html.unescape(older.group(1))))
    assert re.findall(r'id="message-(msg_[^"]+)"', second) == ids[1::-1]


def _test_message(client: FlaskClient, **fields: Any) -> Any:
    return factories.post_form(
        client,
        "/business/messages/test",
        {
            "channel": "email",
            "topic": "news",
            "subject": "Test",
            "body": "Hello from the portal",
            **fields,
        },
        form_page="/business/messages",
    )


def test_portal_test_message_allowed_is_queued_through_the_api_operation(
    app: Flask, shops: tuple[Shop, Shop]
) -> None:
    acme, _ = shops
    ada = factories.customer(app)
    sub = connect(app, ada.id, acme, ("news", "email"))
    client = member_of(app, acme)
    response = _test_message(client, sub=sub)
    assert response.status_code == 302
    with app.app_context():
        message = db.session.scalars(select(Message)).one()
        assert (message.user_id, message.status, message.decision) == (ada.id, "queued", "allow")
        assert message.client_id.startswith("portal:")
        log = db.session.scalars(select(ContactLog.event)).all()
    assert log == ["accepted"]
    shown = text(client.get("/business/messages"))
    assert f"Message {message.id} queued" in shown
    assert f'id="message-{message.id}"' in shown
    # The customer sees it, content and all.
    mine = text(log_in(app, ada).get("/messages"))
    assert "Test" in mine and "Hello from the portal" in mine


def test_portal_test_message_denied_shows_rule_and_reason(
    app: Flask, shops: tuple[Shop, Shop]
) -> None:
    acme, _ = shops
    ada = factories.customer(app)
    sub = connect(app, ada.id, acme)  # connected, never allowed news
    client = member_of(app, acme)
    response = _test_message(client, sub=sub)
    assert response.status_code == 302
    with app.app_context():
        message = db.session.scalars(select(Message)).one()
        assert (message.status, message.decision) == ("blocked", "deny")
        assert db.session.scalars(select(ContactLog.event)).all() == ["denied"]
    page = text(client.get(response.headers["Location"]))
    assert f"Not allowed ({message.rule}): {message.reason}" in page
    assert 'role="alert"' in page


def test_portal_test_message_deferred_says_until_when(app: Flask, shops: tuple[Shop, Shop]) -> None:
    acme, _ = shops
    ada = factories.customer(app)
    sub = connect(app, ada.id, acme, ("news", "email"))
    with app.app_context():
        save_consents(
            db.session,
            keys(),
            ada.id,
            ConsentChanges(quiet_hours=(time(0, 0), time(23, 59), "UTC")),
        )
        db.session.commit()
    client = member_of(app, acme)
    response = _test_message(client, sub=sub)
    assert response.status_code == 302
    with app.app_context():
        message = db.session.scalars(select(Message)).one()
    assert message.status == "deferred"
    page = text(client.get("/business/messages"))
    assert f"Message {message.id} deferred until " in page and "23:59 UTC (quiet_hours)" in page


def test_portal_test_message_form_errors(app: Flask, shops: tuple[Shop, Shop]) -> None:
    acme, bolt = shops
    ada = factories.customer(app)
    sub = connect(app, ada.id, acme, ("news", "email"))
    bolt_sub = connect(app, ada.id, bolt, ("news", "email"))
    client = member_of(app, acme)
    no_subject = _test_message(client, sub=sub, subject="")
    assert no_subject.status_code == 400
    assert "an e-mail needs a subject" in text(no_subject)
    # Another business's sub for the same person is not one of Acme's customers.
    stranger = _test_message(client, sub=bolt_sub)
    assert stranger.status_code == 400
    assert "This sub is not one of your customers." in text(stranger)
    unknown_topic = _test_message(client, sub=sub, topic="not-declared")
    assert unknown_topic.status_code == 400
    with app.app_context():
        assert db.session.scalars(select(Message)).all() == []


def test_portal_test_message_needs_the_csrf_token(app: Flask, shops: tuple[Shop, Shop]) -> None:
    acme, _ = shops
    ada = factories.customer(app)
    sub = connect(app, ada.id, acme, ("news", "email"))
    client = member_of(app, acme)
    response = client.post(
        "/business/messages/test",
        data={"sub": sub, "channel": "email", "topic": "news", "subject": "x", "body": "y"},
    )
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalars(select(Message)).all() == []


def test_portal_test_message_sent_twice_is_one_message(
    app: Flask, shops: tuple[Shop, Shop]
) -> None:
    acme, _ = shops
    ada = factories.customer(app)
    sub = connect(app, ada.id, acme, ("news", "email"))
    client = member_of(app, acme)
    token = factories.csrf_token(client, "/business/messages")
    form = text(client.get("/business/messages"))
    key = re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', form)
    assert key is not None
    data = {
        "csrf_token": token,
        "idempotency_key": key.group(1),
        "sub": sub,
        "channel": "email",
        "topic": "news",
        "subject": "Once",
        "body": "Only once",
    }
    assert client.post("/business/messages/test", data=data).status_code == 302
    assert client.post("/business/messages/test", data=data).status_code == 302
    with app.app_context():
        assert len(db.session.scalars(select(Message)).all()) == 1
