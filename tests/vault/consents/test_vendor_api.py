"""The vendor consent API over HTTP, with Authlib's OAuth2Session as the vendor's client
(client credentials) against a live vault, on SQLite and on PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

import pytest
from authlib.integrations.requests_client import OAuth2Session

from consent.engine import State
from tests.vault.oauth.conftest import Client, Vault
from vault.consents.models import ConsentRequest
from vault.consents.operations import ConsentChanges, TopicChoice, VendorSettings, save_consents
from vault.extensions import db
from vault.models import utcnow
from vault.oauth.models import Grant
from vault.oauth.operations import remember_subject
from vault.oauth.scopes import pairwise_sub
from vault.services import keys
from vault.vendors.models import Vendor as VendorRow
from vault.vendors.operations import declare_topic

CONSENT_SCOPES = ("openid", "consent:read", "consent:check", "consent:request")
ALL_CONSENT = "consent:read consent:check consent:request"


@dataclass
class Shop:
    client: Client
    topics: dict[str, str]  # name -> id


def _shop(vault: Vault, name: str, topics: dict[str, str]) -> Shop:
    client = vault.vendor(name, scopes=CONSENT_SCOPES)
    ids = {}
    with vault.app.app_context():
        vendor = db.session.get(VendorRow, client.vendor_id)
        for topic, purpose in topics.items():
            ids[topic] = declare_topic(db.session, vendor, topic, purpose).id
        db.session.commit()
    return Shop(client, ids)


def _connect(vault: Vault, user_id: str, shop: Shop, *, expired: bool = False) -> str:
    """A grant of the customer to the shop (as the consent screen leaves it); the sub."""
    with vault.app.app_context():
        db.session.add(
            Grant(
                user_id=user_id,
                client_id=shop.client.client_id,
                vendor_id=shop.client.vendor_id,
                scope="openid",
                expires_at=utcnow() - timedelta(days=1) if expired else None,
            )
        )
        # What approve() does beside starting the grant.
        sub = remember_subject(db.session, keys(), shop.client.vendor_id, user_id)
        db.session.commit()
        assert sub == pairwise_sub(keys(), shop.client.vendor_id, user_id)
        return sub


def _save(vault: Vault, user_id: str, changes: ConsentChanges) -> None:
    with vault.app.app_context():
        save_consents(db.session, keys(), user_id, changes)
        db.session.commit()


def _session(vault: Vault, shop: Shop, scope: str = ALL_CONSENT) -> OAuth2Session:
    session = OAuth2Session(
        shop.client.client_id,
        shop.client.client_secret,
        scope=scope,
        token_endpoint_auth_method="client_secret_basic",
    )
    token = session.fetch_token(vault.meta["token_endpoint"], grant_type="client_credentials")
    assert token["scope"] == scope
    return session


def _check(vault: Vault, session: OAuth2Session, body: Any) -> Any:
    return session.post(vault.base + "/api/v1/consents/check", json=body, timeout=30)


@pytest.fixture
def world(vault: Vault) -> dict[str, Any]:
    """Two shops; four customers with different settings towards shop A."""
    a = _shop(vault, "Acme", {"orders": "service", "news": "marketing", "survey": "research"})
    b = _shop(vault, "Bolt", {"deals": "marketing", "orders": "service"})
    granted, quiet, blocked, stranger = (vault.customer() for _ in range(4))
    sub_granted = _connect(vault, granted.id, a)
    sub_quiet = _connect(vault, quiet.id, a)
    sub_blocked = _connect(vault, blocked.id, a)
    sub_b = _connect(vault, stranger.id, b)  # a customer of B only
    _save(
        vault,
        granted.id,
        ConsentChanges(
            channels={"sms": False},
            topics={
                (a.topics["news"], "email"): TopicChoice(State.GRANTED),
                (a.topics["survey"], "email"): TopicChoice(State.WITHDRAWN),
            },
        ),
    )
    # Quiet all day long (00:00-23:59 in UTC): an allowed contact is deferred.
    _save(
        vault,
        quiet.id,
        ConsentChanges(
            quiet_hours=(time(0, 0), time(23, 59), "UTC"),
            topics={(a.topics["news"], "email"): TopicChoice(State.GRANTED)},
        ),
    )
    _save(vault, blocked.id, ConsentChanges(vendors={a.client.vendor_id: VendorSettings(True)}))
    return {
        "a": a,
        "b": b,
        "granted": sub_granted,
        "quiet": sub_quiet,
        "blocked": sub_blocked,
        "b_only": sub_b,
        "users": {"granted": granted, "quiet": quiet, "blocked": blocked, "stranger": stranger},
    }


def test_batch_results_in_order_with_rule_and_reason(vault: Vault, world: dict[str, Any]) -> None:
    session = _session(vault, world["a"], "consent:check")
    g, q, blk = world["granted"], world["quiet"], world["blocked"]
    items = [
        {"sub": g, "channel": "email", "topic": "news"},
        {"sub": g, "channel": "email", "topic": "survey"},
        {"sub": g, "channel": "sms", "topic": "orders"},
        {"sub": g, "channel": "email", "topic": "orders"},
        {"sub": g, "channel": "post", "topic": "news"},
        {"sub": q, "channel": "email", "topic": "news"},
        {"sub": blk, "channel": "email", "topic": "orders"},
    ]
    response = _check(vault, session, {"items": items})
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    results = response.json()["results"]
    assert [(r["sub"], r["channel"], r["topic"]) for r in results] == [
        (i["sub"], i["channel"], i["topic"]) for i in items
    ]
    summary = [(r["outcome"], r["rule"]) for r in results]
    assert summary == [
        ("allow", "granted"),
        ("deny", "withdrawn"),
        ("deny", "channel_off"),
        ("allow", "service_relationship"),
        ("deny", "no_consent"),
        ("defer", "quiet_hours"),
        ("deny", "vendor_blocked"),
    ]
    assert results[0]["reason"] == "You allowed Acme to contact you by e-mail about news."
    assert "Acme" in results[6]["reason"]
    assert "not_before" in results[5] and "not_before" not in results[0]
    assert all("error" not in r for r in results)


def test_per_item_errors_do_not_fail_the_batch(vault: Vault, world: dict[str, Any]) -> None:
    session = _session(vault, world["a"], "consent:check")
    g = world["granted"]
    items = [
        {"sub": "0" * 64, "channel": "email", "topic": "news"},  # nobody
        {"sub": world["b_only"], "channel": "email", "topic": "orders"},  # B's customer
        {"sub": g, "channel": "email", "topic": "nonsense"},  # never declared
        {"sub": g, "channel": "email", "topic": "deals"},  # B's topic
        {"sub": g, "channel": "fax", "topic": "news"},  # no such channel
        {"sub": g, "channel": "email", "topic": "news"},  # still decided
    ]
    response = _check(vault, session, {"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r.get("error") for r in results] == [
        "unknown_subject",
        "unknown_subject",
        "unknown_topic",
        "unknown_topic",
        "unknown_channel",
        None,
    ]
    assert results[1] == {"sub": world["b_only"], "channel": "email", "topic": "orders",
                          "error": "unknown_subject"}  # fmt: skip
    assert all("outcome" not in r for r in results[:5])
    assert results[5]["outcome"] == "allow"


@pytest.mark.parametrize(
    "body",
    [
        [],  # not an object
        {"items": "all of them"},  # not a list
        {"items": {"sub": "x", "channel": "email", "topic": "news"}},
        {},  # no items
        {"items": [{"sub": "x", "channel": "email"}]},  # missing topic
        {"items": [{"sub": 7, "channel": "email", "topic": "news"}]},  # wrong type
        {"items": [{"sub": "x", "channel": ["email"], "topic": "news"}]},
        {"items": ["x"]},
        {"items": [{"sub": "", "channel": "email", "topic": "news"}]},
        {"items": [{"sub": "x", "channel": "email", "topic": "news"}] * 10_001},
    ],
    ids=[
        "array",
        "string-items",
        "object-items",
        "no-items",
        "missing-field",
        "int-sub",
        "list-channel",
        "string-item",
        "empty-sub",
        "too-many",
    ],
)
def test_malformed_batch_is_422(vault: Vault, world: dict[str, Any], body: Any) -> None:
    session = _session(vault, world["a"], "consent:check")
    response = _check(vault, session, body)
    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["type"].endswith("/invalid-request")
    assert problem["errors"]


def test_not_json_is_422(vault: Vault, world: dict[str, Any]) -> None:
    session = _session(vault, world["a"], "consent:check")
    response = session.post(vault.base + "/api/v1/consents/check", data="items=1", timeout=10)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"


def test_a_full_batch_of_10000_is_accepted(vault: Vault, world: dict[str, Any]) -> None:
    session = _session(vault, world["a"], "consent:check")
    items = [
        {"sub": world["granted"], "channel": "email", "topic": "news"},
        {"sub": "f" * 64, "channel": "email", "topic": "news"},
    ] * 5_000
    response = _check(vault, session, {"items": items})
    assert response.status_code == 200, response.text[:300]
    results = response.json()["results"]
    assert len(results) == 10_000
    assert results[9998]["outcome"] == "allow"
    assert results[9999]["error"] == "unknown_subject"


def test_empty_batch(vault: Vault, world: dict[str, Any]) -> None:
    response = _check(vault, _session(vault, world["a"], "consent:check"), {"items": []})
    assert response.status_code == 200
    assert response.json() == {"results": []}


def test_scopes_are_enforced(vault: Vault, world: dict[str, Any]) -> None:
    a = world["a"]
    reader = _session(vault, a, "consent:read")
    items = {"items": [{"sub": world["granted"], "channel": "email", "topic": "news"}]}
    response = _check(vault, reader, items)
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]

    checker = _session(vault, a, "consent:check")
    response = checker.get(f"{vault.base}/api/v1/consents/{world['granted']}", timeout=10)
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    response = checker.post(
        vault.base + "/api/v1/consent-requests",
        json={"sub": world["granted"], "topics": ["news"], "channels": ["email"]},
        timeout=10,
    )
    assert response.status_code == 403

    import requests

    response = requests.post(vault.base + "/api/v1/consents/check", json=items, timeout=10)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"


def test_vendors_are_isolated(vault: Vault, world: dict[str, Any]) -> None:
    """B sees its own customer and topics only; A's customers are unknown to B, even one
    who is a customer of both (under a different sub)."""
    a, b = world["a"], world["b"]
    shared = world["users"]["granted"]
    sub_at_b = _connect(vault, shared.id, b)
    assert sub_at_b != world["granted"]
    session = _session(vault, b)
    results = _check(
        vault,
        session,
        {
            "items": [
                {"sub": world["granted"], "channel": "email", "topic": "orders"},
                {"sub": world["quiet"], "channel": "email", "topic": "orders"},
                {"sub": sub_at_b, "channel": "email", "topic": "news"},  # A's topic
                {"sub": sub_at_b, "channel": "email", "topic": "orders"},
                {"sub": world["b_only"], "channel": "email", "topic": "orders"},
            ]
        },
    ).json()["results"]
    assert [r.get("error") or r["rule"] for r in results] == [
        "unknown_subject",
        "unknown_subject",
        "unknown_topic",
        "service_relationship",
        "service_relationship",
    ]
    response = session.get(f"{vault.base}/api/v1/consents/{world['granted']}", timeout=10)
    assert response.status_code == 404
    assert response.json()["type"].endswith("/unknown-subject")
    # A's settings for the shared customer (news granted on email) say nothing at B.
    view = session.get(f"{vault.base}/api/v1/consents/{sub_at_b}", timeout=10).json()
    assert [t["topic"] for t in view["topics"]] == ["deals", "orders"]
    assert all(c["setting"] is None for t in view["topics"] for c in t["channels"])
    response = session.post(
        vault.base + "/api/v1/consent-requests",
        json={"sub": world["granted"], "topics": ["deals"], "channels": ["email"]},
        timeout=10,
    )
    assert response.status_code == 404
    response = session.post(
        vault.base + "/api/v1/consent-requests",
        json={"sub": sub_at_b, "topics": ["news"], "channels": ["email"]},
        timeout=10,
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("/unknown-topic")
    assert a.topics["news"] not in response.text


def test_get_subject_consents(vault: Vault, world: dict[str, Any]) -> None:
    session = _session(vault, world["a"], "consent:read")
    response = session.get(f"{vault.base}/api/v1/consents/{world['granted']}", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    view = response.json()
    assert view["sub"] == world["granted"]
    assert view["account_active"] is True
    assert view["active_relationship"] is True
    assert view["blocked"] is False
    assert view["channels_off"] == ["sms"]
    assert view["quiet_hours"] is None
    assert view["caps"] == {"per_day": None, "per_week": None}
    topics = {t["topic"]: t for t in view["topics"]}
    assert sorted(topics) == ["news", "orders", "survey"]
    assert topics["news"]["purpose"] == "marketing" and topics["news"]["version"] == 1
    news = {c["channel"]: c for c in topics["news"]["channels"]}
    assert list(news) == ["email", "sms", "phone", "post", "push"]
    assert news["email"]["setting"] == {
        "state": "granted",
        "expires_at": None,
        "notice_version": 1,
    }
    assert (news["email"]["outcome"], news["email"]["rule"]) == ("allow", "granted")
    assert news["sms"]["rule"] == "channel_off"
    assert news["post"]["setting"] is None and news["post"]["rule"] == "no_consent"
    survey = {c["channel"]: c for c in topics["survey"]["channels"]}
    assert survey["email"]["setting"]["state"] == "withdrawn"

    quiet = session.get(f"{vault.base}/api/v1/consents/{world['quiet']}", timeout=10).json()
    assert quiet["quiet_hours"] == {"start": "00:00", "end": "23:59", "timezone": "UTC"}
    blocked = session.get(f"{vault.base}/api/v1/consents/{world['blocked']}", timeout=10).json()
    assert blocked["blocked"] is True

    response = session.get(f"{vault.base}/api/v1/consents/{'0' * 64}", timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"


def test_expired_grant_is_still_a_subject(vault: Vault, world: dict[str, Any]) -> None:
    """A former customer stays a subject (settings may outlive the grant) but the service
    relationship is gone."""
    a = world["a"]
    former = vault.customer()
    sub = _connect(vault, former.id, a, expired=True)
    session = _session(vault, a)
    view = session.get(f"{vault.base}/api/v1/consents/{sub}", timeout=10).json()
    assert view["active_relationship"] is False
    result = _check(
        vault, session, {"items": [{"sub": sub, "channel": "email", "topic": "orders"}]}
    )
    assert result.json()["results"][0]["rule"] == "no_consent"


def test_consent_requests(vault: Vault, world: dict[str, Any]) -> None:
    a = world["a"]
    user = world["users"]["quiet"]
    session = _session(vault, a, "consent:request")
    url = vault.base + "/api/v1/consent-requests"
    body = {
        "sub": world["quiet"],
        "topics": ["news", "survey"],
        "channels": ["sms", "email"],
        "message": "Our newsletter, twice a month.",
    }
    response = session.post(url, json=body, timeout=10)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "pending"
    assert created["topics"] == ["news", "survey"]
    assert created["channels"] == ["email", "sms"]
    assert created["sub"] == world["quiet"]
    assert response.headers["Location"].endswith(f"/api/v1/consent-requests/{created['id']}")

    rows = vault.sql(
        "SELECT vendor_id, user_id, status, message FROM consent_requests WHERE id = :id",
        id=created["id"],
    )
    assert [tuple(r) for r in rows] == [
        (a.client.vendor_id, user.id, "pending", "Our newsletter, twice a month.")
    ]
    with vault.app.app_context():
        row = db.session.get(ConsentRequest, created["id"])
        assert row.topics == [a.topics["news"], a.topics["survey"]]
        assert row.channels == ["email", "sms"]

    # The same pending request again (any order): the existing one, 200.
    again = session.post(
        url, json={**body, "topics": ["survey", "news"], "channels": ["email", "sms"]}, timeout=10
    )
    assert again.status_code == 200
    assert again.json()["id"] == created["id"]
    # A different one is a new request.
    other = session.post(url, json={**body, "channels": ["email"]}, timeout=10)
    assert other.status_code == 201 and other.json()["id"] != created["id"]
    assert len(vault.sql("SELECT id FROM consent_requests")) == 2

    fetched = session.get(response.headers["Location"], timeout=10)
    assert fetched.status_code == 200 and fetched.json() == created
    # Another vendor cannot read it.
    stranger = _session(vault, world["b"], "consent:request")
    assert stranger.get(response.headers["Location"], timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("change", "status", "slug"),
    [
        ({"topics": ["deals"]}, 422, "unknown-topic"),  # B's topic
        ({"topics": ["nonsense"]}, 422, "unknown-topic"),
        ({"channels": ["fax"]}, 422, "invalid-request"),
        ({"channels": []}, 422, "invalid-request"),
        ({"topics": []}, 422, "invalid-request"),
        ({"topics": "news"}, 422, "invalid-request"),
        ({"message": "x" * 501}, 422, "invalid-request"),
        ({"sub": "0" * 64}, 404, "unknown-subject"),
        ({"extra": 1}, 422, "invalid-request"),
    ],
)
def test_invalid_consent_requests(
    vault: Vault, world: dict[str, Any], change: dict[str, Any], status: int, slug: str
) -> None:
    session = _session(vault, world["a"], "consent:request")
    body = {"sub": world["granted"], "topics": ["news"], "channels": ["email"], "message": "hi"}
    response = session.post(vault.base + "/api/v1/consent-requests", json={**body, **change})
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["type"].endswith("/" + slug)
    assert vault.sql("SELECT id FROM consent_requests") == []


def test_message_of_500_characters_is_fine(vault: Vault, world: dict[str, Any]) -> None:
    session = _session(vault, world["a"], "consent:request")
    body = {"sub": world["granted"], "topics": ["news"], "channels": ["post"], "message": "x" * 500}
    response = session.post(vault.base + "/api/v1/consent-requests", json=body, timeout=10)
    assert response.status_code == 201


def test_openapi_documents_the_consent_api(vault: Vault) -> None:
    import requests

    spec = requests.get(vault.base + "/api/openapi.json", timeout=10).json()
    assert {"/api/v1/consents/{sub}", "/api/v1/consents/check", "/api/v1/consent-requests"} <= set(
        spec["paths"]
    )
    check = spec["paths"]["/api/v1/consents/check"]["post"]
    assert check["security"] == [{"oauth2": ["consent:check"]}]
    assert {"200", "401", "403", "422", "429"} <= set(check["responses"])
    assert "CheckBatch" in spec["components"]["schemas"]
    flows = spec["components"]["securitySchemes"]["oauth2"]["flows"]
    assert "consent:check" in flows["clientCredentials"]["scopes"]


def test_a_customer_token_without_consent_scopes_is_refused(
    vault: Vault, world: dict[str, Any]
) -> None:
    """The consent screen grants customers' tokens profile scopes only (consent:* are
    vendor-level), so a code-flow token cannot reach the consent API; its pairwise sub is
    the one the consent API uses."""
    a = world["a"]
    user = vault.customer()
    _auth, tokens = vault.connect(a.client, vault.browser(user), "openid consent:check")
    assert tokens["scope"].split() == ["openid"]
    own = pairwise_sub(_keys(vault), a.client.vendor_id, user.id)
    assert vault.api(tokens["access_token"]).json()["sub"] == own
    import requests

    response = requests.post(
        vault.base + "/api/v1/consents/check",
        json={"items": [{"sub": own, "channel": "email", "topic": "orders"}]},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    checked = _check(
        vault,
        _session(vault, a, "consent:check"),
        {"items": [{"sub": own, "channel": "email", "topic": "orders"}]},
    )
    assert checked.json()["results"][0]["rule"] == "service_relationship"


def _keys(vault: Vault) -> Any:
    with vault.app.app_context():
        return keys()


@pytest.mark.parametrize(
    "body",
    [
        {"items": [{"sub": "s", "channel": "email", "topic": "t"}]},
        {"items": [{"sub": "s" * 128, "channel": "c" * 32, "topic": "t" * 64}]},
        {"items": [{"sub": "s" * 129, "channel": "email", "topic": "t"}]},
        {"items": [{"sub": "s", "channel": "c" * 33, "topic": "t"}]},
        {"items": [{"sub": "s", "channel": "email", "topic": "t" * 65}]},
        {"items": [{"sub": "s", "channel": "email", "topic": "t", "x": 1}]},
        {"items": [{"sub": "s", "channel": "email", "topic": None}]},
        {"items": []},
        {"items": [], "more": True},
    ],
)
def test_batch_fast_path_agrees_with_the_schema(body: Any) -> None:
    from marshmallow import ValidationError

    from vault.api.consent_schemas import CheckBatchSchema, load_check_batch

    schema = CheckBatchSchema()
    try:
        expected: Any = schema.load(body)
    except ValidationError as error:
        expected = error.messages
    try:
        got: Any = load_check_batch(schema, body)
    except ValidationError as error:
        got = error.messages
    assert got == expected
