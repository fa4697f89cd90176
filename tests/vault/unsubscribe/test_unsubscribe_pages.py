"""The unsubscribe link's page and its POST, through the app on SQLite and PostgreSQL: what
the page says (and does not say), exactly one withdrawal with its ledger event and receipt,
replays, refused links, accounts and businesses that are gone, and the rate limits."""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeSerializer
from sqlalchemy import delete, func, select

from consent.engine import State
from tests import factories
from vault.accounts.models import User
from vault.accounts.operations import close_account
from vault.consents.models import ConsentReceipt, LedgerEvent, TopicConsent
from vault.consents.operations import (
    ConsentChanges,
    TopicChoice,
    decode_receipt,
    save_consents,
    subject_of,
)
from vault.consents.receipts import signed_ledger_events
from vault.extensions import db
from vault.services import keys
from vault.unsubscribe.tokens import SALT, UnsubscribeTarget, make_token
from vault.vendors.models import ContactTopic, Vendor
from vault.vendors.operations import create_vendor, declare_topic

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
PROFILE = {"given_name": "Ada", "family_name": "Lovelace", "phone_number": "+441632960961"}


@dataclass(frozen=True)
class World:
    customer: factories.CreatedUser
    vendor_id: str
    news_id: str
    deals_id: str
    token: str  # the link of a message about "news" by e-mail

    @property
    def path(self) -> str:
        return f"/unsubscribe/{self.token}"


def link(app: Flask, **fields: Any) -> str:
    with app.app_context():
        return make_token(UnsubscribeTarget(**fields))


@pytest.fixture
def world(app: Flask) -> World:
    customer = factories.customer(app, profile=PROFILE)
    with app.app_context():
        acme = create_vendor(db.session, "Acme Outdoor")
        news = declare_topic(db.session, acme, "news", "marketing", "Trail reports, monthly.")
        deals = declare_topic(db.session, acme, "deals", "marketing")
        save_consents(
            db.session,
            keys(),
            customer.id,
            ConsentChanges(
                topics={
                    (news.id, "email"): TopicChoice(State.GRANTED),
                    (news.id, "sms"): TopicChoice(State.GRANTED),
                    (deals.id, "email"): TopicChoice(State.GRANTED),
                }
            ),
        )
        db.session.commit()
        token = make_token(UnsubscribeTarget("msg-1", customer.id, acme.id, "email", "news"))
        return World(customer, acme.id, news.id, deals.id, token)


def events(app: Flask) -> list[LedgerEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(LedgerEvent).order_by(LedgerEvent.seq)))
        db.session.expunge_all()
        return rows


def states(app: Flask, user_id: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(topic id, channel) -> (state, source) of the customer's topic consents."""
    with app.app_context():
        return {
            (row.topic_id, row.channel): (row.state, row.source)
            for row in db.session.scalars(
                select(TopicConsent).where(TopicConsent.user_id == user_id)
            )
        }


def receipt_count(app: Flask, user_id: str) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count())
            .select_from(ConsentReceipt)
            .where(ConsentReceipt.user_id == user_id)
        )


def text_of(response: Any) -> str:
    """The page's words, tags and entities gone, whitespace folded."""
    words = html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))
    return re.sub(r" ([.,?!])", r"\1", " ".join(words.split()))


def test_the_page_names_the_business_channel_and_topic_and_nothing_of_the_customer(
    app: Flask, client: FlaskClient, world: World
) -> None:
    before = events(app)
    response = client.get(world.path)
    assert response.status_code == 200
    words = text_of(response)
    assert "Unsubscribe from Acme Outdoor?" in words
    assert "This stops Acme Outdoor from contacting you by e-mail about news." in words
    assert "Trail reports, monthly." in words
    page = response.get_data(as_text=True)
    for private in (world.customer.email, *PROFILE.values(), world.customer.id):
        assert private not in page
    # One button, posting the RFC 8058 body back to the same link, no CSRF token needed.
    assert re.search(r'<input[^>]*name="List-Unsubscribe"[^>]*value="One-Click"', page)
    assert f'action="{world.path}"' in page
    assert page.count("<button") == 1
    # The URL is a bearer token.
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "noindex" in response.headers["X-Robots-Tag"]
    assert '<meta name="robots" content="noindex, nofollow">' in page
    assert '<meta name="referrer" content="no-referrer">' in page
    # Looking changes nothing (mail scanners follow links).
    assert [e.seq for e in events(app)] == [e.seq for e in before]
    assert states(app, world.customer.id)[(world.news_id, "email")][0] == "granted"


