"""RFC 8058 one-click unsubscribe over real HTTP, on SQLite and on PostgreSQL: a mail
client's POST (``requests``, no cookies, no CSRF token) withdraws the consent, after which
the vendor's own consent API check (client credentials through Authlib's client) answers
deny for that channel and topic while everything else stays allowed; the same link posted
at once from several places still makes one change."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy import func, select

from consent.engine import State
from tests.vault.oauth.conftest import Client, Vault
from vault.consents.models import ConsentReceipt, LedgerEvent
from vault.consents.operations import ConsentChanges, TopicChoice, save_consents
from vault.extensions import db
from vault.oauth.models import Grant
from vault.oauth.operations import remember_subject
from vault.services import keys
from vault.unsubscribe.tokens import UnsubscribeTarget, make_token
from vault.vendors.models import Vendor
from vault.vendors.operations import declare_topic

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@dataclass(frozen=True)
class Shop:
    client: Client
    sub: str
    user_id: str
    topics: dict[str, str]  # name -> id


@pytest.fixture
def shop(vault: Vault) -> Shop:
    """Acme, with a customer who allowed news and deals by e-mail and news by SMS."""
    client = vault.vendor("Acme", scopes=("openid", "consent:check"))
    customer = vault.customer(given_name="Ada")
    with vault.app.app_context():
        vendor = db.session.get(Vendor, client.vendor_id)
        topics = {
            name: declare_topic(db.session, vendor, name, "marketing").id
            for name in ("news", "deals")
        }
        db.session.add(
            Grant(
                user_id=customer.id,
                client_id=client.client_id,
                vendor_id=client.vendor_id,
                scope="openid",
            )
        )
        sub = remember_subject(db.session, keys(), client.vendor_id, customer.id)
        save_consents(
            db.session,
            keys(),
            customer.id,
            ConsentChanges(
                topics={
                    (topics["news"], "email"): TopicChoice(State.GRANTED),
                    (topics["news"], "sms"): TopicChoice(State.GRANTED),
                    (topics["deals"], "email"): TopicChoice(State.GRANTED),
                }
            ),
        )
        db.session.commit()
    return Shop(client, sub, customer.id, topics)


def unsubscribe_url(vault: Vault, shop: Shop, topic: str = "news", message: str = "m-1") -> str:
    with vault.app.app_context():
        token = make_token(
            UnsubscribeTarget(message, shop.user_id, shop.client.vendor_id, "email", topic)
        )
    return f"{vault.base}/unsubscribe/{token}"


def check(vault: Vault, shop: Shop) -> dict[tuple[str, str], tuple[str, str]]:
    """The vendor asks the vault: (channel, topic) -> (outcome, rule)."""
    session = OAuth2Session(
        shop.client.client_id,
        shop.client.client_secret,
        scope="consent:check",
        token_endpoint_auth_method="client_secret_basic",
    )
    session.fetch_token(vault.meta["token_endpoint"], grant_type="client_credentials")
    items = [
        {"sub": shop.sub, "channel": channel, "topic": topic}
        for channel, topic in (("email", "news"), ("sms", "news"), ("email", "deals"))
    ]
    response = session.post(
        vault.base + "/api/v1/consents/check", json={"items": items}, timeout=30
    )
    assert response.status_code == 200, response.text
    return {
        (r["channel"], r["topic"]): (r["outcome"], r["rule"]) for r in response.json()["results"]
    }


def unsubscribe_events(vault: Vault) -> list[tuple[str, str | None, str | None]]:
    with vault.app.app_context():
        return [
            (row.event_type, row.channel, row.topic)
            for row in db.session.scalars(
                select(LedgerEvent).where(LedgerEvent.source == "unsubscribe")
            )
        ]


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_a_mail_clients_one_click_post_withdraws_exactly_that_consent(
    vault: Vault, shop: Shop, encoding: str
) -> None:
    before = check(vault, shop)
    assert before == {
        ("email", "news"): ("allow", "granted"),
        ("sms", "news"): ("allow", "granted"),
        ("email", "deals"): ("allow", "granted"),
    }
    url = unsubscribe_url(vault, shop)
    body: dict[str, Any] = (
        {"data": ONE_CLICK}
        if encoding == "urlencoded"
        else {"files": {"List-Unsubscribe": (None, "One-Click")}}
    )

    # As RFC 8058 says a mail client does: a POST of its own, with no cookies and no page.
    response = requests.post(url, allow_redirects=False, timeout=10, **body)

    assert response.request.headers["Content-Type"].startswith(
        "application/x-www-form-urlencoded" if encoding == "urlencoded" else "multipart/form-data"
    )
    assert "Cookie" not in response.request.headers
    assert response.status_code == 200, response.text
    assert "You are unsubscribed" in response.text
    assert "Set-Cookie" not in response.headers
    assert unsubscribe_events(vault) == [("topic_withdrawn", "email", "news")]
    with vault.app.app_context():
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(ConsentReceipt)
                .where(
                    ConsentReceipt.user_id == shop.user_id,
                    ConsentReceipt.ledger_seq
                    == select(func.max(LedgerEvent.seq)).scalar_subquery(),
                )
            )
            == 1
        )

    # What the next send would be told: no for that channel and topic, the rest unchanged.
    after = check(vault, shop)
    assert after[("email", "news")] == ("deny", "withdrawn")
    assert after[("sms", "news")] == ("allow", "granted")
    assert after[("email", "deals")] == ("allow", "granted")

    # The client retries (or the person clicks too): same answer, nothing more.
    again = requests.post(url, data=ONE_CLICK, timeout=10)
    assert again.status_code == 200 and "You are unsubscribed" in again.text
    assert unsubscribe_events(vault) == [("topic_withdrawn", "email", "news")]


def test_an_altered_link_withdraws_nothing_over_http(vault: Vault, shop: Shop) -> None:
    url = unsubscribe_url(vault, shop)
    altered = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
    response = requests.post(altered, data=ONE_CLICK, timeout=10)
    assert response.status_code == 400
    assert unsubscribe_events(vault) == []
    assert check(vault, shop)[("email", "news")] == ("allow", "granted")


def test_the_same_link_posted_at_once_changes_the_consent_once(vault: Vault, shop: Shop) -> None:
    """A mail client's one-click POST and the person's own click can arrive together: they
    queue on the ledger's lock and the second finds nothing left to withdraw."""
    urls = [unsubscribe_url(vault, shop, topic) for topic in ("news", "deals")]
    answers: list[int] = []
    start = threading.Barrier(6)

    def post(url: str) -> None:
        start.wait(timeout=10)
        answers.append(requests.post(url, data=ONE_CLICK, timeout=30).status_code)

    threads = [threading.Thread(target=post, args=(url,)) for url in urls for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert answers == [200] * 6
    assert sorted(unsubscribe_events(vault)) == [
        ("topic_withdrawn", "email", "deals"),
        ("topic_withdrawn", "email", "news"),
    ]
