"""Property-based tests of the pure consent decision ``consent.engine.decide``.

The strategies build whole customers (settings, relationships, send history), vendors,
topics, channels and aware instants across 2025-2027, with extra weight on the DST
change nights of Europe/Berlin, America/New_York and Australia/Sydney (and Asia/Kolkata,
which has none), and on quiet-hours windows whose end falls in a DST gap or fold.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consent.engine import (
    ADDRESS_CHANNELS,
    CHANNELS,
    Caps,
    CustomerConsents,
    Decision,
    Outcome,
    QuietHours,
    Rule,
    State,
    Topic,
    TopicSetting,
    VendorRef,
    decide,
)

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata")
# The local dates on which the clocks change, 2025-2027 (Asia/Kolkata has none).
DST_NIGHTS = {
    "Europe/Berlin": [
        date(2025, 3, 30),
        date(2025, 10, 26),
        date(2026, 3, 29),
        date(2026, 10, 25),
        date(2027, 3, 28),
        date(2027, 10, 31),
    ],
    "America/New_York": [
        date(2025, 3, 9),
        date(2025, 11, 2),
        date(2026, 3, 8),
        date(2026, 11, 1),
        date(2027, 3, 14),
        date(2027, 11, 7),
    ],
    "Australia/Sydney": [
        date(2025, 4, 6),
        date(2025, 10, 5),
        date(2026, 4, 5),
        date(2026, 10, 4),
        date(2027, 4, 4),
        date(2027, 10, 3),
    ],
}
VENDORS = (
    VendorRef("v-acme", "Acme"),
    VendorRef("v-bolt", "Bolt Bikes"),
    VendorRef("v-cora", "Cora"),
)
VENDOR_IDS = tuple(v.id for v in VENDORS)
TOPIC_NAMES = ("news", "billing", "surveys")
PURPOSES = ("service", "marketing", "research", "other")

# --- strategies -----------------------------------------------------------------------------

vendors = st.sampled_from(VENDORS)
channels = st.sampled_from(CHANNELS)
topics = st.builds(Topic, st.sampled_from(TOPIC_NAMES), st.sampled_from(PURPOSES))
zones = st.sampled_from(ZONES)


@st.composite
def dst_night_instants(draw: st.DrawFn) -> datetime:
    """An instant within a day and a half around a DST change night."""
    zone = draw(st.sampled_from(sorted(DST_NIGHTS)))
    night = draw(st.sampled_from(DST_NIGHTS[zone]))
    midnight = datetime.combine(night, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)
    seconds = draw(st.integers(-18 * 3600, 30 * 3600))
    return midnight + timedelta(seconds=seconds)


any_instants = st.datetimes(
    min_value=datetime(2025, 1, 1),
    max_value=datetime(2027, 12, 31, 23, 59, 59),
    timezones=st.just(UTC),
)


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    """Aware datetimes across 2025-2027, half of them near a DST change, shown in any of the
    zones (the zone of ``at`` must not matter, only the instant)."""
    instant = draw(st.one_of(any_instants, dst_night_instants()))
    shown_in = draw(st.sampled_from((UTC, *(ZoneInfo(z) for z in ZONES))))
    return instant.astimezone(shown_in)


# Minutes of the day, weighted towards 01:00-03:30 where the DST gaps and folds lie.
minutes_of_day = st.one_of(
    st.integers(0, 24 * 60 - 1), st.integers(60, 210), st.sampled_from([120, 150, 180])
)


def minutes(value: time) -> int:
    return value.hour * 60 + value.minute


def as_time(minute: int) -> time:
    return time(minute // 60, minute % 60)


@st.composite
def quiet_hours(draw: st.DrawFn) -> QuietHours:
    start, end = draw(minutes_of_day), draw(minutes_of_day)
    assume(start != end)  # equal start and end means no quiet hours at all
    return QuietHours(as_time(start), as_time(end), draw(zones))


@st.composite
def topic_settings(draw: st.DrawFn, at: datetime) -> TopicSetting:
    expires = draw(
        st.one_of(
            st.none(),
            st.integers(-30 * 86400, 30 * 86400).map(lambda s: at + timedelta(seconds=s)),
            st.just(at),  # expiring exactly now counts as expired
        )
    )
    return TopicSetting(draw(st.sampled_from(State)), expires, draw(st.integers(1, 5)))


@st.composite
def customers(draw: st.DrawFn, at: datetime) -> CustomerConsents:
    """Any customer, with settings, relationships and send history relative to ``at``."""
    keys = st.tuples(
        st.sampled_from(VENDOR_IDS), st.sampled_from(TOPIC_NAMES), st.sampled_from(CHANNELS)
    )
    sends_near = st.lists(
        st.integers(-8 * 86400, 3600).map(lambda s: at + timedelta(seconds=s)), max_size=6
    )
    return CustomerConsents(
        account_active=draw(st.booleans().filter(lambda b: b) | st.booleans()),
        channels_off=draw(st.frozensets(channels, max_size=3)),
        blocked_vendors=draw(st.frozensets(st.sampled_from(VENDOR_IDS), max_size=2)),
        topics=draw(st.dictionaries(keys, topic_settings(at), max_size=8)),
        quiet_hours=draw(st.none() | quiet_hours()),
        caps=draw(
            st.dictionaries(
                st.sampled_from(VENDOR_IDS),
                st.builds(Caps, st.none() | st.integers(0, 5), st.none() | st.integers(0, 10)),
                max_size=3,
            )
        ),
        active_grant_vendors=draw(st.frozensets(st.sampled_from(VENDOR_IDS), max_size=3)),
        # Mostly every address confirmed (so the rules after it are reached), sometimes not.
        confirmed_channels=draw(st.just(frozenset(CHANNELS)) | st.frozensets(channels)),
        sends=draw(
            st.dictionaries(
                st.tuples(st.sampled_from(VENDOR_IDS), channels), sends_near, max_size=4
            )
        ),
    )


@st.composite
def situations(draw: st.DrawFn) -> tuple[CustomerConsents, VendorRef, str, Topic, datetime]:
    at = draw(instants())
    return draw(customers(at)), draw(vendors), draw(channels), draw(topics), at


def granted_only(
    vendor: VendorRef, topic: Topic, channel: str, **extra: object
) -> CustomerConsents:
    """A customer whose only setting is an open-ended grant for this vendor x topic x channel
    (every address confirmed, unless ``extra`` says otherwise)."""
    extra.setdefault("confirmed_channels", frozenset(CHANNELS))
    return CustomerConsents(
        topics={(vendor.id, topic.name, channel): TopicSetting(State.GRANTED)}, **extra
    )


def reachable(customer: CustomerConsents, vendor: VendorRef, channel: str) -> bool:
    return (
        customer.account_active
        and channel not in customer.channels_off
        and vendor.id not in customer.blocked_vendors
    )


# --- an independent model of the precedence -------------------------------------------------


def expected_rule(
    customer: CustomerConsents | None, vendor: VendorRef, channel: str, topic: Topic, at: datetime
) -> Rule:
    """The rule the issue's precedence names, written out independently of the engine."""
    if customer is None:
        return Rule.UNKNOWN_SUBJECT
    if not customer.account_active:
        return Rule.ACCOUNT_CLOSED
    if channel in customer.channels_off:
        return Rule.CHANNEL_OFF
    if vendor.id in customer.blocked_vendors:
        return Rule.VENDOR_BLOCKED
    setting = customer.topics.get((vendor.id, topic.name, channel))
    if setting is not None and setting.state == State.WITHDRAWN:
        return Rule.WITHDRAWN
    if setting is not None and setting.expires_at is not None and setting.expires_at <= at:
        return Rule.EXPIRED
    if setting is None and not (
        topic.purpose == "service" and vendor.id in customer.active_grant_vendors
    ):
        return Rule.NO_CONSENT
    if channel in ("email", "sms", "phone") and channel not in customer.confirmed_channels:
        return Rule.ADDRESS_UNCONFIRMED
    quiet = customer.quiet_hours
    if quiet is not None:
        local = at.astimezone(ZoneInfo(quiet.timezone)).replace(tzinfo=None).time()
        inside = (
            quiet.start <= local < quiet.end
            if quiet.start < quiet.end
            else (local >= quiet.start or local < quiet.end)
        )
        if inside:
            return Rule.QUIET_HOURS
    caps = customer.caps.get(vendor.id)
    if caps is not None:
        sent = customer.sends.get((vendor.id, channel), ())
        day = len([t for t in sent if at - timedelta(hours=24) < t <= at])
        week = len([t for t in sent if at - timedelta(days=7) < t <= at])
        if caps.per_day is not None and day >= caps.per_day:
            return Rule.CAP_DAY
        if caps.per_week is not None and week >= caps.per_week:
            return Rule.CAP_WEEK
    return Rule.GRANTED if setting is not None else Rule.SERVICE_RELATIONSHIP


