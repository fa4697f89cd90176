"""State changes of consent settings. Every change appends a ledger event and issues a
signed receipt in the caller's transaction: the change, its event and its receipt commit
together or not at all."""

from __future__ import annotations

import base64
import functools
import json
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent import ledger
from consent.engine import CHANNEL_NAMES, CHANNELS, State
from consent.receipts import ReceiptEvent, ReceiptPurpose
from vault.consents import ledger as ledger_store
from vault.consents import receipts
from vault.consents.models import (
    ChannelSetting,
    ConsentPreferences,
    ConsentReceipt,
    ConsentRequest,
    TopicConsent,
    VendorPreference,
)
from vault.consents.snapshot import request_refusals
from vault.crypto.keyed_hash import pseudonym
from vault.crypto.keyring import KeyProvider
from vault.errors import VaultError
from vault.models import utcnow
from vault.oauth.models import Grant
from vault.oauth.operations import revoke_grant
from vault.oauth.scopes import ALL_SCOPES, claim_names
from vault.vendors.models import ContactTopic, Vendor
from vault.webhooks import operations as webhooks

VAULT_CONTROLLER = "CMR Vault (your own settings)"
# A consent request's status once the customer blocked the business or ended the
# connection before answering it.
CLOSED = "closed"


def subject_of(keys: KeyProvider, user_id: str) -> str:
    """The customer's stable ledger pseudonym (never any vendor's pairwise sub)."""
    return pseudonym(keys.secret("pseudonym"), "ledger", user_id)


class ConsentError(VaultError, ValueError):
    """A consent change that cannot be accepted; the message says why."""

    status = 409
    code = "consent-change-refused"
    title = "Consent change refused"
    oauth_error = "invalid_request"


@dataclass(frozen=True)
class VendorSettings:
    blocked: bool = False
    cap_per_day: int | None = None
    cap_per_week: int | None = None


@dataclass(frozen=True)
class TopicChoice:
    state: State | None  # None: no explicit setting (back to the default)
    expires_at: datetime | None = None


@dataclass
class ConsentChanges:
    """What one save asks for; anything left as None is not touched."""

    channels: dict[str, bool] | None = None
    quiet_hours: tuple[time, time, str] | None = None
    clear_quiet_hours: bool = False
    vendors: dict[str, VendorSettings] = field(default_factory=dict)
    topics: dict[tuple[str, str], TopicChoice] = field(default_factory=dict)  # (topic_id, channel)


@dataclass
class _Recorder:
    session: Session
    keys: KeyProvider
    user_id: str
    actor: str
    source: str
    subject: str
    issued: list[ConsentReceipt] = field(default_factory=list)
    # When set, events are collected here for one combined receipt instead of one each.
    batch: list[tuple[ReceiptPurpose, ReceiptEvent]] | None = None

    def record(
        self,
        event_type: str,
        *,
        prev: Any,
        new: Any,
        purpose: str,
        category: str,
        state: str,
        vendor: Vendor | None = None,
        channel: str | None = None,
        topic: str | None = None,
        notice_version: int | None = None,
        termination: str = "until you change it in your vault",
    ) -> None:
        event = ledger_store.append(
            self.session,
            event_type=event_type,
            subject=self.subject,
            actor=self.actor,
            source=self.source,
            vendor_id=vendor.id if vendor else None,
            channel=channel,
            topic=topic,
            prev_state=prev,
            new_state=new,
            notice_version=notice_version,
        )
        if vendor is not None:
            # The business's webhook, in this transaction: queued if and only if the
            # change commits.
            webhooks.enqueue(
                self.session,
                self.keys,
                user_id=self.user_id,
                vendor_id=vendor.id,
                seq=event.seq,
                event_type=event_type,
                channel=channel,
                topic=topic,
                new_state=new,
            )
        receipt_purpose = ReceiptPurpose(
            purpose=purpose,
            category=category,
            consent_type="EXPLICIT",
            channel=channel,
            state=state,
            notice_version=notice_version,
            termination=termination,
            topic=topic,
        )
        receipt_event = ReceiptEvent(event.seq, event.hash, event_type)
        if self.batch is not None:
            self.batch.append((receipt_purpose, receipt_event))
            return
        self.issued.append(
            receipts.issue(
                self.session,
                self.keys,
                user_id=self.user_id,
                vendor_id=vendor.id if vendor else None,
                kind="consent",
                subject=self.subject,
                controller_name=vendor.name if vendor else VAULT_CONTROLLER,
                policy_url=vendor.privacy_policy_url if vendor else None,
                collection_method=f"vault {self.source}",
                purposes=[receipt_purpose],
                events=[receipt_event],
            )
        )