def test_the_pages_button_unsubscribes_with_a_ledger_event_and_a_receipt(
    app: Flask, client: FlaskClient, world: World
) -> None:
    page = client.get(world.path).get_data(as_text=True)
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page).group(1))
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
    assert "csrf_token" not in fields
    receipts_before = receipt_count(app, world.customer.id)
    seqs_before = {event.seq for event in events(app)}

    response = client.post(action, data=fields)

    assert response.status_code == 200
    words = text_of(response)
    assert "You are unsubscribed" in words
    assert "Acme Outdoor may no longer contact you by e-mail about news." in words
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    for private in (world.customer.email, *PROFILE.values()):
        assert private not in response.get_data(as_text=True)

    # Exactly that consent, withdrawn, and nothing else touched.
    after = states(app, world.customer.id)
    assert after[(world.news_id, "email")] == ("withdrawn", "unsubscribe")
    assert after[(world.news_id, "sms")] == ("granted", "ui")
    assert after[(world.deals_id, "email")] == ("granted", "ui")

    new = [event for event in events(app) if event.seq not in seqs_before]
    assert len(new) == 1
    event = new[0]
    assert (event.event_type, event.source, event.actor) == (
        "topic_withdrawn",
        "unsubscribe",
        "customer",
    )
    assert (event.vendor_id, event.channel, event.topic) == (world.vendor_id, "email", "news")
    assert json.loads(event.new_state)["state"] == "withdrawn"
    body = json.loads(event.body)
    assert body["source"] == "unsubscribe"
    assert event.hash == hashlib.sha256(event.body.encode()).hexdigest()
    with app.app_context():
        assert event.subject == subject_of(keys(), world.customer.id)

    # The customer's receipt, signed, naming that event.
    assert receipt_count(app, world.customer.id) == receipts_before + 1
    with app.app_context():
        receipt = db.session.scalars(
            select(ConsentReceipt)
            .where(ConsentReceipt.user_id == world.customer.id)
            .order_by(ConsentReceipt.ledger_seq.desc())
        ).first()
        assert receipt.ledger_seq == event.seq and receipt.vendor_id == world.vendor_id
        named = signed_ledger_events(db.session, receipt.jws)
    assert [(e.seq, e.hash, e.event_type) for e in named] == [
        (event.seq, event.hash, "topic_withdrawn")
    ]
    _, payload = decode_receipt(receipt.jws)
    assert payload["collectionMethod"] == "vault unsubscribe"
    assert payload["piiControllers"][0]["piiController"] == "Acme Outdoor"


def test_replaying_the_link_changes_nothing_more(
    app: Flask, client: FlaskClient, world: World
) -> None:
    first = client.post(world.path, data=ONE_CLICK)
    assert first.status_code == 200
    seqs = [event.seq for event in events(app)]
    receipts = receipt_count(app, world.customer.id)
    for _ in range(3):
        again = client.post(world.path, data=ONE_CLICK)
        assert again.status_code == 200
        assert text_of(again) == text_of(first)
    assert [event.seq for event in events(app)] == seqs
    assert receipt_count(app, world.customer.id) == receipts
    # And the page says so, without a button.
    shown = client.get(world.path)
    assert "You are unsubscribed" in text_of(shown)
    assert "<button" not in shown.get_data(as_text=True)