EXPECTED_OUTCOME = {
    Rule.GRANTED: Outcome.ALLOW,
    Rule.SERVICE_RELATIONSHIP: Outcome.ALLOW,
    Rule.QUIET_HOURS: Outcome.DEFER,
}


def check_not_before(decision: Decision, quiet: QuietHours, at: datetime) -> None:
    """A deferral names the end of the quiet hours: later than ``at``, outside the window,
    within ~26 hours, and the window was still on a second before it."""
    nb = decision.not_before
    assert nb is not None and nb.tzinfo is not None
    assert nb > at
    assert not quiet.contains(nb), (nb, quiet)
    # At most a day plus an hour of DST; unless the whole time outside the window is shorter
    # than a DST jump and the clocks skip it that night: then it is the next day's.
    outside = (minutes(quiet.start) - minutes(quiet.end)) % (24 * 60)
    limit = timedelta(hours=26) if outside > 60 else timedelta(hours=50)
    assert nb - at <= limit, (nb, at, quiet)
    just_before = nb - timedelta(seconds=1)
    assert just_before <= at or quiet.contains(just_before), (nb, quiet)
    # The local clock shows the window's end then, unless the clocks jumped over it.
    zone = ZoneInfo(quiet.timezone)
    local = nb.astimezone(zone)
    jumped = just_before.astimezone(zone).utcoffset() != local.utcoffset()
    assert local.time().replace(tzinfo=None) == quiet.end or jumped, (nb, local, quiet)