def _fmt(value: time | None) -> str | None:
    return value.strftime("%H:%M") if value is not None else None


def save_consents(
    session: Session,
    keys: KeyProvider,
    user_id: str,
    changes: ConsentChanges,
    *,
    source: str = "ui",
    actor: str = "customer",
) -> list[ConsentReceipt]:
    """Apply one save; only real changes produce events and receipts. A refused save
    (``ConsentError``) is refused before its first write, so it leaves nothing behind, not
    even in the session the page is rendered from next."""
    quiet = None if changes.clear_quiet_hours else changes.quiet_hours
    _check(session, changes, quiet)
    recorder = _Recorder(session, keys, user_id, actor, source, subject_of(keys, user_id))
    if changes.channels:
        _save_channels(recorder, changes.channels)
    if changes.quiet_hours is not None or changes.clear_quiet_hours:
        _save_quiet_hours(recorder, quiet)
    for vendor_id, settings in changes.vendors.items():
        _save_vendor(recorder, vendor_id, settings)
    for (topic_id, channel), choice in changes.topics.items():
        _save_topic(recorder, topic_id, channel, choice)
    session.flush()
    return recorder.issued


def _check(session: Session, changes: ConsentChanges, quiet: tuple[time, time, str] | None) -> None:
    """Every refusal of ``save_consents``, in the order the save applies its parts."""
    for channel in changes.channels or {}:
        if channel not in CHANNELS:
            raise ConsentError(f"unknown channel {channel!r}")
    if quiet is not None:
        if not all(isinstance(t, time) for t in quiet[:2]):
            raise ConsentError("quiet hours need a start and an end time")
        if quiet[2] not in _timezones():
            # Stored, an unknown zone would make every later decision for the customer fail.
            raise ConsentError(f"unknown time zone {quiet[2]!r}")
        if _fmt(quiet[0]) == _fmt(quiet[1]):
            raise ConsentError("quiet hours must start and end at different times")
    for vendor_id, settings in changes.vendors.items():
        _vendor(session, vendor_id)
        for cap in (settings.cap_per_day, settings.cap_per_week):
            if cap is not None and not 0 <= cap <= 1000:
                raise ConsentError("a frequency cap is a whole number from 0 to 1000")
    for (topic_id, channel), choice in changes.topics.items():
        if channel not in CHANNELS:
            raise ConsentError(f"unknown channel {channel!r}")
        if session.get(ContactTopic, topic_id) is None:
            raise ConsentError("unknown topic")
        if choice.expires_at is not None:
            if choice.expires_at.tzinfo is None:
                raise ConsentError("an expiry needs a time zone (UTC)")
            if choice.expires_at <= utcnow():
                raise ConsentError("an expiry date must lie in the future")


def _save_channels(recorder: _Recorder, channels: dict[str, bool]) -> None:
    session = recorder.session
    for channel, enabled in channels.items():
        row = session.get(ChannelSetting, (recorder.user_id, channel))
        before = row.enabled if row is not None else True
        if before == enabled:
            continue
        if row is None:
            session.add(ChannelSetting(user_id=recorder.user_id, channel=channel, enabled=enabled))
        else:
            row.enabled = enabled
        recorder.record(
            "channel_switched",
            prev={"enabled": before},
            new={"enabled": enabled},
            purpose=f"any contact by {CHANNEL_NAMES[channel]}",
            category="all",
            state="granted" if enabled else "withdrawn",
            channel=channel,
        )


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _save_quiet_hours(recorder: _Recorder, quiet: tuple[time, time, str] | None) -> None:
    session = recorder.session
    row = session.get(ConsentPreferences, recorder.user_id)
    before = (
        {"start": row.quiet_start, "end": row.quiet_end, "timezone": row.timezone}
        if row is not None and row.quiet_start
        else None
    )
    after = (
        {"start": _fmt(quiet[0]), "end": _fmt(quiet[1]), "timezone": quiet[2]} if quiet else None
    )
    if before == after:
        return
    if row is None:
        row = ConsentPreferences(user_id=recorder.user_id)
        session.add(row)
    row.quiet_start = after["start"] if after else None
    row.quiet_end = after["end"] if after else None
    row.timezone = after["timezone"] if after else None
    recorder.record(
        "quiet_hours_set",
        prev=before,
        new=after,
        purpose="quiet hours for every business",
        category="all",
        state="granted" if after is None else "restricted",
    )