def test_a_customer_who_allowed_it_again_is_unsubscribed_again_by_the_old_link(
    app: Flask, client: FlaskClient, world: World
) -> None:
    assert client.post(world.path, data=ONE_CLICK).status_code == 200
    with app.app_context():
        save_consents(
            db.session,
            keys(),
            world.customer.id,
            ConsentChanges(topics={(world.news_id, "email"): TopicChoice(State.GRANTED)}),
        )
        db.session.commit()
    count = len(events(app))
    assert client.post(world.path, data=ONE_CLICK).status_code == 200
    assert len(events(app)) == count + 1
    assert states(app, world.customer.id)[(world.news_id, "email")] == (
        "withdrawn",
        "unsubscribe",
    )


def test_a_topic_allowed_by_default_is_withdrawn_explicitly(
    app: Flask, client: FlaskClient, world: World
) -> None:
    """A service message needs no explicit consent; its link still stops it, as an explicit
    withdrawal (which the engine puts before the service default)."""
    with app.app_context():
        orders = declare_topic(
            db.session, db.session.get(Vendor, world.vendor_id), "orders", "service"
        )
        db.session.commit()
        orders_id = orders.id
    token = link(
        app,
        message_id="msg-2",
        user_id=world.customer.id,
        vendor_id=world.vendor_id,
        channel="email",
        topic="orders",
    )
    assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 200
    assert states(app, world.customer.id)[(orders_id, "email")] == ("withdrawn", "unsubscribe")


def _foreign_token(world: World) -> str:
    """Well-formed, naming the same consent, signed with another vault's secret."""
    serializer = URLSafeSerializer(
        "another-vault-" + "y" * 40, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
    )
    return serializer.dumps(["msg-1", world.customer.id, world.vendor_id, "email", "news"])


def _altered(token: str) -> str:
    """One character of the signed payload changed."""
    index = token.index(".", 1) - 3
    swapped = "A" if token[index] != "A" else "B"
    return token[:index] + swapped + token[index + 1 :]


