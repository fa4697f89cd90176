"""The overview page sums up connections, reads, consents and open requests."""

from __future__ import annotations

import re

from consent.engine import State
from vault.consents.models import ConsentRequest
from vault.consents.operations import ConsentChanges, TopicChoice, save_consents
from vault.extensions import db
from vault.oauth.models import AccessEvent, Grant
from vault.services import keys
from vault.vendors.operations import create_client, create_vendor, declare_topic


def _numbers(page: str) -> list[int]:
    return [int(n) for n in re.findall(r"<strong>(\d+)</strong>", page)]


def test_overview_counts_what_the_customer_has_given(app, logged_in, customer):
    assert _numbers(logged_in.get("/").get_data(as_text=True))[:3] == [0, 0, 0]
    with app.app_context():
        vendor = create_vendor(db.session, "Acme")
        client = create_client(db.session, vendor, redirect_uris=["https://a.example/cb"]).client
        topic = declare_topic(db.session, vendor, "news", "marketing")
        grant = Grant(
            user_id=customer.id, client_id=client.client_id, vendor_id=vendor.id, scope="openid"
        )
        db.session.add(grant)
        db.session.flush()
        for _ in range(2):
            db.session.add(
                AccessEvent(
                    user_id=customer.id,
                    grant_id=grant.id,
                    vendor_id=vendor.id,
                    client_id=client.client_id,
                    claims=[],
                    endpoint="GET /api/v1/profile",
                )
            )
        db.session.add(
            ConsentRequest(
                vendor_id=vendor.id, user_id=customer.id, topics=[topic.id], channels=["sms"]
            )
        )
        save_consents(
            db.session,
            keys(),
            customer.id,
            ConsentChanges(topics={(topic.id, "email"): TopicChoice(State.GRANTED)}),
        )
        db.session.commit()
    page = logged_in.get("/").get_data(as_text=True)
    assert _numbers(page)[:4] == [1, 2, 1, 1]
    assert "1 request waiting for your answer" in re.sub(r"</?strong>", "", page)