# --- properties -------------------------------------------------------------------------------


@PROPERTY
@given(situations())
def test_precedence_matches_the_issue(
    situation: tuple[CustomerConsents, VendorRef, str, Topic, datetime],
) -> None:
    customer, vendor, channel, topic, at = situation
    decision = decide(customer, vendor, channel, topic, at)
    rule = expected_rule(customer, vendor, channel, topic, at)
    assert decision.rule == rule
    assert decision.outcome == EXPECTED_OUTCOME.get(rule, Outcome.DENY)
    assert (decision.not_before is not None) == (decision.outcome == Outcome.DEFER)
    # One sentence a customer understands, no internal rule names.
    assert decision.reason and decision.reason.endswith(".")
    assert ". " not in decision.reason[:-1]
    if decision.outcome == Outcome.DEFER:
        assert customer.quiet_hours is not None
        check_not_before(decision, customer.quiet_hours, at)


@PROPERTY
@given(situations())
def test_a_global_channel_switch_always_wins(
    situation: tuple[CustomerConsents, VendorRef, str, Topic, datetime],
) -> None:
    customer, vendor, channel, topic, at = situation
    # Whatever else is set, even an explicit grant and a live service relationship.
    customer = replace(
        customer,
        channels_off=customer.channels_off | {channel},
        topics={
            **customer.topics,
            (vendor.id, topic.name, channel): TopicSetting(State.GRANTED),
        },
        active_grant_vendors=customer.active_grant_vendors | {vendor.id},
    )
    decision = decide(customer, vendor, channel, topic, at)
    if customer.account_active:
        assert (decision.outcome, decision.rule) == (Outcome.DENY, Rule.CHANNEL_OFF)
    else:
        assert (decision.outcome, decision.rule) == (Outcome.DENY, Rule.ACCOUNT_CLOSED)


