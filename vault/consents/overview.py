"""What the /consents page shows: the customer's settings and, per business, the decision
``consent.engine.decide`` reaches right now for every topic x channel (with its reason)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent import engine
from consent.engine import CHANNELS, Decision, Outcome, Rule
from vault.consents.models import (
    ChannelSetting,
    ConsentPreferences,
    ConsentRequest,
    TopicConsent,
    VendorPreference,
)
from vault.consents.operations import pending_requests
from vault.consents.snapshot import load_consents
from vault.oauth.models import Grant
from vault.vendors.models import ContactTopic, Vendor


def topic_field(topic_id: str, channel: str) -> str:
    return f"topic-{topic_id}-{channel}"


def expires_field(topic_id: str, channel: str) -> str:
    return f"expires-{topic_id}-{channel}"


@dataclass(frozen=True)
class Cell:
    topic: ContactTopic
    channel: str
    setting: TopicConsent | None
    decision: Decision

    @property
    def field(self) -> str:
        return topic_field(self.topic.id, self.channel)

    @property
    def expires_field(self) -> str:
        return expires_field(self.topic.id, self.channel)

    @property
    def state(self) -> str:
        return self.setting.state if self.setting is not None else "default"

    @property
    def expires(self) -> str:
        if self.setting is None or self.setting.expires_at is None:
            return ""
        return self.setting.expires_at.strftime("%Y-%m-%d")


@dataclass
class Business:
    vendor: Vendor
    connected: bool
    blocked: bool
    cap_per_day: int | None
    cap_per_week: int | None
    rows: list[tuple[ContactTopic, list[Cell]]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        tally = Counter(cell.decision.outcome for _, cells in self.rows for cell in cells)
        return {str(outcome): tally.get(outcome, 0) for outcome in Outcome}

    @property
    def bar(self) -> list[tuple[str, float, float, int]]:
        """Segments of a 100-wide stacked bar: (outcome, x, width, count)."""
        total = sum(self.counts.values())
        segments, x = [], 0.0
        for outcome, count in self.counts.items():
            if count:
                width = 100.0 * count / total
                segments.append((outcome, round(x, 2), round(width, 2), count))
                x += width
        return segments


@dataclass(frozen=True)
class Kept:
    """A requested topic x channel the customer already allows until a date of their own:
    approving keeps that date."""

    topic: ContactTopic
    channel: str
    until: datetime


@dataclass
class RequestView:
    request: ConsentRequest
    topics: list[ContactTopic]
    channels: list[str]
    kept: list[Kept] = field(default_factory=list)


@dataclass
class Overview:
    channels: dict[str, bool]
    quiet_start: str
    quiet_end: str
    timezone: str
    businesses: list[Business]
    requests: list[RequestView]
    now: datetime

    def business(self, vendor_id: str) -> Business | None:
        return next((b for b in self.businesses if b.vendor.id == vendor_id), None)

    @property
    def topics(self) -> dict[str, ContactTopic]:
        return {topic.id: topic for b in self.businesses for topic, _ in b.rows}

    @property
    def field_names(self) -> set[str]:
        """Every field the page shows an error next to."""
        names = {"channels", "quiet_start", "quiet_end", "timezone"}
        for business in self.businesses:
            vendor_id = business.vendor.id
            names.update({f"cap_day-{vendor_id}", f"cap_week-{vendor_id}"})
            for _, cells in business.rows:
                for cell in cells:
                    names.update({cell.field, cell.expires_field})
        return names

    @property
    def settings(self) -> dict[tuple[str, str], TopicConsent]:
        return {
            (cell.topic.id, cell.channel): cell.setting
            for b in self.businesses
            for _, cells in b.rows
            for cell in cells
            if cell.setting is not None
        }


def related_vendor_ids(session: Session, user_id: str) -> set[str]:
    """Every business the customer has or had a grant with, or a setting or request with."""
    ids: set[str] = set()
    for model in (Grant, VendorPreference, TopicConsent, ConsentRequest):
        ids.update(session.scalars(select(model.vendor_id).where(model.user_id == user_id)))
    return ids


def build(session: Session, user_id: str, now: datetime) -> Overview:
    switches = {
        row.channel: row.enabled
        for row in session.scalars(select(ChannelSetting).where(ChannelSetting.user_id == user_id))
    }
    prefs = session.get(ConsentPreferences, user_id)
    vendor_prefs = {
        row.vendor_id: row
        for row in session.scalars(
            select(VendorPreference).where(VendorPreference.user_id == user_id)
        )
    }
    consents = {
        (row.topic_id, row.channel): row
        for row in session.scalars(select(TopicConsent).where(TopicConsent.user_id == user_id))
    }
    snapshot = load_consents(session, [user_id], now).get(user_id)
    vendor_ids = related_vendor_ids(session, user_id)
    vendors = (
        list(
            session.scalars(
                select(Vendor).where(Vendor.id.in_(vendor_ids)).order_by(Vendor.name, Vendor.id)
            )
        )
        if vendor_ids
        else []
    )
    active = snapshot.active_grant_vendors if snapshot else frozenset()
    businesses = []
    for vendor in vendors:
        pref = vendor_prefs.get(vendor.id)
        business = Business(
            vendor=vendor,
            connected=vendor.id in active,
            blocked=bool(pref and pref.blocked),
            cap_per_day=pref.cap_per_day if pref else None,
            cap_per_week=pref.cap_per_week if pref else None,
        )
        who = engine.VendorRef(vendor.id, vendor.name)
        for topic in vendor.topics:
            what = engine.Topic(topic.name, topic.purpose)
            cells = [
                Cell(
                    topic,
                    channel,
                    consents.get((topic.id, channel)),
                    engine.decide(snapshot, who, channel, what, now),
                )
                for channel in CHANNELS
            ]
            business.rows.append((topic, cells))
        businesses.append(business)

    requests = [
        request_view(session, request, consents, now)
        for request in pending_requests(session, user_id, now)
    ]

    return Overview(
        channels={channel: switches.get(channel, True) for channel in CHANNELS},
        quiet_start=(prefs.quiet_start or "") if prefs else "",
        quiet_end=(prefs.quiet_end or "") if prefs else "",
        timezone=(prefs.timezone or "") if prefs else "",
        businesses=businesses,
        requests=requests,
        now=now,
    )


def request_view(
    session: Session,
    request: ConsentRequest,
    consents: dict[tuple[str, str], TopicConsent],
    now: datetime,
) -> RequestView:
    topics = [
        topic
        for topic_id in request.topics
        if (topic := session.get(ContactTopic, topic_id)) is not None
        and topic.vendor_id == request.vendor_id
    ]
    channels = [c for c in request.channels if c in CHANNELS]
    kept = [
        Kept(topic, channel, row.expires_at)
        for topic in topics
        for channel in channels
        if (row := consents.get((topic.id, channel))) is not None
        and row.state == "granted"
        and row.expires_at is not None
        and row.expires_at > now
    ]
    return RequestView(request, topics, channels, kept)


@dataclass(frozen=True)
class Line:
    """One requested topic x channel after the answer: the decision right now."""

    topic: ContactTopic
    channel: str
    decision: Decision
    until: datetime | None  # the customer's "allowed until" date, if any

    @property
    def allowed(self) -> bool:
        return self.decision.outcome != Outcome.DENY


@dataclass
class Answered:
    """What approving a request really changed: ``decide`` for every pair it named."""

    view: RequestView
    lines: list[Line]

    @property
    def all_allowed(self) -> bool:
        return all(line.allowed for line in self.lines)

    @property
    def channels_off(self) -> list[str]:
        """Channels switched off for every business that keep a requested pair refused."""
        off = {line.channel for line in self.lines if line.decision.rule == Rule.CHANNEL_OFF}
        return [c for c in CHANNELS if c in off]


def answered(session: Session, user_id: str, request: ConsentRequest, now: datetime) -> Answered:
    consents = {
        (row.topic_id, row.channel): row
        for row in session.scalars(select(TopicConsent).where(TopicConsent.user_id == user_id))
    }
    view = request_view(session, request, consents, now)
    snapshot = load_consents(session, [user_id], now, vendor_id=request.vendor_id).get(user_id)
    who = engine.VendorRef(request.vendor.id, request.vendor.name)
    lines = []
    for topic in view.topics:
        what = engine.Topic(topic.name, topic.purpose)
        for channel in view.channels:
            row = consents.get((topic.id, channel))
            lines.append(
                Line(
                    topic,
                    channel,
                    engine.decide(snapshot, who, channel, what, now),
                    row.expires_at if row is not None and row.state == "granted" else None,
                )
            )
    return Answered(view, lines)
