"""The customer's consent pages (/consents), the termination receipt of /connections and
the receipts in /consents/receipts, through the test client on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import func, select

from tests import factories
from vault.consents import ledger as ledger_store
from vault.consents.models import (
    ChannelSetting,
    ConsentPreferences,
    ConsentReceipt,
    ConsentRequest,
    LedgerEvent,
    LedgerHead,
    TopicConsent,
    VendorPreference,
)
from vault.extensions import db
from vault.oauth.models import Grant
from vault.vendors.operations import create_client, create_vendor, declare_topic


@dataclass(frozen=True)
class World:
    customer: factories.CreatedUser
    vendor_id: str
    grant_id: str
    topics: dict[str, str]  # name -> id


def _business(app: Flask, user_id: str, name: str = "Acme") -> tuple[str, str, dict[str, str]]:
    with app.app_context():
        vendor = create_vendor(db.session, name)
        client = create_client(
            db.session,
            vendor,
            redirect_uris=["https://acme.example/callback"],
            scopes=["openid", "email", "phone"],
        ).client
        topics = {
            topic: declare_topic(db.session, vendor, topic, purpose).id
            for topic, purpose in (("newsletter", "marketing"), ("orders", "service"))
        }
        grant = Grant(
            user_id=user_id,
            client_id=client.client_id,
            vendor_id=vendor.id,
            scope="openid email phone",
        )
        db.session.add(grant)
        db.session.commit()
        return vendor.id, grant.id, topics


@pytest.fixture
def world(app: Flask, customer: factories.CreatedUser) -> World:
    vendor_id, grant_id, topics = _business(app, customer.id)
    return World(customer, vendor_id, grant_id, topics)


def _state(app: Flask, user_id: str) -> dict[str, Any]:
    """The ledger head and every consent setting of the customer, for before/after checks."""
    with app.app_context():
        head = db.session.get(LedgerHead, 1)
        prefs = db.session.get(ConsentPreferences, user_id)
        return {
            "head": (head.seq, head.hash),
            "receipts": db.session.scalar(select(func.count()).select_from(ConsentReceipt)),
            "channels": sorted(
                (r.channel, r.enabled)
                for r in db.session.scalars(
                    select(ChannelSetting).where(ChannelSetting.user_id == user_id)
                )
            ),
            "quiet": (prefs.quiet_start, prefs.quiet_end, prefs.timezone) if prefs else None,
            "vendors": sorted(
                (r.vendor_id, r.blocked, r.cap_per_day, r.cap_per_week)
                for r in db.session.scalars(
                    select(VendorPreference).where(VendorPreference.user_id == user_id)
                )
            ),
            "topics": sorted(
                (r.topic_id, r.channel, r.state, r.expires_at)
                for r in db.session.scalars(
                    select(TopicConsent).where(TopicConsent.user_id == user_id)
                )
            ),
        }


def _events_after(app: Flask, seq: int) -> list[tuple[str, str | None, str | None]]:
    with app.app_context():
        return [
            (e.event_type, e.channel, e.topic)
            for e in db.session.scalars(
                select(LedgerEvent).where(LedgerEvent.seq > seq).order_by(LedgerEvent.seq)
            )
        ]


def _save(client: FlaskClient, data: dict[str, Any]) -> Any:
    return factories.post_form(client, "/consents", data, form_page="/consents")


def _quiet_window_not_now() -> tuple[str, str]:
    """Quiet hours in Berlin that start in two hours: decisions made now are not deferred."""
    local = datetime.now(UTC).astimezone(ZoneInfo("Europe/Berlin"))
    start, end = local + timedelta(hours=2), local + timedelta(hours=3)
    return start.strftime("%H:%M"), end.strftime("%H:%M")


def _all_on() -> dict[str, str]:
    return {
        "channels": "1",
        **{f"channel_{c}": "on" for c in ("email", "sms", "phone", "post", "push")},
    }


def test_page_shows_every_business_with_decisions_and_reasons(app, logged_in, world):
    page = logged_in.get("/consents")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Acme" in html and 'href="/consents"' in html  # the nav link
    assert "You have not allowed Acme to contact you by e-mail about newsletter." in html
    assert "orders is a service message and you have an active connection with Acme." in html
    newsletter = world.topics["newsletter"]
    assert f'name="topic-{newsletter}-email"' in html
    assert f'name="expires-{newsletter}-email"' in html
    assert f'name="cap_day-{world.vendor_id}"' in html and 'name="timezone"' in html


def test_a_save_changes_the_decisions_and_appends_exactly_its_events(app, logged_in, world):
    newsletter = world.topics["newsletter"]
    before = _state(app, world.customer.id)
    start, end = _quiet_window_not_now()
    data = {
        **_all_on(),
        "quiet_start": start,
        "quiet_end": end,
        "timezone": "Europe/Berlin",
        f"topic-{newsletter}-email": "granted",
        f"topic-{newsletter}-sms": "granted",
        f"vendor-{world.vendor_id}": "1",
        f"cap_day-{world.vendor_id}": "2",
        f"cap_week-{world.vendor_id}": "",
    }
    del data["channel_sms"]
    response = _save(logged_in, data)
    assert response.status_code == 302, response.get_data(as_text=True)

    assert _events_after(app, before["head"][0]) == [
        ("channel_switched", "sms", None),
        ("quiet_hours_set", None, None),
        ("caps_set", None, None),
        ("topic_granted", "email", "newsletter"),
        ("topic_granted", "sms", "newsletter"),
    ]
    after = _state(app, world.customer.id)
    assert after["receipts"] == before["receipts"] + 5
    assert after["channels"] == [("sms", False)]
    assert after["quiet"] == (start, end, "Europe/Berlin")
    assert after["vendors"] == [(world.vendor_id, False, 2, None)]

    html = logged_in.get("/consents").get_data(as_text=True)
    assert "You allowed Acme to contact you by e-mail about newsletter." in html
    assert "You switched off every contact by text message." in html
    assert f'value="{start}"' in html and '<option value="Europe/Berlin" selected>' in html

    # The same form again changes nothing and records nothing.
    again = _save(logged_in, data)
    assert again.status_code == 302
    assert _state(app, world.customer.id) == after

    # Back to default: one topic_cleared event, and the decision is opt-in again.
    response = _save(logged_in, {f"topic-{newsletter}-email": "default"})
    assert response.status_code == 302
    assert _events_after(app, after["head"][0]) == [("topic_cleared", "email", "newsletter")]
    html = logged_in.get("/consents").get_data(as_text=True)
    assert "You have not allowed Acme to contact you by e-mail about newsletter." in html


def test_quiet_hours_now_defer_and_say_so(app, logged_in, world):
    local = datetime.now(UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    start = (local - timedelta(hours=1)).strftime("%H:%M")
    end = (local + timedelta(hours=2)).strftime("%H:%M")
    response = _save(
        logged_in,
        {
            "quiet_start": start,
            "quiet_end": end,
            "timezone": "Asia/Tokyo",
            f"topic-{world.topics['newsletter']}-post": "granted",
        },
    )
    assert response.status_code == 302
    html = logged_in.get("/consents").get_data(as_text=True)
    assert f"It is within your quiet hours ({start}-{end} Asia/Tokyo)" in html


def test_expiry_is_stored_and_shown(app, logged_in, world):
    newsletter = world.topics["newsletter"]
    day = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d")
    response = _save(
        logged_in,
        {f"topic-{newsletter}-email": "granted", f"expires-{newsletter}-email": day},
    )
    assert response.status_code == 302
    [(_, _, state, expires_at)] = _state(app, world.customer.id)["topics"]
    assert state == "granted" and expires_at.strftime("%Y-%m-%d") == day
    assert f'value="{day}"' in logged_in.get("/consents").get_data(as_text=True)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timezone", "Mars/Olympus", "Choose a time zone from the list"),
        ("quiet_start", "25:00", "Enter a time of day like 22:00."),
        ("quiet_end", "", "Give both a start and an end"),
        ("cap_day", "abc", "Enter a whole number from 0 to 1000"),
        ("cap_week", "1001", "Enter a whole number from 0 to 1000"),
        ("cap_day", "-1", "Enter a whole number from 0 to 1000"),
        ("expires", "2001-01-01", "The expiry date must lie in the future."),
        ("expires", "tomorrow", "Enter a date like 2030-12-31."),
        ("topic_unknown", "granted", "Unknown topic."),
        ("channel_unknown", "granted", "Unknown channel"),
        ("state", "maybe", "Choose allowed, withdrawn or default."),
    ],
)
def test_invalid_input_saves_nothing(app, logged_in, world, field, value, message):
    newsletter = world.topics["newsletter"]
    vendor = world.vendor_id
    data: dict[str, str] = {
        # Valid changes in the same form, which must not be saved either.
        **_all_on(),
        "quiet_start": "22:00",
        "quiet_end": "07:00",
        "timezone": "Europe/Berlin",
        f"topic-{newsletter}-email": "granted",
        f"vendor-{vendor}": "1",
        f"block-{vendor}": "on",
    }
    del data["channel_sms"]
    name = {
        "cap_day": f"cap_day-{vendor}",
        "cap_week": f"cap_week-{vendor}",
        "expires": f"expires-{newsletter}-email",
        "topic_unknown": "topic-00000000-0000-0000-0000-000000000000-email",
        "channel_unknown": f"topic-{newsletter}-pigeon",
        "state": f"topic-{newsletter}-email",
    }.get(field, field)
    data[name] = value
    before = _state(app, world.customer.id)
    response = _save(logged_in, data)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Nothing was saved." in html and message in html
    if name in ("timezone", "quiet_start", "quiet_end") or name.startswith(("cap_", "expires-")):
        assert f'id="{name}-error"' in html  # next to its field
    assert _state(app, world.customer.id) == before


def _request(app: Flask, world: World, user_id: str | None = None, **kw: Any) -> str:
    with app.app_context():
        row = ConsentRequest(
            vendor_id=world.vendor_id,
            user_id=user_id or world.customer.id,
            topics=kw.get("topics", [world.topics["newsletter"]]),
            channels=kw.get("channels", ["email", "push"]),
            message="Our weekly deals, twice a month at most.",
        )
        db.session.add(row)
        db.session.commit()
        return row.id


def test_approving_a_request_grants_exactly_what_it_asked(app, logged_in, world):
    request_id = _request(app, world)
    html = logged_in.get("/consents").get_data(as_text=True)
    assert "Our weekly deals, twice a month at most." in html
    before = _state(app, world.customer.id)
    response = factories.post_form(
        logged_in, f"/consents/requests/{request_id}/approve", {}, form_page="/consents"
    )
    assert response.status_code == 302
    assert _events_after(app, before["head"][0]) == [
        ("topic_granted", "email", "newsletter"),
        ("topic_granted", "push", "newsletter"),
    ]
    with app.app_context():
        row = db.session.get(ConsentRequest, request_id)
        assert row.status == "approved" and row.answered_at is not None
    assert [(t[1], t[2]) for t in _state(app, world.customer.id)["topics"]] == [
        ("email", "granted"),
        ("push", "granted"),
    ]
    assert "Our weekly deals" not in logged_in.get("/consents").get_data(as_text=True)
    # Answered once; a second answer is refused.
    again = factories.post_form(
        logged_in, f"/consents/requests/{request_id}/decline", {}, form_page="/consents"
    )
    assert again.status_code == 409


def test_declining_a_request_changes_no_consent(app, logged_in, world):
    request_id = _request(app, world)
    before = _state(app, world.customer.id)
    response = factories.post_form(
        logged_in, f"/consents/requests/{request_id}/decline", {}, form_page="/consents"
    )
    assert response.status_code == 302
    after = _state(app, world.customer.id)
    # No setting and no receipt changed; the ledger keeps the answer as one event.
    assert {k: v for k, v in after.items() if k != "head"} == {
        k: v for k, v in before.items() if k != "head"
    }
    assert after["head"][0] == before["head"][0] + 1
    with app.app_context():
        row = db.session.get(ConsentRequest, request_id)
        assert row.status == "declined" and row.answered_at is not None
        event = db.session.get(LedgerEvent, after["head"][0])
        assert (event.event_type, event.vendor_id, event.actor) == (
            "consent_request_declined",
            world.vendor_id,
            "customer",
        )
        assert json.loads(event.new_state) == {
            "request": request_id,
            "status": "declined",
            "topics": ["newsletter"],
            "channels": ["email", "push"],
        }
        assert ledger_store.verify(db.session).ok


def test_a_request_for_another_business_topic_is_refused(app, logged_in, world):
    _, _, other_topics = _business(app, world.customer.id, "Bolt")
    request_id = _request(app, world, topics=[other_topics["newsletter"]])
    before = _state(app, world.customer.id)
    response = factories.post_form(
        logged_in, f"/consents/requests/{request_id}/approve", {}, form_page="/consents"
    )
    assert response.status_code == 409
    assert _state(app, world.customer.id) == before
    with app.app_context():
        assert db.session.get(ConsentRequest, request_id).status == "pending"


def test_another_customers_request_and_receipt_are_not_found(app, logged_in, world):
    stranger = factories.customer(app)
    request_id = _request(app, world, user_id=stranger.id)
    other = app.test_client()
    factories.log_in(other, stranger.email, stranger.password)
    _save(other, {"channels": "1", "channel_email": "on"})
    with app.app_context():
        receipt_id = db.session.scalar(
            select(ConsentReceipt.id).where(ConsentReceipt.user_id == stranger.id)
        )
    assert receipt_id is not None
    for action in ("approve", "decline"):
        response = factories.post_form(
            logged_in, f"/consents/requests/{request_id}/{action}", {}, form_page="/consents"
        )
        assert response.status_code == 404
    assert logged_in.get(f"/consents/receipts/{receipt_id}").status_code == 404
    assert logged_in.get(f"/consents/receipts/{receipt_id}.jws").status_code == 404
    assert receipt_id not in logged_in.get("/consents/receipts").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(ConsentRequest, request_id).status == "pending"


def _revoke(client: FlaskClient, grant_id: str, data: dict[str, str]) -> Any:
    return factories.post_form(
        client, f"/connections/{grant_id}/revoke", data, form_page="/connections"
    )


def test_revoking_with_stop_contact_blocks_and_issues_one_termination_receipt(
    app, logged_in, world
):
    newsletter = world.topics["newsletter"]
    assert "Also stop all contact from Acme" in logged_in.get("/connections").get_data(as_text=True)
    _save(logged_in, {f"topic-{newsletter}-email": "granted"})
    before = _state(app, world.customer.id)
    response = _revoke(logged_in, world.grant_id, {"stop_contact": "on"})
    assert response.status_code == 302

    assert _events_after(app, before["head"][0]) == [
        ("grant_revoked", None, None),
        ("vendor_blocked", None, None),
        ("topic_withdrawn", "email", "newsletter"),
    ]
    after = _state(app, world.customer.id)
    assert after["receipts"] == before["receipts"] + 1
    assert after["vendors"] == [(world.vendor_id, True, None, None)]
    assert [t[2] for t in after["topics"]] == ["withdrawn"]
    with app.app_context():
        assert db.session.get(Grant, world.grant_id).revoked_at is not None
        receipt = db.session.scalars(
            select(ConsentReceipt).order_by(ConsentReceipt.ledger_seq.desc())
        ).first()
        assert receipt.kind == "termination" and receipt.vendor_id == world.vendor_id
        assert receipt.ledger_seq == after["head"][0]
    payload = json.loads(jws.extract_compact(receipt.jws.encode()).payload)
    purposes = [p["purpose"] for p in payload["services"][0]["purposes"]]
    assert purposes == [
        "Acme may read: Know it is you",
        "Acme may read: Your e-mail address",
        "Acme may read: Your phone number",
        "any contact from Acme",
        "newsletter",
    ]
    assert [e["eventType"] for e in payload["cmrVault"]["ledger"]] == [
        "grant_revoked",
        "vendor_blocked",
        "topic_withdrawn",
    ]
    assert payload["cmrVault"]["kind"] == "termination"
    html = logged_in.get("/consents").get_data(as_text=True)
    assert "You blocked all contact from Acme." in html


def test_revoking_without_stop_contact_leaves_contact_settings(app, logged_in, world):
    newsletter = world.topics["newsletter"]
    _save(logged_in, {f"topic-{newsletter}-email": "granted"})
    before = _state(app, world.customer.id)
    response = _revoke(logged_in, world.grant_id, {})
    assert response.status_code == 302
    assert _events_after(app, before["head"][0]) == [("grant_revoked", None, None)]
    after = _state(app, world.customer.id)
    assert after["topics"] == before["topics"] and after["vendors"] == before["vendors"]
    assert after["receipts"] == before["receipts"] + 1
    with app.app_context():
        receipt = db.session.scalars(
            select(ConsentReceipt).where(ConsentReceipt.kind == "termination")
        ).one()
    payload = json.loads(jws.extract_compact(receipt.jws.encode()).payload)
    assert [c["state"] for c in payload["cmrVault"]["changes"]] == ["ended"] * 3
    # The business still shows, now without the service relationship.
    html = logged_in.get("/consents").get_data(as_text=True)
    assert "You allowed Acme to contact you by e-mail about newsletter." in html
    assert "You have not allowed Acme to contact you by e-mail about orders." in html


def test_receipts_are_listed_and_download_as_verifiable_jws(app, logged_in, world):
    newsletter = world.topics["newsletter"]
    _save(logged_in, {f"topic-{newsletter}-email": "granted"})
    with app.app_context():
        receipt = db.session.scalars(
            select(ConsentReceipt).where(ConsentReceipt.user_id == world.customer.id)
        ).one()
        receipt_id, token = receipt.id, receipt.jws
    listing = logged_in.get("/consents/receipts").get_data(as_text=True)
    assert f"/consents/receipts/{receipt_id}.jws" in listing and "newsletter" in listing

    download = logged_in.get(f"/consents/receipts/{receipt_id}.jws")
    assert download.status_code == 200
    assert download.mimetype == "application/jose"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert download.get_data(as_text=True) == token

    keyset = KeySet.import_key_set(logged_in.get("/oauth/jwks.json").get_json())
    verified = jws.deserialize_compact(download.get_data(), keyset)
    payload = json.loads(verified.payload)
    assert payload["version"] == "KI-CR-v1.1.0"
    assert payload["consentReceiptID"] == receipt_id
    assert payload["cmrVault"]["changes"][0]["state"] == "granted"
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(Exception):  # noqa: B017 (joserfc's BadSignatureError and kin)
        jws.deserialize_compact(tampered, keyset)

    readable = logged_in.get(f"/consents/receipts/{receipt_id}")
    assert readable.status_code == 200
    text = readable.get_data(as_text=True)
    assert "Consent receipt" in text and "newsletter" in text and "topic_granted" in text


def test_export_holds_consent_settings_and_receipts(app, logged_in, world):
    newsletter = world.topics["newsletter"]
    _save(
        logged_in,
        {
            "channels": "1",
            "channel_email": "on",
            "quiet_start": "22:00",
            "quiet_end": "07:00",
            "timezone": "Europe/Berlin",
            f"topic-{newsletter}-email": "granted",
        },
    )
    document = logged_in.get("/my-data/export.json").get_json()
    consents = document["consents"]
    assert consents["channels"]["email"] is True and consents["channels"]["sms"] is False
    assert consents["quiet_hours"] == {
        "start": "22:00",
        "end": "07:00",
        "timezone": "Europe/Berlin",
    }
    assert [(t["business"], t["topic"], t["channel"], t["state"]) for t in consents["topics"]] == [
        ("Acme", "newsletter", "email", "granted")
    ]
    receipts = document["consent_receipts"]
    assert len(receipts) == 6  # four channels off, quiet hours, one topic
    with app.app_context():
        stored = {
            r.id: r.jws
            for r in db.session.scalars(
                select(ConsentReceipt).where(ConsentReceipt.user_id == world.customer.id)
            )
        }
    assert {r["id"]: r["jws"] for r in receipts} == stored
    assert {r["kind"] for r in receipts} == {"consent"}
    assert all(isinstance(r["ledger_seq"], int) and r["created_at"] for r in receipts)