@PROPERTY
@given(situations())
def test_a_blocked_vendor_is_always_denied(
    situation: tuple[CustomerConsents, VendorRef, str, Topic, datetime],
) -> None:
    customer, vendor, channel, topic, at = situation
    customer = replace(
        customer,
        account_active=True,
        channels_off=customer.channels_off - {channel},
        blocked_vendors=customer.blocked_vendors | {vendor.id},
        topics={
            **customer.topics,
            (vendor.id, topic.name, channel): TopicSetting(State.GRANTED),
        },
        active_grant_vendors=customer.active_grant_vendors | {vendor.id},
    )
    decision = decide(customer, vendor, channel, topic, at)
    assert (decision.outcome, decision.rule) == (Outcome.DENY, Rule.VENDOR_BLOCKED)


@PROPERTY
@given(situations())
def test_closed_or_unknown_comes_first(
    situation: tuple[CustomerConsents, VendorRef, str, Topic, datetime],
) -> None:
    customer, vendor, channel, topic, at = situation
    closed = decide(replace(customer, account_active=False), vendor, channel, topic, at)
    assert (closed.outcome, closed.rule) == (Outcome.DENY, Rule.ACCOUNT_CLOSED)
    unknown = decide(None, vendor, channel, topic, at)
    assert (unknown.outcome, unknown.rule) == (Outcome.DENY, Rule.UNKNOWN_SUBJECT)


@PROPERTY
@given(situations(), st.sampled_from([p for p in PURPOSES if p != "service"]))
def test_nothing_outside_service_without_an_explicit_grant(
    situation: tuple[CustomerConsents, VendorRef, str, Topic, datetime], purpose: str
) -> None:
    customer, vendor, channel, topic, at = situation
    topic = replace(topic, purpose=purpose)
    decision = decide(customer, vendor, channel, topic, at)
    setting = customer.topics.get((vendor.id, topic.name, channel))
    if setting is None or setting.state != State.GRANTED:
        assert decision.outcome == Outcome.DENY
    # And in general: an allow or a deferral always rests on a live grant or on service.
    if decision.outcome != Outcome.DENY:
        assert setting is not None and setting.state == State.GRANTED
        assert setting.expires_at is None or setting.expires_at > at


@PROPERTY
@given(situations())
def test_only_an_active_relationship_allows_service_without_a_setting(
    situation: tuple[CustomerConsents, VendorRef, str, Topic, datetime],
) -> None:
    customer, vendor, channel, topic, at = situation
    topic = replace(topic, purpose="service")
    topics = {k: v for k, v in customer.topics.items() if k != (vendor.id, topic.name, channel)}
    customer = replace(customer, topics=topics)
    decision = decide(customer, vendor, channel, topic, at)
    if decision.outcome != Outcome.DENY:
        assert vendor.id in customer.active_grant_vendors
    without = replace(customer, active_grant_vendors=customer.active_grant_vendors - {vendor.id})
    assert decide(without, vendor, channel, topic, at).outcome == Outcome.DENY


@PROPERTY
@given(situations())
def test_decide_is_deterministic(
    situation: tuple[CustomerConsents, VendorRef, str, Topic, datetime],
) -> None:
    customer, vendor, channel, topic, at = situation
    before = copy.deepcopy(customer)
    first = decide(customer, vendor, channel, topic, at)
    assert decide(customer, vendor, channel, topic, at) == first
    assert decide(*copy.deepcopy((customer, vendor, channel, topic, at))) == first
    # Only the instant matters, not the zone it is written in.
    for zone in (UTC, ZoneInfo("Asia/Kolkata"), ZoneInfo("America/New_York")):
        assert decide(customer, vendor, channel, topic, at.astimezone(zone)) == first
    # And deciding does not change its inputs.
    assert customer == before


