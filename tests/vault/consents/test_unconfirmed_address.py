"""Only confirmed addresses are contacted: the vendor consent API answers a text message or
a call to an unconfirmed phone number with a deny of its own rule (``unconfirmed_address``),
and allows it once the customer confirmed the number, until the number changes."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from consent.engine import State
from tests import factories
from tests.vault.consents.test_vendor_api import _check, _connect, _save, _session, _shop
from tests.vault.oauth.conftest import Vault
from vault.accounts.models import User
from vault.consents.operations import ConsentChanges, TopicChoice
from vault.consents.snapshot import load_consents
from vault.extensions import db
from vault.models import utcnow
from vault.profile.operations import load_profile, save_profile
from vault.services import keys

UNCONFIRMED = "There is no confirmed phone number in your profile to reach you by text message."


@pytest.fixture
def shop_and_customer(vault: Vault) -> dict[str, Any]:
    shop = _shop(vault, "Acme", {"orders": "service", "news": "marketing", "survey": "research"})
    person = factories.customer_with_phone(vault.app, confirmed=False)
    sub = _connect(vault, person.id, shop)
    _save(
        vault,
        person.id,
        ConsentChanges(
            topics={
                (shop.topics["news"], "sms"): TopicChoice(State.GRANTED),
                (shop.topics["news"], "phone"): TopicChoice(State.GRANTED),
                (shop.topics["news"], "email"): TopicChoice(State.GRANTED),
                (shop.topics["survey"], "sms"): TopicChoice(State.WITHDRAWN),
            }
        ),
    )
    return {"shop": shop, "person": person, "sub": sub}


def _decisions(vault: Vault, session: Any, sub: str) -> dict[tuple[str, str], tuple[str, str]]:
    pairs = [
        ("sms", "news"),
        ("phone", "news"),
        ("email", "news"),
        ("sms", "orders"),  # service message, active connection
        ("sms", "survey"),  # withdrawn
        ("post", "news"),  # no consent: post is outside the address rule
    ]
    response = _check(
        vault,
        session,
        {"items": [{"sub": sub, "channel": c, "topic": t} for c, t in pairs]},
    )
    assert response.status_code == 200, response.text
    return {
        (r["channel"], r["topic"]): (r["outcome"], r["rule"], r["reason"])
        for r in response.json()["results"]
    }


def test_an_unconfirmed_number_is_denied_until_confirmed(vault, shop_and_customer):
    shop, person, sub = (shop_and_customer[k] for k in ("shop", "person", "sub"))
    session = _session(vault, shop)

    before = _decisions(vault, session, sub)
    assert before[("sms", "news")] == ("deny", "unconfirmed_address", UNCONFIRMED)
    assert before[("phone", "news")][:2] == ("deny", "unconfirmed_address")
    assert "by phone call" in before[("phone", "news")][2]
    assert before[("sms", "orders")][:2] == ("deny", "unconfirmed_address")
    # The customer's own refusals read as themselves; e-mail is confirmed at sign-up.
    assert before[("sms", "survey")][:2] == ("deny", "withdrawn")
    assert before[("post", "news")][:2] == ("deny", "no_consent")
    assert before[("email", "news")][:2] == ("allow", "granted")
    # The customer's view for the business says the same.
    view = session.get(f"{vault.base}/api/v1/consents/{sub}", timeout=10).json()
    news = {c["channel"]: c for t in view["topics"] if t["topic"] == "news" for c in t["channels"]}
    assert news["sms"]["rule"] == "unconfirmed_address" and news["sms"]["outcome"] == "deny"
    # The API's documented rule codes include the new one.
    spec = vault.app.test_client().get("/api/openapi.json").get_json()
    rules = spec["components"]["schemas"]["CheckResult"]["properties"]["rule"]["enum"]
    assert "unconfirmed_address" in rules

    factories.confirm_phone(vault.app, person.id)
    after = _decisions(vault, session, sub)
    assert after[("sms", "news")][:2] == ("allow", "granted")
    assert after[("phone", "news")][:2] == ("allow", "granted")
    assert after[("sms", "orders")][:2] == ("allow", "service_relationship")
    assert after[("sms", "survey")][:2] == ("deny", "withdrawn")
    assert after[("post", "news")] == before[("post", "news")]

    # A new number in the profile: denied again until it is confirmed in turn.
    with vault.app.app_context():
        user = db.session.get(User, person.id)
        profile = load_profile(db.session, keys(), person.id)
        save_profile(db.session, keys(), user, {**profile, "phone_number": "+14155550177"})
        db.session.commit()
    again = _decisions(vault, session, sub)
    assert again[("sms", "news")] == ("deny", "unconfirmed_address", UNCONFIRMED)
    assert again[("email", "news")][:2] == ("allow", "granted")


def test_the_snapshot_reads_confirmation_in_the_account_query(vault, shop_and_customer):
    """The address rule costs no query more: the confirmation comes with the account."""
    person = shop_and_customer["person"]
    confirmed = factories.customer_with_phone(vault.app, number="+14155550177")
    statements: list[str] = []
    with vault.app.app_context():

        def record(conn, cursor, statement, *args):
            statements.append(statement)

        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            loaded = load_consents(db.session, [person.id, confirmed.id], utcnow())
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
    assert loaded[person.id].confirmed_channels == {"email"}
    assert loaded[confirmed.id].confirmed_channels == {"email", "sms", "phone"}
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT") and s != "SELECT 1"]
    assert len(queries) == 7
    assert sum("phone_confirmed_index" in s for s in queries) == 1
