"""Decisions per second of the pure ``consent.engine.decide``, beside a baseline in the
same run: the same lookups (channel switch, block, explicit setting) with no reasons, time
rules or precedence logic, i.e. what the data access alone costs in Python."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from bench.timing import Rate, run_for
from consent.engine import (
    CHANNELS,
    Caps,
    CustomerConsents,
    QuietHours,
    State,
    Topic,
    TopicSetting,
    VendorRef,
    decide,
)

VENDOR = VendorRef("vendor-1", "Acme Outdoor")
TOPICS = (Topic("newsletter", "marketing"), Topic("orders", "service"), Topic("survey", "research"))
BATCH = 1000


@dataclass(frozen=True)
class DecideRates:
    decide: Rate  # operations are decisions
    baseline: Rate


def _customers(count: int, seed: int = 7) -> list[CustomerConsents]:
    """A deterministic mix: switches off, blocks, explicit settings, quiet hours, caps."""
    rng = random.Random(seed)
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    people = []
    for _ in range(count):
        topics = {
            (VENDOR.id, topic.name, channel): TopicSetting(
                rng.choice([State.GRANTED, State.WITHDRAWN]),
                rng.choice([None, now + timedelta(days=30), now - timedelta(days=1)]),
            )
            for topic in TOPICS
            for channel in CHANNELS
            if rng.random() < 0.4
        }
        people.append(
            CustomerConsents(
                account_active=rng.random() > 0.02,
                channels_off=frozenset(c for c in CHANNELS if rng.random() < 0.15),
                blocked_vendors=frozenset([VENDOR.id] if rng.random() < 0.05 else []),
                topics=topics,
                quiet_hours=QuietHours(time(22), time(7), "Europe/Berlin")
                if rng.random() < 0.5
                else None,
                caps={VENDOR.id: Caps(3, 10)} if rng.random() < 0.3 else {},
                active_grant_vendors=frozenset([VENDOR.id] if rng.random() < 0.7 else []),
                confirmed_channels=frozenset(
                    CHANNELS if rng.random() < 0.6 else [c for c in CHANNELS if c != "sms"]
                ),
                sends={(VENDOR.id, "email"): (now - timedelta(hours=2),) * rng.randint(0, 4)},
            )
        )
    return people


def measure(seconds: float) -> DecideRates:
    people = _customers(BATCH)
    at = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)
    cases = [(p, CHANNELS[i % 5], TOPICS[i % 3]) for i, p in enumerate(people)]

    def decide_batch() -> None:
        for customer, channel, topic in cases:
            decide(customer, VENDOR, channel, topic, at)

    def lookups_batch() -> None:
        for customer, channel, topic in cases:
            _ = (
                customer.account_active
                and channel not in customer.channels_off
                and VENDOR.id not in customer.blocked_vendors
                and customer.topics.get((VENDOR.id, topic.name, channel))
            )

    decided = run_for(seconds, decide_batch)
    baseline = run_for(seconds, lookups_batch)
    return DecideRates(
        Rate(decided.operations * BATCH, decided.seconds),
        Rate(baseline.operations * BATCH, baseline.seconds),
    )