@PROPERTY
@given(instants(), quiet_hours(), vendors, channels, topics)
def test_inside_quiet_hours_never_allows(
    at: datetime, quiet: QuietHours, vendor: VendorRef, channel: str, topic: Topic
) -> None:
    assume(quiet.contains(at))
    customer = granted_only(vendor, topic, channel, quiet_hours=quiet)
    decision = decide(customer, vendor, channel, topic, at)
    assert (decision.outcome, decision.rule) == (Outcome.DEFER, Rule.QUIET_HOURS)
    check_not_before(decision, quiet, at)
    # At the named instant the same message goes through.
    later = decide(customer, vendor, channel, topic, decision.not_before)
    assert (later.outcome, later.rule) == (Outcome.ALLOW, Rule.GRANTED)


@PROPERTY
@given(instants(), quiet_hours(), vendors, channels, topics)
def test_outside_quiet_hours_a_grant_allows(
    at: datetime, quiet: QuietHours, vendor: VendorRef, channel: str, topic: Topic
) -> None:
    assume(not quiet.contains(at))
    decision = decide(
        granted_only(vendor, topic, channel, quiet_hours=quiet), vendor, channel, topic, at
    )
    assert (decision.outcome, decision.rule, decision.not_before) == (
        Outcome.ALLOW,
        Rule.GRANTED,
        None,
    )


@PROPERTY
@given(instants(), vendors, channels, topics, st.integers(0, 400 * 86400))
def test_an_expired_grant_denies(
    at: datetime, vendor: VendorRef, channel: str, topic: Topic, ago: int
) -> None:
    setting = TopicSetting(State.GRANTED, expires_at=at - timedelta(seconds=ago))
    customer = CustomerConsents(
        topics={(vendor.id, topic.name, channel): setting},
        active_grant_vendors=frozenset({vendor.id}),  # not even service rescues it
        confirmed_channels=frozenset(CHANNELS),
    )
    decision = decide(customer, vendor, channel, replace(topic, purpose="service"), at)
    assert (decision.outcome, decision.rule) == (Outcome.DENY, Rule.EXPIRED)
    live = replace(setting, expires_at=at + timedelta(seconds=ago + 1))
    customer = replace(customer, topics={(vendor.id, topic.name, channel): live})
    assert decide(customer, vendor, channel, topic, at).outcome == Outcome.ALLOW


@PROPERTY
@given(instants(), vendors, channels, topics)
def test_a_withdrawal_beats_the_service_relationship(
    at: datetime, vendor: VendorRef, channel: str, topic: Topic
) -> None:
    customer = CustomerConsents(
        topics={(vendor.id, topic.name, channel): TopicSetting(State.WITHDRAWN)},
        active_grant_vendors=frozenset({vendor.id}),
    )
    decision = decide(customer, vendor, channel, replace(topic, purpose="service"), at)
    assert (decision.outcome, decision.rule) == (Outcome.DENY, Rule.WITHDRAWN)


@PROPERTY
@given(
    instants(),
    vendors,
    channels,
    topics,
    st.integers(0, 8),
    st.lists(st.integers(0, 24 * 3600 - 1), max_size=8),
)
def test_the_daily_cap(
    at: datetime,
    vendor: VendorRef,
    channel: str,
    topic: Topic,
    cap: int,
    seconds_ago: list[int],
) -> None:
    sends_in_window = [at - timedelta(seconds=s) for s in seconds_ago]
    # Sends a day or more ago, or on another channel, or by another vendor do not count.
    old = [at - timedelta(hours=24), at - timedelta(hours=30)]
    other = "post" if channel != "post" else "sms"
    customer = granted_only(
        vendor,
        topic,
        channel,
        caps={vendor.id: Caps(per_day=cap)},
        sends={
            (vendor.id, channel): sends_in_window + old,
            (vendor.id, other): [at] * 10,
            ("someone-else", channel): [at] * 10,
        },
    )
    decision = decide(customer, vendor, channel, topic, at)
    if len(sends_in_window) >= cap:
        assert (decision.outcome, decision.rule) == (Outcome.DENY, Rule.CAP_DAY)
        assert str(len(sends_in_window)) in decision.reason
    else:
        assert (decision.outcome, decision.rule) == (Outcome.ALLOW, Rule.GRANTED)