def _vendor(session: Session, vendor_id: str) -> Vendor:
    vendor = session.get(Vendor, vendor_id)
    if vendor is None:
        raise ConsentError("unknown business")
    return vendor


def _save_vendor(recorder: _Recorder, vendor_id: str, settings: VendorSettings) -> None:
    session = recorder.session
    vendor = _vendor(session, vendor_id)
    row = session.get(VendorPreference, (recorder.user_id, vendor_id))
    before = VendorSettings(row.blocked, row.cap_per_day, row.cap_per_week) if row else None
    before = before or VendorSettings()
    if before == settings:
        return
    if row is None:
        row = VendorPreference(user_id=recorder.user_id, vendor_id=vendor_id)
        session.add(row)
    row.blocked, row.cap_per_day, row.cap_per_week = (
        settings.blocked,
        settings.cap_per_day,
        settings.cap_per_week,
    )
    if settings.blocked and not before.blocked:
        close_requests(session, recorder.user_id, vendor_id)
    if before.blocked != settings.blocked:
        recorder.record(
            "vendor_blocked" if settings.blocked else "vendor_unblocked",
            prev={"blocked": before.blocked},
            new={"blocked": settings.blocked},
            purpose=f"any contact from {vendor.name}",
            category="all",
            state="withdrawn" if settings.blocked else "granted",
            vendor=vendor,
        )
    caps_before = {"per_day": before.cap_per_day, "per_week": before.cap_per_week}
    caps_after = {"per_day": settings.cap_per_day, "per_week": settings.cap_per_week}
    if caps_before != caps_after:
        recorder.record(
            "caps_set",
            prev=caps_before,
            new=caps_after,
            purpose=f"how often {vendor.name} may contact you",
            category="all",
            state="restricted",
            vendor=vendor,
        )


def _save_topic(recorder: _Recorder, topic_id: str, channel: str, choice: TopicChoice) -> None:
    session = recorder.session
    topic = session.get(ContactTopic, topic_id)
    assert topic is not None  # checked by _check
    row = session.get(TopicConsent, (recorder.user_id, topic_id, channel))
    before = (
        {
            "state": row.state,
            "expires_at": ledger.timestamp(row.expires_at) if row.expires_at else None,
            "notice_version": row.notice_version,
        }
        if row is not None
        else None
    )
    if choice.state is None:
        after = None
    else:
        after = {
            "state": str(choice.state),
            "expires_at": ledger.timestamp(choice.expires_at) if choice.expires_at else None,
            "notice_version": topic.version,
        }
    if before == after:
        return
    if after is None:
        session.delete(row)
    else:
        if row is None:
            row = TopicConsent(
                user_id=recorder.user_id,
                topic_id=topic_id,
                channel=channel,
                vendor_id=topic.vendor_id,
            )
            session.add(row)
        row.state = str(choice.state)
        row.expires_at = choice.expires_at
        row.notice_version = topic.version
        row.source = recorder.source
    event_type = {None: "topic_cleared", "granted": "topic_granted", "withdrawn": "topic_withdrawn"}
    recorder.record(
        event_type[after["state"] if after else None],
        prev=before,
        new=after,
        purpose=topic.name,
        category=topic.purpose,
        state=after["state"] if after else "default",
        vendor=topic.vendor,
        channel=channel,
        topic=topic.name,
        notice_version=topic.version,
        termination=(
            f"expires {choice.expires_at:%Y-%m-%d}"
            if choice.expires_at
            else "until you withdraw it in your vault"
        ),
    )


