"""The consent decision: a pure, deterministic function of settings, relationship and
send history. No database, no clock, no I/O: everything it needs is passed in.

Precedence, first match wins:

1. account closed or unknown subject        -> deny
2. channel switched off globally            -> deny
3. vendor blocked                           -> deny
4. explicit vendor x channel x topic setting: withdrawn -> deny; granted but expired
   -> deny; granted -> allow
5. purpose ``service`` with an active grant  -> allow
6. otherwise                                -> deny (opt-in by default)

An allow then passes the address rule: on a channel whose address the vault keeps and
confirms (``ADDRESS_CHANNELS``: e-mail, and the phone number for text messages and calls),
no confirmed address -> deny (``unconfirmed_address``). Then the time rules: inside quiet
hours -> defer to their end; frequency cap reached -> deny.

Why the address rule sits there, after the customer's choices and before the time rules:
the customer's own decisions are what an auditor reads first, so a withdrawal always reads
as ``withdrawn`` (and a contact nobody consented to as ``no_consent``), whether or not the
number behind it is confirmed; an unconfirmed address never masks or stands in for a
refusal. But it comes before quiet hours and caps: a consent given to an address nobody
proved to hold must not turn into a deferral that would be refused anyway when the quiet
hours end, nor be counted against a cap.

Post and push are outside the address rule: the vault cannot confirm a postal address
online (it is the customer's own declaration), and keeps no push address at all (a push
goes to the business's own app, which the customer installed).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

CHANNELS = ("email", "sms", "phone", "post", "push")
CHANNEL_NAMES = {
    "email": "e-mail",
    "sms": "text message",
    "phone": "phone call",
    "post": "post",
    "push": "push notification",
}


# The channels whose address the vault keeps and confirms before anyone may use it, and
# what that address is called in a reason.
ADDRESS_CHANNELS = {"email": "e-mail address", "sms": "phone number", "phone": "phone number"}


class Outcome(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    DEFER = "defer"


class Rule(enum.StrEnum):
    UNKNOWN_SUBJECT = "unknown_subject"
    ACCOUNT_CLOSED = "account_closed"
    CHANNEL_OFF = "channel_off"
    VENDOR_BLOCKED = "vendor_blocked"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    GRANTED = "granted"
    SERVICE_RELATIONSHIP = "service_relationship"
    NO_CONSENT = "no_consent"
    ADDRESS_UNCONFIRMED = "unconfirmed_address"
    QUIET_HOURS = "quiet_hours"
    CAP_DAY = "cap_reached_day"
    CAP_WEEK = "cap_reached_week"


class State(enum.StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class TopicSetting:
    state: State
    expires_at: datetime | None = None
    notice_version: int = 1


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    timezone: str

    def contains(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.timezone)).time().replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_end(self, at: datetime) -> datetime:
        """The first instant after ``at`` at which the local clock reaches (or, across a DST
        gap, jumps over) ``end`` and that lies outside the window (DST-safe)."""
        zone = ZoneInfo(self.timezone)
        day = at.astimezone(zone).date()
        candidates = []
        for offset in range(0, 3):
            wall = datetime.combine(day + timedelta(days=offset), self.end)
            first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
            second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
            candidates += [first, second]
            if first > second:
                # ``end`` does not exist that day (the clocks jump over it): the window
                # ends at the jump, which lies between the two readings of ``end``.
                candidates.append(_transition(zone, second, first))
        for instant in sorted(candidates):
            if instant > at and not self.contains(instant):
                return instant
        # Only reachable for pathological zones; step forward minute by minute.
        probe = at
        while self.contains(probe):
            probe += timedelta(minutes=1)
        return probe


def _transition(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The instant in ``(before, after]`` at which ``zone``'s UTC offset changes (zone
    transitions fall on whole seconds)."""

    def offset(second: int) -> timedelta | None:
        return datetime.fromtimestamp(second, UTC).astimezone(zone).utcoffset()

    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    start = offset(low)
    while high - low > 1:
        middle = (low + high) // 2
        if offset(middle) == start:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


@dataclass(frozen=True)
class Caps:
    per_day: int | None = None
    per_week: int | None = None


@dataclass(frozen=True)
class CustomerConsents:
    """Everything about one customer that a decision may depend on."""

    account_active: bool = True
    channels_off: frozenset[str] = frozenset()
    blocked_vendors: frozenset[str] = frozenset()
    # (vendor_id, topic name, channel) -> setting
    topics: Mapping[tuple[str, str, str], TopicSetting] = field(default_factory=dict)
    quiet_hours: QuietHours | None = None
    caps: Mapping[str, Caps] = field(default_factory=dict)  # vendor_id -> caps
    active_grant_vendors: frozenset[str] = frozenset()
    # (vendor_id, channel) -> times of messages already sent
    sends: Mapping[tuple[str, str], Sequence[datetime]] = field(default_factory=dict)
    # The channels of ``ADDRESS_CHANNELS`` on which the customer has a confirmed address
    # (the vault's snapshot: e-mail always, sms and phone once the number is confirmed).
    # Empty by default: whoever builds a customer without saying is refused, not let through.
    confirmed_channels: frozenset[str] = frozenset()