@PROPERTY
@given(instants(), vendors, channels, topics, st.integers(1, 8))
def test_n_sends_reach_a_cap_of_n(
    at: datetime, vendor: VendorRef, channel: str, topic: Topic, n: int
) -> None:
    sent = [at - timedelta(minutes=10 * i) for i in range(n)]
    day = granted_only(
        vendor,
        topic,
        channel,
        caps={vendor.id: Caps(per_day=n)},
        sends={(vendor.id, channel): sent},
    )
    assert decide(day, vendor, channel, topic, at).rule == Rule.CAP_DAY
    assert (
        decide(
            replace(day, caps={vendor.id: Caps(per_day=n + 1)}), vendor, channel, topic, at
        ).outcome
        == Outcome.ALLOW
    )
    spread = [at - timedelta(days=i, hours=1) for i in range(n)]  # one per day over n days
    week = replace(
        day, caps={vendor.id: Caps(per_day=2, per_week=n)}, sends={(vendor.id, channel): spread}
    )
    if n < 8:
        assert decide(week, vendor, channel, topic, at).rule == Rule.CAP_WEEK
    else:  # the eighth send lies more than seven days back
        assert decide(week, vendor, channel, topic, at).outcome == Outcome.ALLOW


@PROPERTY
@given(instants(), quiet_hours(), vendors, channels, topics, st.integers(0, 3))
def test_quiet_hours_come_before_caps(
    at: datetime, quiet: QuietHours, vendor: VendorRef, channel: str, topic: Topic, cap: int
) -> None:
    customer = granted_only(
        vendor,
        topic,
        channel,
        quiet_hours=quiet,
        caps={vendor.id: Caps(per_day=cap)},
        sends={(vendor.id, channel): [at - timedelta(minutes=5)] * cap},
    )
    decision = decide(customer, vendor, channel, topic, at)
    if quiet.contains(at):
        assert decision.rule == Rule.QUIET_HOURS
    else:
        assert (decision.outcome, decision.rule) == (Outcome.DENY, Rule.CAP_DAY)


@PROPERTY
@given(situations())
def test_an_unconfirmed_address_denies_what_consent_would_allow(
    situation: tuple[CustomerConsents, VendorRef, str, Topic, datetime],
) -> None:
    customer, vendor, channel, topic, at = situation
    confirmed = replace(customer, confirmed_channels=frozenset(CHANNELS))
    unconfirmed = replace(customer, confirmed_channels=frozenset(CHANNELS) - {channel})
    with_address = decide(confirmed, vendor, channel, topic, at)
    without = decide(unconfirmed, vendor, channel, topic, at)
    if channel not in ADDRESS_CHANNELS:
        # Post and push have no address the vault confirms: nothing changes.
        assert without == with_address
    elif with_address.rule in (Rule.GRANTED, Rule.SERVICE_RELATIONSHIP, Rule.QUIET_HOURS) or (
        with_address.rule in (Rule.CAP_DAY, Rule.CAP_WEEK)
    ):
        # Whatever consent would allow (or defer, or cap) is refused for the address.
        assert (without.outcome, without.rule) == (Outcome.DENY, Rule.ADDRESS_UNCONFIRMED)
        assert without.not_before is None
        assert "no confirmed" in without.reason and without.reason.endswith(".")
    else:
        # The customer's own refusals read as themselves, address or not.
        assert without == with_address
        assert with_address.outcome == Outcome.DENY