def list_receipts(session: Session, user_id: str) -> list[ConsentReceipt]:
    return list(
        session.scalars(
            select(ConsentReceipt)
            .where(ConsentReceipt.user_id == user_id)
            .order_by(ConsentReceipt.created_at.desc(), ConsentReceipt.ledger_seq.desc())
        )
    )


def get_receipt(session: Session, user_id: str, receipt_id: str) -> ConsentReceipt | None:
    """One of the customer's own receipts; another customer's id is simply not found."""
    receipt = session.get(ConsentReceipt, receipt_id)
    if receipt is None or receipt.user_id != user_id:
        return None
    return receipt


def decode_receipt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The protected header and payload of a compact JWS, for reading (not verifying)."""

    def part(segment: str) -> dict[str, Any]:
        padded = segment + "=" * (-len(segment) % 4)
        return json.loads(base64.urlsafe_b64decode(padded))

    header, payload, _signature = token.split(".")
    return part(header), part(payload)


def answer_request(
    session: Session, keys: KeyProvider, user_id: str, request_id: str, *, approve: bool
) -> tuple[ConsentRequest, list[ConsentReceipt]]:
    """Approve (grant exactly the proposed topic x channel pairs) or decline a business's
    consent request; the answer and any consent changes share the caller's transaction."""
    request = session.get(ConsentRequest, request_id)
    if request is None or request.user_id != user_id:
        raise LookupError("no such consent request")
    if request.status == CLOSED:
        raise ConsentError(
            "This request was closed when you blocked the business or ended the connection."
        )
    if request.status != "pending":
        raise ConsentError("You already answered this request.")
    now = utcnow()
    issued: list[ConsentReceipt] = []
    if approve:
        if request_refusals(session, user_id, now, [request.vendor_id]):
            raise ConsentError(
                f"You blocked {request.vendor.name} or ended your connection with it: "
                "its requests are closed."
            )
        changes = ConsentChanges()
        for topic_id in request.topics:
            topic = session.get(ContactTopic, topic_id)
            # A business may only ask about its own topics.
            if topic is None or topic.vendor_id != request.vendor_id:
                raise ConsentError("The request names a topic this business did not declare.")
            for channel in request.channels:
                if channel not in CHANNELS:
                    raise ConsentError(f"The request names an unknown channel {channel!r}.")
                changes.topics[(topic_id, channel)] = TopicChoice(
                    State.GRANTED, kept_expiry(session, user_id, topic_id, channel, now)
                )
        issued = save_consents(session, keys, user_id, changes, source="ui")
    else:
        # Nothing changes, but the answer is the customer's: the ledger keeps it, so the
        # business can later be shown to have been told no (and when).
        names = []
        for topic_id in request.topics:
            topic = session.get(ContactTopic, topic_id)
            names.append(topic.name if topic is not None else topic_id)
        ledger_store.append(
            session,
            event_type="consent_request_declined",
            subject=subject_of(keys, user_id),
            actor="customer",
            source="ui",
            vendor_id=request.vendor_id,
            prev_state={"request": request.id, "status": "pending"},
            new_state={
                "request": request.id,
                "status": "declined",
                "topics": sorted(names),
                "channels": sorted(request.channels),
            },
        )
    request.status = "approved" if approve else "declined"
    request.answered_at = utcnow()
    session.flush()
    return request, issued


def kept_expiry(
    session: Session, user_id: str, topic_id: str, channel: str, now: datetime
) -> datetime | None:
    """The customer's own "allowed until" date on an allowed topic x channel, if it still
    lies ahead: approving a business's request keeps it rather than silently making the
    consent open-ended. (A date that has passed ended that consent; a new yes starts
    without one.)"""
    row = session.get(TopicConsent, (user_id, topic_id, channel))
    if (
        row is not None
        and row.state == str(State.GRANTED)
        and row.expires_at is not None
        and row.expires_at > now
    ):
        return row.expires_at
    return None


def pending_requests(
    session: Session, user_id: str, now: datetime | None = None
) -> list[ConsentRequest]:
    """Requests waiting for the customer's answer; none from a business the customer
    blocked or whose connection they ended (``vault.consents.snapshot.request_refusals``)."""
    rows = list(
        session.scalars(
            select(ConsentRequest)
            .where(ConsentRequest.user_id == user_id, ConsentRequest.status == "pending")
            .order_by(ConsentRequest.created_at)
        )
    )
    if not rows:
        return rows
    refused = request_refusals(session, user_id, now or utcnow(), {row.vendor_id for row in rows})
    return [row for row in rows if row.vendor_id not in refused]


