"""Consent operations against a real database (SQLite and PostgreSQL): every real change
appends exactly one ledger event and one receipt in the caller's transaction, no-ops append
nothing, invalid input changes nothing, and the notice version seen is kept."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from consent.engine import State
from tests import factories
from vault.consents.models import (
    ChannelSetting,
    ConsentPreferences,
    ConsentReceipt,
    LedgerEvent,
    LedgerHead,
    TopicConsent,
    VendorPreference,
)
from vault.consents.operations import (
    ConsentChanges,
    ConsentError,
    TopicChoice,
    VendorSettings,
    save_consents,
    subject_of,
)
from vault.consents.snapshot import load_consents
from vault.extensions import db
from vault.oauth.scopes import pairwise_sub
from vault.services import keys
from vault.vendors.models import ContactTopic
from vault.vendors.operations import create_vendor, declare_topic


@dataclass(frozen=True)
class World:
    user_id: str
    other_user_id: str
    vendor_id: str
    other_vendor_id: str
    news: str  # topic ids
    billing: str


@pytest.fixture
def world(app: Flask) -> World:
    user = factories.customer(app)
    other = factories.customer(app)
    with app.app_context():
        acme = create_vendor(db.session, "Acme", privacy_policy_url="https://acme.example/p")
        bolt = create_vendor(db.session, "Bolt")
        news = declare_topic(db.session, acme, "news", "marketing", "Our monthly news.")
        billing = declare_topic(db.session, acme, "billing", "service", "Invoices.")
        db.session.commit()
        return World(user.id, other.id, acme.id, bolt.id, news.id, billing.id)


def save(user_id: str, changes: ConsentChanges, **kwargs: Any) -> list[ConsentReceipt]:
    return save_consents(db.session, keys(), user_id, changes, **kwargs)


def head() -> tuple[int, str]:
    row = db.session.get(LedgerHead, 1)
    assert row is not None
    return row.seq, row.hash


def events_after(seq: int) -> list[LedgerEvent]:
    return list(
        db.session.scalars(select(LedgerEvent).where(LedgerEvent.seq > seq).order_by("seq"))
    )


def state_of_everything() -> dict[str, Any]:
    """The ledger head, every setting and the receipt count, comparable before and after."""
    db.session.expire_all()

    def rows(model: Any, *columns: str) -> list[tuple[Any, ...]]:
        return sorted(
            tuple(getattr(r, c) for c in columns) for r in db.session.scalars(select(model))
        )

    return {
        "head": head(),
        "events": db.session.scalar(select(func.count()).select_from(LedgerEvent)),
        "receipts": db.session.scalar(select(func.count()).select_from(ConsentReceipt)),
        "channels": rows(ChannelSetting, "user_id", "channel", "enabled"),
        "quiet": rows(ConsentPreferences, "user_id", "quiet_start", "quiet_end", "timezone"),
        "vendors": rows(VendorPreference, "user_id", "vendor_id", "blocked", "cap_per_day"),
        "topics": rows(
            TopicConsent, "user_id", "topic_id", "channel", "state", "expires_at", "notice_version"
        ),
    }


def payload(receipt: ConsentReceipt) -> dict[str, Any]:
    from vault.consents.operations import decode_receipt

    return decode_receipt(receipt.jws)[1]


# --- one event and one receipt per real change ----------------------------------------------


def test_each_real_change_appends_one_event_and_one_receipt(app: Flask, world: World) -> None:
    with app.app_context():
        seq0, _ = head()
        issued = save(
            world.user_id,
            ConsentChanges(
                channels={"sms": False, "email": True},  # e-mail is already on: no change
                quiet_hours=(time(22, 0), time(7, 0), "Europe/Berlin"),
                vendors={world.vendor_id: VendorSettings(cap_per_day=3)},
                topics={
                    (world.news, "email"): TopicChoice(State.GRANTED),
                    (world.news, "sms"): TopicChoice(State.WITHDRAWN),
                },
            ),
        )
        db.session.commit()
        events = events_after(seq0)
        assert [e.event_type for e in events] == [
            "channel_switched",
            "quiet_hours_set",
            "caps_set",
            "topic_granted",
            "topic_withdrawn",
        ]
        assert head()[0] == seq0 + 5
        assert [r.ledger_seq for r in issued] == [e.seq for e in events]
        stored = db.session.scalars(
            select(ConsentReceipt).where(ConsentReceipt.user_id == world.user_id)
        ).all()
        assert sorted(r.ledger_seq for r in stored) == [e.seq for e in events]
        for receipt, event in zip(issued, events, strict=True):
            ledger_part = payload(receipt)["cmrVault"]["ledger"]
            assert ledger_part == [
                {"seq": event.seq, "hash": event.hash, "eventType": event.event_type}
            ]
        assert json.loads(events[0].new_state) == {"enabled": False}
        assert (events[3].channel, events[3].topic, events[3].vendor_id) == (
            "email",
            "news",
            world.vendor_id,
        )

        # Blocking and changing the caps at once are two changes: two events, two receipts.
        seq1, _ = head()
        issued = save(
            world.user_id,
            ConsentChanges(vendors={world.vendor_id: VendorSettings(True, 5, 10)}),
        )
        db.session.commit()
        assert [e.event_type for e in events_after(seq1)] == ["vendor_blocked", "caps_set"]
        assert len(issued) == 2


def test_a_no_op_save_appends_nothing(app: Flask, world: World) -> None:
    expires = datetime.now(UTC).replace(microsecond=123456) + timedelta(days=30)
    changes = ConsentChanges(
        channels={"push": False},
        quiet_hours=(time(23, 0), time(6, 30), "America/New_York"),
        vendors={world.vendor_id: VendorSettings(blocked=False, cap_per_week=4)},
        topics={(world.news, "email"): TopicChoice(State.GRANTED, expires)},
    )
    with app.app_context():
        assert len(save(world.user_id, changes)) == 4
        db.session.commit()
    with app.app_context():  # a fresh session: values as the database returns them
        before = state_of_everything()
        assert save(world.user_id, changes) == []
        # Defaults that are already in place are no changes either.
        assert (
            save(
                world.user_id,
                ConsentChanges(
                    channels={"email": True, "push": False},
                    vendors={world.other_vendor_id: VendorSettings()},
                    topics={(world.billing, "sms"): TopicChoice(None)},
                ),
            )
            == []
        )
        db.session.commit()
        assert state_of_everything() == before
    with app.app_context():
        assert save(world.user_id, ConsentChanges(clear_quiet_hours=True))
        db.session.commit()
        before = state_of_everything()
        assert save(world.user_id, ConsentChanges(clear_quiet_hours=True)) == []
        db.session.commit()
        assert state_of_everything() == before


# --- invalid input changes nothing ----------------------------------------------------------


def _invalid_changes(world: World) -> dict[str, ConsentChanges]:
    past = datetime.now(UTC) - timedelta(minutes=1)
    return {
        "unknown channel": ConsentChanges(channels={"fax": False}),
        "unknown topic channel": ConsentChanges(
            topics={(world.news, "pigeon"): TopicChoice(State.GRANTED)}
        ),
        "unknown topic": ConsentChanges(
            topics={("no-such-topic", "email"): TopicChoice(State.GRANTED)}
        ),
        "expiry in the past": ConsentChanges(
            topics={(world.news, "email"): TopicChoice(State.GRANTED, past)}
        ),
        "cap below 0": ConsentChanges(vendors={world.vendor_id: VendorSettings(cap_per_day=-1)}),
        "cap above 1000": ConsentChanges(
            vendors={world.vendor_id: VendorSettings(cap_per_week=1001)}
        ),
        "unknown vendor": ConsentChanges(vendors={"no-such-vendor": VendorSettings(True)}),
        "naive expiry": ConsentChanges(
            topics={(world.news, "email"): TopicChoice(State.GRANTED, datetime(2099, 1, 1))}
        ),
        "quiet hours start == end": ConsentChanges(
            quiet_hours=(time(22), time(22), "Europe/Berlin")
        ),
        "quiet hours as strings": ConsentChanges(quiet_hours=("22:00", "07:00", "Europe/Berlin")),
    }


INVALID = [
    "unknown channel",
    "unknown topic channel",
    "unknown topic",
    "expiry in the past",
    "cap below 0",
    "cap above 1000",
    "unknown vendor",
    "naive expiry",
    "quiet hours start == end",
    "quiet hours as strings",
]


@pytest.mark.parametrize("case", INVALID)
def test_invalid_input_is_refused_and_changes_nothing(app: Flask, world: World, case: str) -> None:
    with app.app_context():
        # Something already stored, so "unchanged" is more than "empty".
        save(
            world.user_id,
            ConsentChanges(
                channels={"post": False},
                topics={(world.news, "email"): TopicChoice(State.GRANTED)},
            ),
        )
        db.session.commit()
        before = state_of_everything()
        with pytest.raises(ConsentError):
            save(world.user_id, _invalid_changes(world)[case])
        db.session.rollback()
        assert state_of_everything() == before


def test_a_failure_in_the_middle_leaves_nothing_of_the_first_changes(
    app: Flask, world: World
) -> None:
    with app.app_context():
        save(
            world.user_id, ConsentChanges(topics={(world.news, "sms"): TopicChoice(State.GRANTED)})
        )
        db.session.commit()
        before = state_of_everything()
        changes = ConsentChanges(
            channels={"email": False},
            quiet_hours=(time(21, 0), time(8, 0), "Australia/Sydney"),
            vendors={world.vendor_id: VendorSettings(blocked=True)},
            topics={
                (world.news, "sms"): TopicChoice(State.WITHDRAWN),  # valid, applied first
                (world.billing, "fax"): TopicChoice(State.GRANTED),  # then this one fails
            },
        )
        with pytest.raises(ConsentError, match="channel"):
            save(world.user_id, changes)
        db.session.rollback()
        assert state_of_everything() == before
        consent = db.session.get(TopicConsent, (world.user_id, world.news, "sms"))
        assert consent is not None and consent.state == "granted"
        # The chain is intact and the next real change continues it without a gap.
        seq, digest = head()
        save(world.user_id, ConsentChanges(channels={"email": False}))
        db.session.commit()
        (event,) = events_after(seq)
        assert (event.seq, event.prev_hash) == (seq + 1, digest)


# --- notice versions --------------------------------------------------------------------------


def test_the_notice_version_seen_is_kept_when_the_vendor_rewords(app: Flask, world: World) -> None:
    with app.app_context():
        seq0, _ = head()
        (receipt,) = save(
            world.user_id,
            ConsentChanges(topics={(world.news, "email"): TopicChoice(State.GRANTED)}),
        )
        db.session.commit()
        (event,) = events_after(seq0)
        consent = db.session.get(TopicConsent, (world.user_id, world.news, "email"))
        assert consent is not None
        assert consent.notice_version == event.notice_version == 1
        assert payload(receipt)["cmrVault"]["changes"][0]["noticeVersion"] == 1

        topic = db.session.get(ContactTopic, world.news)
        assert topic is not None
        vendor = topic.vendor
        declare_topic(db.session, vendor, "news", "marketing", "Weekly news and offers.")
        db.session.commit()
        assert topic.version == 2

    with app.app_context():
        consent = db.session.get(TopicConsent, (world.user_id, world.news, "email"))
        topic = db.session.get(ContactTopic, world.news)
        assert consent is not None and topic is not None
        assert consent.notice_version == 1 < topic.version  # so the UI can ask again
        loaded = load_consents(db.session, [world.user_id], datetime.now(UTC))[world.user_id]
        assert loaded.topics[(world.vendor_id, "news", "email")].notice_version == 1

        # Consenting again to the new wording is a real change, recorded with version 2.
        seq1, _ = head()
        (receipt,) = save(
            world.user_id,
            ConsentChanges(topics={(world.news, "email"): TopicChoice(State.GRANTED)}),
        )
        db.session.commit()
        (event,) = events_after(seq1)
        assert event.notice_version == 2
        assert json.loads(event.prev_state)["notice_version"] == 1
        assert json.loads(event.new_state)["notice_version"] == 2
        assert payload(receipt)["cmrVault"]["changes"][0]["noticeVersion"] == 2
        assert (
            db.session.get(TopicConsent, (world.user_id, world.news, "email")).notice_version == 2
        )


# --- the ledger subject -----------------------------------------------------------------------


def test_the_ledger_subject_is_the_stable_pseudonym(app: Flask, world: World) -> None:
    with app.app_context():
        seq0, _ = head()
        first = save(world.user_id, ConsentChanges(channels={"sms": False}))
        second = save(
            world.user_id, ConsentChanges(topics={(world.news, "post"): TopicChoice(State.GRANTED)})
        )
        other = save(world.other_user_id, ConsentChanges(channels={"sms": False}))
        db.session.commit()
        mine, theirs = subject_of(keys(), world.user_id), subject_of(keys(), world.other_user_id)
        events = events_after(seq0)
        assert [e.subject for e in events] == [mine, mine, theirs]
        assert mine != theirs
        for user_id, subject in ((world.user_id, mine), (world.other_user_id, theirs)):
            assert subject != user_id and user_id not in subject
            for vendor_id in (world.vendor_id, world.other_vendor_id):
                assert subject != pairwise_sub(keys(), vendor_id, user_id)
        for receipt in (*first, *second):
            assert payload(receipt)["piiPrincipalId"] == mine
        assert payload(other[0])["piiPrincipalId"] == theirs
        # Stable: the same tomorrow (it depends on nothing but the key and the customer).
        assert subject_of(keys(), world.user_id) == mine


def test_quiet_hours_in_an_unknown_time_zone_are_refused(app: Flask, world: World) -> None:
    with app.app_context():
        before = state_of_everything()
        try:
            save(world.user_id, ConsentChanges(quiet_hours=(time(22), time(7), "Mars/Olympus")))
        except ConsentError:
            pass
        else:
            raise AssertionError("an unknown time zone was accepted")
        db.session.rollback()
        assert state_of_everything() == before
