"""Load what ``decide`` needs from the database, for one customer or for a whole batch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, time, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from consent.engine import Caps, CustomerConsents, QuietHours, State, TopicSetting
from consent.models import (
    ChannelSetting,
    ConsentPreferences,
    ContactRecord,
    TopicConsent,
    VendorPreference,
)
from vault.accounts.models import AccountStatus, User
from vault.oauth.models import Grant
from vault.vendors.models import ContactTopic

CHUNK = 500


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def load_consents(
    session: Session, user_ids: Iterable[str], now: datetime, vendor_id: str | None = None
) -> dict[str, CustomerConsents]:
    """Settings of many customers in a handful of queries per 500 customers.

    With ``vendor_id``, only what concerns that vendor is loaded (what a batch check needs).
    Unknown ids are simply absent from the result.
    """
    ids = list(dict.fromkeys(user_ids))
    channels_off: dict[str, set[str]] = defaultdict(set)
    blocked: dict[str, set[str]] = defaultdict(set)
    caps: dict[str, dict[str, Caps]] = defaultdict(dict)
    topics: dict[str, dict[tuple[str, str, str], TopicSetting]] = defaultdict(dict)
    quiet: dict[str, QuietHours] = {}
    grants: dict[str, set[str]] = defaultdict(set)
    sends: dict[str, dict[tuple[str, str], list[datetime]]] = defaultdict(lambda: defaultdict(list))
    active: dict[str, bool] = {}

    for chunk in _chunks(ids):
        for user_id, status in session.execute(
            select(User.id, User.status).where(User.id.in_(chunk))
        ):
            active[user_id] = status == AccountStatus.ACTIVE
        for user_id, channel in session.execute(
            select(ChannelSetting.user_id, ChannelSetting.channel).where(
                ChannelSetting.user_id.in_(chunk), ChannelSetting.enabled.is_(False)
            )
        ):
            channels_off[user_id].add(channel)
        prefs = select(VendorPreference).where(VendorPreference.user_id.in_(chunk))
        if vendor_id is not None:
            prefs = prefs.where(VendorPreference.vendor_id == vendor_id)
        for pref in session.scalars(prefs):
            if pref.blocked:
                blocked[pref.user_id].add(pref.vendor_id)
            if pref.cap_per_day is not None or pref.cap_per_week is not None:
                caps[pref.user_id][pref.vendor_id] = Caps(pref.cap_per_day, pref.cap_per_week)
        consents = (
            select(TopicConsent, ContactTopic.name)
            .join(ContactTopic, ContactTopic.id == TopicConsent.topic_id)
            .where(TopicConsent.user_id.in_(chunk))
        )
        if vendor_id is not None:
            consents = consents.where(TopicConsent.vendor_id == vendor_id)
        for consent, topic_name in session.execute(consents):
            topics[consent.user_id][(consent.vendor_id, topic_name, consent.channel)] = (
                TopicSetting(State(consent.state), consent.expires_at, consent.notice_version)
            )
        for pref in session.scalars(
            select(ConsentPreferences).where(
                ConsentPreferences.user_id.in_(chunk), ConsentPreferences.quiet_start.is_not(None)
            )
        ):
            quiet[pref.user_id] = QuietHours(
                time.fromisoformat(pref.quiet_start),
                time.fromisoformat(pref.quiet_end),
                pref.timezone,
            )
        live = select(Grant.user_id, Grant.vendor_id).where(
            Grant.user_id.in_(chunk),
            Grant.revoked_at.is_(None),
            or_(Grant.expires_at.is_(None), Grant.expires_at > now),
        )
        if vendor_id is not None:
            live = live.where(Grant.vendor_id == vendor_id)
        for user_id, grant_vendor in session.execute(live):
            grants[user_id].add(grant_vendor)
        history = select(
            ContactRecord.user_id, ContactRecord.vendor_id, ContactRecord.channel, ContactRecord.at
        ).where(ContactRecord.user_id.in_(chunk), ContactRecord.at > now - timedelta(days=7))
        if vendor_id is not None:
            history = history.where(ContactRecord.vendor_id == vendor_id)
        for user_id, sent_vendor, channel, at in session.execute(history):
            sends[user_id][(sent_vendor, channel)].append(at)

    return {
        user_id: CustomerConsents(
            account_active=is_active,
            channels_off=frozenset(channels_off[user_id]),
            blocked_vendors=frozenset(blocked[user_id]),
            topics=topics[user_id],
            quiet_hours=quiet.get(user_id),
            caps=caps[user_id],
            active_grant_vendors=frozenset(grants[user_id]),
            sends={key: tuple(sorted(times)) for key, times in sends[user_id].items()},
        )
        for user_id, is_active in active.items()
    }