def close_requests(session: Session, user_id: str, vendor_id: str) -> list[ConsentRequest]:
    """Close the business's pending requests: the customer blocked it or ended the
    connection, so they will not be answered (the vendor API shows them as closed)."""
    rows = list(
        session.scalars(
            select(ConsentRequest).where(
                ConsentRequest.user_id == user_id,
                ConsentRequest.vendor_id == vendor_id,
                ConsentRequest.status == "pending",
            )
        )
    )
    now = utcnow()
    for row in rows:
        row.status = CLOSED
        row.answered_at = now
    session.flush()
    return rows


def end_relationship(
    session: Session,
    keys: KeyProvider,
    user_id: str,
    grant: Grant,
    stop_contact: bool,
    *,
    actor: str = "customer",
    source: str = "ui",
) -> ConsentReceipt | None:
    """Revoke a connection and, if asked, stop all contact from the business too (block it
    and withdraw every topic consent given to it). Every step is a ledger event; one
    termination receipt lists everything that ended. None when nothing was left to end."""
    if grant.user_id != user_id:
        raise ConsentError("not your connection")
    vendor = grant.vendor
    batch: list[tuple[ReceiptPurpose, ReceiptEvent]] = []
    recorder = _Recorder(
        session, keys, user_id, actor, source, subject_of(keys, user_id), batch=batch
    )
    if grant.revoked_at is None:
        scopes = grant.scopes
        revoke_grant(session, grant, reason="customer")
        event = ledger_store.append(
            session,
            event_type="grant_revoked",
            subject=recorder.subject,
            actor=actor,
            source=source,
            vendor_id=vendor.id,
            prev_state={"grant": grant.id, "scopes": scopes, "revoked": False},
            new_state={"grant": grant.id, "scopes": [], "revoked": True},
        )
        webhooks.enqueue(
            session,
            keys,
            user_id=user_id,
            vendor_id=vendor.id,
            seq=event.seq,
            event_type="grant_revoked",
            channel=None,
            topic=None,
            new_state={"revoked": True},
        )
        ended = f"ended on {grant.revoked_at:%Y-%m-%d} when you revoked the connection"
        for scope in scopes:
            info = ALL_SCOPES.get(scope)
            batch.append(
                (
                    ReceiptPurpose(
                        purpose=f"{vendor.name} may read: {info.title if info else scope}",
                        category="data-sharing",
                        consent_type="EXPLICIT",
                        channel=None,
                        state="ended",
                        notice_version=None,
                        termination=ended,
                        pii_categories=claim_names([scope]),
                    ),
                    ReceiptEvent(event.seq, event.hash, "grant_revoked"),
                )
            )
        if request_refusals(session, user_id, utcnow(), [vendor.id]):
            close_requests(session, user_id, vendor.id)  # the last connection ended
    if stop_contact:
        row = session.get(VendorPreference, (user_id, vendor.id))
        _save_vendor(
            recorder,
            vendor.id,
            VendorSettings(
                blocked=True,
                cap_per_day=row.cap_per_day if row else None,
                cap_per_week=row.cap_per_week if row else None,
            ),
        )
        granted = session.scalars(
            select(TopicConsent)
            .where(
                TopicConsent.user_id == user_id,
                TopicConsent.vendor_id == vendor.id,
                TopicConsent.state == str(State.GRANTED),
            )
            .order_by(TopicConsent.topic_id, TopicConsent.channel)
        ).all()
        for consent in granted:
            _save_topic(recorder, consent.topic_id, consent.channel, TopicChoice(State.WITHDRAWN))
    session.flush()
    if not batch:
        return None
    events = {event.seq: event for _, event in batch}
    return receipts.issue(
        session,
        keys,
        user_id=user_id,
        vendor_id=vendor.id,
        kind="termination",
        subject=recorder.subject,
        controller_name=vendor.name,
        policy_url=vendor.privacy_policy_url,
        collection_method=f"vault {source}",
        purposes=[purpose for purpose, _ in batch],
        events=[events[seq] for seq in sorted(events)],
    )