@PROPERTY
@given(instants(), vendors, topics)
def test_a_withdrawal_reads_as_withdrawn_on_an_unconfirmed_number(
    at: datetime, vendor: VendorRef, topic: Topic
) -> None:
    customer = CustomerConsents(
        topics={(vendor.id, topic.name, "sms"): TopicSetting(State.WITHDRAWN)},
        confirmed_channels=frozenset({"email"}),
    )
    assert decide(customer, vendor, "sms", topic, at).rule == Rule.WITHDRAWN
    granted = granted_only(vendor, topic, "sms", confirmed_channels=frozenset({"email"}))
    decision = decide(granted, vendor, "sms", topic, at)
    assert (decision.outcome, decision.rule) == (Outcome.DENY, Rule.ADDRESS_UNCONFIRMED)
    assert decision.reason == (
        "There is no confirmed phone number in your profile to reach you by text message."
    )
    assert decide(
        replace(granted, confirmed_channels=frozenset({"email", "sms"})), vendor, "sms", topic, at
    ).rule in (Rule.GRANTED, Rule.QUIET_HOURS)


def test_a_customer_built_without_addresses_is_refused_on_address_channels() -> None:
    vendor, topic, at = VENDORS[0], Topic("news", "marketing"), datetime(2026, 1, 1, tzinfo=UTC)
    for channel in CHANNELS:
        customer = CustomerConsents(
            topics={(vendor.id, topic.name, channel): TopicSetting(State.GRANTED)}
        )
        decision = decide(customer, vendor, channel, topic, at)
        expected = Rule.ADDRESS_UNCONFIRMED if channel in ADDRESS_CHANNELS else Rule.GRANTED
        assert decision.rule == expected, channel


def test_bad_input_is_refused() -> None:
    vendor, topic = VENDORS[0], Topic("news", "marketing")
    with pytest.raises(ValueError, match="aware"):
        decide(CustomerConsents(), vendor, "email", topic, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="channel"):
        decide(CustomerConsents(), vendor, "fax", topic, datetime(2026, 1, 1, tzinfo=UTC))


# --- the DST nights, exactly ------------------------------------------------------------------


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)