@pytest.mark.parametrize("how", ["altered", "truncated", "foreign secret", "made up"])
def test_a_refused_link_changes_nothing(
    app: Flask, client: FlaskClient, world: World, how: str
) -> None:
    token = {
        "altered": lambda: _altered(world.token),
        "truncated": lambda: world.token[: len(world.token) * 2 // 3],
        "foreign secret": lambda: _foreign_token(world),
        "made up": lambda: "not-a-token",
    }[how]()
    assert token != world.token
    before = ([event.seq for event in events(app)], states(app, world.customer.id))
    receipts = receipt_count(app, world.customer.id)

    shown = client.get(f"/unsubscribe/{token}")
    posted = client.post(f"/unsubscribe/{token}", data=ONE_CLICK)

    for response in (shown, posted):
        assert response.status_code == 400
        assert "This unsubscribe link is not valid" in text_of(response)
        assert "Nothing was changed." in text_of(response)
        assert "Acme" not in response.get_data(as_text=True)
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert ([event.seq for event in events(app)], states(app, world.customer.id)) == before
    assert receipt_count(app, world.customer.id) == receipts


def test_a_signed_token_of_the_wrong_shape_is_refused(
    app: Flask, client: FlaskClient, world: World
) -> None:
    """Integer ids (not the vault's), or an unknown channel, even under a good signature."""
    with app.app_context():
        from vault.unsubscribe.tokens import _serializer

        bad = [
            _serializer().dumps(["m", 1, 2, "email", "news"]),
            _serializer().dumps(["m", world.customer.id, world.vendor_id, "fax", "news"]),
        ]
    for token in bad:
        assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 400
    assert states(app, world.customer.id)[(world.news_id, "email")] == ("granted", "ui")


@pytest.mark.parametrize(
    "body",
    [
        {"data": {}},
        {"data": {"List-Unsubscribe": "Yes"}},
        {"json": {"List-Unsubscribe": "One-Click"}},
    ],
    ids=["empty", "wrong value", "json"],
)
def test_a_post_without_the_one_click_body_changes_nothing(
    app: Flask, client: FlaskClient, world: World, body: dict[str, Any]
) -> None:
    response = client.post(world.path, **body)
    assert response.status_code == 400
    assert "List-Unsubscribe=One-Click" in text_of(response)
    assert "<button" in response.get_data(as_text=True)  # the page, to try again
    assert states(app, world.customer.id)[(world.news_id, "email")] == ("granted", "ui")


def test_a_closed_account_gets_a_friendly_answer_and_nothing_changes(
    app: Flask, client: FlaskClient, world: World
) -> None:
    with app.app_context():
        close_account(db.session, db.session.get(User, world.customer.id))
        db.session.commit()
    seqs = [event.seq for event in events(app)]
    for response in (client.get(world.path), client.post(world.path, data=ONE_CLICK)):
        assert response.status_code == 200
        assert "The vault account this message was sent to is closed" in text_of(response)
        assert "<button" not in response.get_data(as_text=True)
    assert [event.seq for event in events(app)] == seqs
    assert states(app, world.customer.id)[(world.news_id, "email")] == ("granted", "ui")


def test_a_deleted_business_gets_a_friendly_answer_and_nothing_changes(
    app: Flask, client: FlaskClient, world: World
) -> None:
    with app.app_context():
        db.session.execute(delete(Vendor).where(Vendor.id == world.vendor_id))
        db.session.commit()
    seqs = [event.seq for event in events(app)]
    for response in (client.get(world.path), client.post(world.path, data=ONE_CLICK)):
        assert response.status_code == 200
        assert "no longer in CMR Vault" in text_of(response)
    assert [event.seq for event in events(app)] == seqs


def test_a_topic_the_business_dropped_gets_a_friendly_answer(
    app: Flask, client: FlaskClient, world: World
) -> None:
    with app.app_context():
        db.session.execute(delete(ContactTopic).where(ContactTopic.id == world.news_id))
        db.session.commit()
    seqs = [event.seq for event in events(app)]
    response = client.post(world.path, data=ONE_CLICK)
    assert response.status_code == 200
    assert "Acme Outdoor no longer sends messages about this topic" in text_of(response)
    assert [event.seq for event in events(app)] == seqs


class TestRateLimits:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {
            **app_config,
            "VAULT_UNSUBSCRIBE_RATE_LIMIT": "3 per minute",
            "VAULT_UNSUBSCRIBE_REFUSED_RATE_LIMIT": "2 per minute",
        }

    def test_one_link_is_limited(self, app: Flask, client: FlaskClient, world: World) -> None:
        answers = [client.post(world.path, data=ONE_CLICK).status_code for _ in range(4)]
        assert answers == [200, 200, 200, 429]

    def test_refused_links_are_limited_per_address_but_good_links_are_not(
        self, app: Flask, client: FlaskClient, world: World
    ) -> None:
        """A mailbox provider posts many customers' one-click unsubscribes from one address:
        good links never count against it."""
        good = [
            link(
                app,
                message_id=f"msg-{n}",
                user_id=factories.customer(app).id,
                vendor_id=world.vendor_id,
                channel="email",
                topic="news",
            )
            for n in range(4)
        ]
        assert [
            client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code for token in good
        ] == [200] * 4
        refused = [client.post("/unsubscribe/forged", data=ONE_CLICK).status_code for _ in range(3)]
        assert refused == [400, 400, 429]
        # That address is now refused for a while, good links too.
        assert client.post(world.path, data=ONE_CLICK).status_code == 429
        assert states(app, world.customer.id)[(world.news_id, "email")] == ("granted", "ui")


def test_an_unsubscribe_is_audited_once_by_ids_without_the_link(
    app: Flask, client: FlaskClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(2):
        assert client.post(world.path, data=ONE_CLICK).status_code == 200
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "unsubscribed"]
    assert record.name == "vault.audit"
    assert (record.user_id, record.vendor_id, record.channel, record.message_id) == (
        world.customer.id,
        world.vendor_id,
        "email",
        "msg-1",
    )
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert world.token not in logged
    assert world.customer.email not in logged
