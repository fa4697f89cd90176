"""Helpers for the messages tests: the live vault of the OAuth tests (a real HTTP server,
Authlib's OAuth2Session as the vendor's client, on SQLite and on PostgreSQL), shops that
may send, customers who consented, and workers delivering to real local servers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from consent.engine import State
from tests.factories import confirm_phone
from tests.vault.consents.test_vendor_api import _connect, _save
from tests.vault.oauth.conftest import Client, Vault
from vault.consents.operations import ConsentChanges, TopicChoice
from vault.extensions import db
from vault.vendors.models import Vendor as VendorRow
from vault.vendors.operations import declare_topic

MESSAGE_SCOPES = ("openid", "messages:send", "messages:permit")


@dataclass
class Shop:
    client: Client
    topics: dict[str, str]  # name -> id
    name: str


def make_shop(vault: Vault, name: str, topics: dict[str, str]) -> Shop:
    client = vault.vendor(name, scopes=MESSAGE_SCOPES)
    ids = {}
    with vault.app.app_context():
        vendor = db.session.get(VendorRow, client.vendor_id)
        for topic, purpose in topics.items():
            ids[topic] = declare_topic(db.session, vendor, topic, purpose).id
        db.session.commit()
    return Shop(client, ids, name)


def connect(vault: Vault, user_id: str, shop: Shop) -> str:
    """A live grant of the customer to the shop; the customer's sub for it."""
    return _connect(vault, user_id, shop)  # type: ignore[arg-type]


def grant(vault: Vault, user_id: str, shop: Shop, topic: str, *channels: str) -> None:
    _save(
        vault,
        user_id,
        ConsentChanges(
            topics={
                (shop.topics[topic], channel): TopicChoice(State.GRANTED) for channel in channels
            }
        ),
    )


def withdraw(vault: Vault, user_id: str, shop: Shop, topic: str, channel: str) -> None:
    _save(
        vault,
        user_id,
        ConsentChanges(topics={(shop.topics[topic], channel): TopicChoice(State.WITHDRAWN)}),
    )


def token(vault: Vault, shop: Shop, scope: str = "messages:send") -> OAuth2Session:
    session = OAuth2Session(
        shop.client.client_id,
        shop.client.client_secret,
        scope=scope,
        token_endpoint_auth_method="client_secret_basic",
    )
    session.fetch_token(vault.meta["token_endpoint"], grant_type="client_credentials")
    return session


def send(
    vault: Vault, session: OAuth2Session | str, body: Any, key: str | None = None
) -> requests.Response:
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    if isinstance(session, str):  # a bare access token, for threads
        headers["Authorization"] = f"Bearer {session}"
        return requests.post(
            vault.base + "/api/v1/messages", json=body, headers=headers, timeout=30
        )
    return session.post(vault.base + "/api/v1/messages", json=body, headers=headers, timeout=30)


def email(sub: str, topic: str = "news", **extra: Any) -> dict[str, Any]:
    return {
        "sub": sub,
        "channel": "email",
        "topic": topic,
        "subject": "Hello",
        "body": "Hi!",
        **extra,
    }


@dataclass
class World:
    shop: Shop
    other: Shop
    user: Any
    sub: str


@pytest.fixture
def world(vault: Vault) -> World:
    """A shop with a customer who allowed e-mail and SMS about news; another shop."""
    shop = make_shop(vault, "Acme Shop", {"news": "marketing", "orders": "service"})
    other = make_shop(vault, "Bolt", {"news": "marketing"})
    user = vault.customer(phone_number="+15005550006")
    confirm_phone(vault.app, user.id)  # texts go only to a confirmed number
    sub = connect(vault, user.id, shop)
    grant(vault, user.id, shop, "news", "email", "sms")
    return World(shop, other, user, sub)