DST_EXAMPLES = [
    # zone, window, at, expected not_before
    # Europe/Berlin, spring: 02:00 CET -> 03:00 CEST at 01:00 UTC.
    (
        "Europe/Berlin",
        "22:00",
        "07:00",
        local("Europe/Berlin", 2026, 3, 28, 23, 30),
        utc(2026, 3, 29, 5, 0),
    ),  # 07:00 CEST, the night is an hour shorter
    (
        "Europe/Berlin",
        "22:00",
        "02:30",
        local("Europe/Berlin", 2026, 3, 29, 1, 30),
        utc(2026, 3, 29, 1, 0),
    ),  # 02:30 never happens: the window ends at the jump (03:00)
    (
        "Europe/Berlin",
        "01:00",
        "02:30",
        local("Europe/Berlin", 2026, 3, 29, 1, 59),
        utc(2026, 3, 29, 1, 0),
    ),
    (
        "Europe/Berlin",
        "02:30",
        "07:00",
        local("Europe/Berlin", 2026, 3, 29, 3, 15),
        utc(2026, 3, 29, 5, 0),
    ),  # the window started at the jump
    # Europe/Berlin, autumn: 03:00 CEST -> 02:00 CET at 01:00 UTC.
    (
        "Europe/Berlin",
        "22:00",
        "07:00",
        local("Europe/Berlin", 2026, 10, 24, 23, 0),
        utc(2026, 10, 25, 6, 0),
    ),  # 07:00 CET, the night is an hour longer
    (
        "Europe/Berlin",
        "22:00",
        "02:30",
        local("Europe/Berlin", 2026, 10, 24, 23, 0),
        utc(2026, 10, 25, 0, 30),
    ),  # the first 02:30 (CEST)
    (
        "Europe/Berlin",
        "22:00",
        "02:30",
        local("Europe/Berlin", 2026, 10, 25, 2, 15, fold=1),
        utc(2026, 10, 25, 1, 30),
    ),  # back inside after the clocks went back: the second 02:30
    (
        "Europe/Berlin",
        "02:30",
        "05:00",
        local("Europe/Berlin", 2026, 10, 25, 2, 45),
        utc(2026, 10, 25, 4, 0),
    ),  # 05:00 CET, not the repeated hour at 02:00 CET
    # America/New_York, spring: 02:00 EST -> 03:00 EDT at 07:00 UTC.
    (
        "America/New_York",
        "21:00",
        "08:00",
        local("America/New_York", 2026, 3, 7, 22, 0),
        utc(2026, 3, 8, 12, 0),
    ),
    (
        "America/New_York",
        "01:00",
        "02:30",
        local("America/New_York", 2026, 3, 8, 1, 30),
        utc(2026, 3, 8, 7, 0),
    ),
    # America/New_York, autumn: 02:00 EDT -> 01:00 EST at 06:00 UTC.
    (
        "America/New_York",
        "21:00",
        "08:00",
        local("America/New_York", 2026, 10, 31, 22, 0),
        utc(2026, 11, 1, 13, 0),
    ),
    (
        "America/New_York",
        "00:00",
        "01:30",
        local("America/New_York", 2026, 11, 1, 0, 30),
        utc(2026, 11, 1, 5, 30),
    ),  # the first 01:30 (EDT)
    (
        "America/New_York",
        "00:00",
        "01:30",
        local("America/New_York", 2026, 11, 1, 1, 10, fold=1),
        utc(2026, 11, 1, 6, 30),
    ),  # the second 01:30 (EST)
    # Australia/Sydney, autumn (April): 03:00 AEDT -> 02:00 AEST at 16:00 UTC.
    (
        "Australia/Sydney",
        "22:00",
        "07:00",
        local("Australia/Sydney", 2026, 4, 4, 23, 0),
        utc(2026, 4, 4, 21, 0),
    ),
    # Australia/Sydney, spring (October): 02:00 AEST -> 03:00 AEDT at 16:00 UTC.
    (
        "Australia/Sydney",
        "22:00",
        "02:30",
        local("Australia/Sydney", 2026, 10, 3, 23, 0),
        utc(2026, 10, 3, 16, 0),
    ),
    (
        "Australia/Sydney",
        "22:00",
        "07:00",
        local("Australia/Sydney", 2026, 10, 3, 23, 0),
        utc(2026, 10, 3, 20, 0),
    ),
    # Asia/Kolkata has no DST: 07:00 IST is always 01:30 UTC.
    (
        "Asia/Kolkata",
        "22:00",
        "07:00",
        local("Asia/Kolkata", 2026, 3, 29, 23, 0),
        utc(2026, 3, 30, 1, 30),
    ),
    (
        "Asia/Kolkata",
        "01:00",
        "02:30",
        local("Asia/Kolkata", 2026, 10, 25, 2, 0),
        utc(2026, 10, 24, 21, 0),
    ),
]


@pytest.mark.parametrize(("zone", "start", "end", "at", "expected"), DST_EXAMPLES)
def test_quiet_hours_on_dst_nights(
    zone: str, start: str, end: str, at: datetime, expected: datetime
) -> None:
    quiet = QuietHours(time.fromisoformat(start), time.fromisoformat(end), zone)
    vendor, topic = VENDORS[0], Topic("news", "marketing")
    customer = granted_only(vendor, topic, "sms", quiet_hours=quiet)
    decision = decide(customer, vendor, "sms", topic, at)
    assert (decision.outcome, decision.rule) == (Outcome.DEFER, Rule.QUIET_HOURS)
    assert decision.not_before == expected, decision.not_before.astimezone(ZoneInfo(zone))
    assert decide(customer, vendor, "sms", topic, expected).outcome == Outcome.ALLOW
    # A second earlier the message still waits.
    earlier = decide(customer, vendor, "sms", topic, expected - timedelta(seconds=1))
    assert earlier.outcome == Outcome.DEFER and earlier.not_before == expected


def test_the_dst_nights_are_real() -> None:
    """The dates the strategies lean on really are the nights the clocks change."""
    for zone, nights in DST_NIGHTS.items():
        tz = ZoneInfo(zone)
        for night in nights:
            before = datetime.combine(night, time(0), tzinfo=tz).utcoffset()
            after = datetime.combine(night, time(12), tzinfo=tz).utcoffset()
            assert before != after, (zone, night)
