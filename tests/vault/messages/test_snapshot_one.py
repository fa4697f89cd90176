"""``load_customer`` (one customer towards one business, the messages API's decision) says
exactly what ``load_consents`` says for that customer, whatever the settings."""

from __future__ import annotations

from datetime import time, timedelta

from consent.engine import State
from tests.vault.consents.test_vendor_api import _save
from tests.vault.messages.helpers import World, connect, email, send, token
from tests.vault.oauth.conftest import Vault
from vault.consents.operations import ConsentChanges, TopicChoice, VendorSettings
from vault.consents.snapshot import load_consents, load_customer
from vault.extensions import db
from vault.models import utcnow


def _same(vault: Vault, user_id: str, vendor_id: str) -> None:
    with vault.app.app_context():
        now = utcnow()
        one = load_customer(db.session, user_id, vendor_id, now)
        many = load_consents(db.session, [user_id], now, vendor_id=vendor_id).get(user_id)
        assert one == many


def test_one_customer_loads_as_in_a_batch(vault: Vault, world: World) -> None:
    shop, user = world.shop, world.user
    vendor_id = shop.client.vendor_id
    _same(vault, user.id, vendor_id)
    _same(vault, "no-such-customer", vendor_id)
    _save(
        vault,
        user.id,
        ConsentChanges(
            channels={"post": False, "push": False},
            quiet_hours=(time(22, 0), time(7, 0), "Europe/Berlin"),
            vendors={vendor_id: VendorSettings(cap_per_day=5, cap_per_week=9)},
            topics={
                (shop.topics["orders"], "sms"): TopicChoice(State.WITHDRAWN),
                (shop.topics["orders"], "email"): TopicChoice(
                    State.GRANTED, expires_at=utcnow() + timedelta(days=3)
                ),
            },
        ),
    )
    # Another business's settings are not this one's.
    connect(vault, user.id, world.other)
    _save(
        vault, user.id, ConsentChanges(vendors={world.other.client.vendor_id: VendorSettings(True)})
    )
    # Two delivered messages count; a queued one does not.
    session = token(vault, shop)
    ids = [send(vault, session, email(world.sub)).json()["id"] for _ in range(3)]
    vault.sql(
        "UPDATE messages SET status = 'sent', sent_at = :at WHERE id IN (:a, :b)",
        at=utcnow() - timedelta(hours=1),
        a=ids[0],
        b=ids[1],
    )
    _same(vault, user.id, vendor_id)
    _same(vault, user.id, world.other.client.vendor_id)
    _save(vault, user.id, ConsentChanges(vendors={vendor_id: VendorSettings(True)}))
    _same(vault, user.id, vendor_id)