@dataclass(frozen=True)
class VendorRef:
    """The business asking to make contact, as ``decide`` needs it: its id, and the name
    its reasons use."""

    id: str
    name: str


@dataclass(frozen=True)
class Topic:
    name: str
    purpose: str  # service, marketing, research, other


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    rule: Rule
    reason: str
    not_before: datetime | None = None


def _deny(rule: Rule, reason: str) -> Decision:
    return Decision(Outcome.DENY, rule, reason)


def decide(
    customer: CustomerConsents | None,
    vendor: VendorRef,
    channel: str,
    topic: Topic,
    at: datetime,
) -> Decision:
    """May ``vendor`` contact ``customer`` on ``channel`` about ``topic`` at ``at``?"""
    vendor_id, vendor_name = vendor.id, vendor.name
    if at.tzinfo is None:
        raise ValueError("decide needs an aware datetime")
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    how = CHANNEL_NAMES[channel]
    if customer is None:
        return _deny(Rule.UNKNOWN_SUBJECT, "There is no such customer.")
    if not customer.account_active:
        return _deny(Rule.ACCOUNT_CLOSED, "The customer closed their account.")
    if channel in customer.channels_off:
        return _deny(Rule.CHANNEL_OFF, f"You switched off every contact by {how}.")
    if vendor_id in customer.blocked_vendors:
        return _deny(Rule.VENDOR_BLOCKED, f"You blocked all contact from {vendor_name}.")

    setting = customer.topics.get((vendor_id, topic.name, channel))
    if setting is not None:
        if setting.state == State.WITHDRAWN:
            return _deny(
                Rule.WITHDRAWN,
                f"You withdrew consent for {vendor_name} to contact you by {how} about "
                f"{topic.name}.",
            )
        if setting.expires_at is not None and setting.expires_at <= at:
            return _deny(
                Rule.EXPIRED,
                f"Your consent for {vendor_name} to contact you by {how} about {topic.name} "
                f"expired on {setting.expires_at:%Y-%m-%d}.",
            )
        allowed = Decision(
            Outcome.ALLOW,
            Rule.GRANTED,
            f"You allowed {vendor_name} to contact you by {how} about {topic.name}.",
        )
    elif topic.purpose == "service" and vendor_id in customer.active_grant_vendors:
        allowed = Decision(
            Outcome.ALLOW,
            Rule.SERVICE_RELATIONSHIP,
            f"{topic.name} is a service message and you have an active connection with "
            f"{vendor_name}.",
        )
    else:
        return _deny(
            Rule.NO_CONSENT,
            f"You have not allowed {vendor_name} to contact you by {how} about {topic.name}.",
        )
    address = ADDRESS_CHANNELS.get(channel)
    if address is not None and channel not in customer.confirmed_channels:
        return _deny(
            Rule.ADDRESS_UNCONFIRMED,
            f"There is no confirmed {address} in your profile to reach you by {how}.",
        )
    return _time_rules(customer, vendor_id, vendor_name, channel, at, allowed)


def _time_rules(
    customer: CustomerConsents,
    vendor_id: str,
    vendor_name: str,
    channel: str,
    at: datetime,
    allowed: Decision,
) -> Decision:
    quiet = customer.quiet_hours
    if quiet is not None and quiet.contains(at):
        return Decision(
            Outcome.DEFER,
            Rule.QUIET_HOURS,
            f"It is within your quiet hours ({quiet.start:%H:%M}-{quiet.end:%H:%M} "
            f"{quiet.timezone}); the message waits until they end.",
            not_before=quiet.next_end(at),
        )
    caps = customer.caps.get(vendor_id)
    if caps is not None:
        sent = customer.sends.get((vendor_id, channel), ())
        how = CHANNEL_NAMES[channel]
        if caps.per_day is not None:
            today = sum(1 for t in sent if at - timedelta(days=1) < t <= at)
            if today >= caps.per_day:
                return _deny(
                    Rule.CAP_DAY,
                    f"{vendor_name} already sent you {today} {how} message(s) in the last "
                    f"24 hours, your limit.",
                )
        if caps.per_week is not None:
            week = sum(1 for t in sent if at - timedelta(days=7) < t <= at)
            if week >= caps.per_week:
                return _deny(
                    Rule.CAP_WEEK,
                    f"{vendor_name} already sent you {week} {how} message(s) in the last "
                    f"7 days, your limit.",
                )
    return allowed
