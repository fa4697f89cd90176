"""Load what ``decide`` needs from the database, for one customer or for a whole batch."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, any_, bindparam, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from consent.engine import Caps, CustomerConsents, QuietHours, State, TopicSetting
from vault.accounts.models import AccountStatus, User
from vault.consents.models import (
    ChannelSetting,
    ConsentPreferences,
    TopicConsent,
    VendorPreference,
)
from vault.messages.models import Message
from vault.oauth.models import Grant, grant_ended
from vault.vendors.models import ContactTopic

# Ids per IN (...) query on databases without a one-parameter set (see _id_sets).
CHUNK = 500
_NO_STRINGS: frozenset[str] = frozenset()

Among = Callable[[ColumnElement[Any], Any], ColumnElement[bool]]


def _in(column: ColumnElement[Any], chunk: Any) -> ColumnElement[bool]:
    return column.in_(chunk)


def _in_json(column: ColumnElement[Any], chunk: Any) -> ColumnElement[bool]:
    values = func.json_each(bindparam("ids", chunk, unique=True)).table_valued("value")
    return column.in_(select(values.c.value))


def _any_array(column: ColumnElement[Any], chunk: Any) -> ColumnElement[bool]:
    return column == any_(bindparam("ids", chunk, type_=ARRAY(String), unique=True))


def _id_sets(session: Session, ids: list[str]) -> tuple[list[Any], Among]:
    """The id set as few bound parameters as the database allows, and the test for it.

    SQLite and PostgreSQL take the whole set as one parameter (a JSON array read by
    ``json_each``, an array for ``= ANY``): one query per table, and a statement whose SQL
    does not depend on the batch size (no expanding IN of 10,000 parameters to render).
    Other databases get IN (...) in chunks.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return [json.dumps(ids)], _in_json
    if dialect == "postgresql":
        return [ids], _any_array
    return [ids[start : start + CHUNK] for start in range(0, len(ids), CHUNK)], _in


def load_consents(
    session: Session, user_ids: Iterable[str], now: datetime, vendor_id: str | None = None
) -> dict[str, CustomerConsents]:
    """Settings of many customers in seven queries (per 500 customers on other databases).

    With ``vendor_id``, only what concerns that vendor is loaded (what a batch check needs).
    Unknown ids are simply absent from the result.

    Plain column queries, no ORM entities: a 10,000-customer batch is tens of thousands of
    rows, and building mapped objects for them would cost more than the queries.
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
    states = {state.value: state for state in State}
    times: dict[str, time] = {}

    def clock(text: str) -> time:
        value = times.get(text)
        if value is None:
            value = times[text] = time.fromisoformat(text)
        return value

    chunks, among = _id_sets(session, ids)
    for chunk in chunks if ids else ():
        for user_id, status in session.execute(
            select(User.id, User.status).where(among(User.id, chunk))
        ):
            active[user_id] = status == AccountStatus.ACTIVE
        for user_id, channel in session.execute(
            select(ChannelSetting.user_id, ChannelSetting.channel).where(
                among(ChannelSetting.user_id, chunk), ChannelSetting.enabled.is_(False)
            )
        ):
            channels_off[user_id].add(channel)
        prefs = select(
            VendorPreference.user_id,
            VendorPreference.vendor_id,
            VendorPreference.blocked,
            VendorPreference.cap_per_day,
            VendorPreference.cap_per_week,
        ).where(among(VendorPreference.user_id, chunk))
        if vendor_id is not None:
            prefs = prefs.where(VendorPreference.vendor_id == vendor_id)
        for user_id, pref_vendor, is_blocked, per_day, per_week in session.execute(prefs):
            if is_blocked:
                blocked[user_id].add(pref_vendor)
            if per_day is not None or per_week is not None:
                caps[user_id][pref_vendor] = Caps(per_day, per_week)
        consents = (
            select(
                TopicConsent.user_id,
                TopicConsent.vendor_id,
                ContactTopic.name,
                TopicConsent.channel,
                TopicConsent.state,
                TopicConsent.expires_at,
                TopicConsent.notice_version,
            )
            .join(ContactTopic, ContactTopic.id == TopicConsent.topic_id)
            .where(among(TopicConsent.user_id, chunk))
        )
        if vendor_id is not None:
            consents = consents.where(TopicConsent.vendor_id == vendor_id)
        for (
            user_id,
            consent_vendor,
            topic_name,
            channel,
            state,
            expires_at,
            version,
        ) in session.execute(consents):
            topics[user_id][(consent_vendor, topic_name, channel)] = TopicSetting(
                states[state], expires_at, version
            )
        for user_id, start, end, zone in session.execute(
            select(
                ConsentPreferences.user_id,
                ConsentPreferences.quiet_start,
                ConsentPreferences.quiet_end,
                ConsentPreferences.timezone,
            ).where(
                among(ConsentPreferences.user_id, chunk),
                ConsentPreferences.quiet_start.is_not(None),
            )
        ):
            quiet[user_id] = QuietHours(clock(start), clock(end), zone)
        live = select(Grant.user_id, Grant.vendor_id).where(
            among(Grant.user_id, chunk),
            Grant.revoked_at.is_(None),
            or_(Grant.expires_at.is_(None), Grant.expires_at > now),
        )
        if vendor_id is not None:
            live = live.where(Grant.vendor_id == vendor_id)
        for user_id, grant_vendor in session.execute(live):
            grants[user_id].add(grant_vendor)
        # Frequency caps count delivered messages (sent_at is set only on delivery).
        history = select(
            Message.user_id, Message.vendor_id, Message.channel, Message.sent_at
        ).where(among(Message.user_id, chunk), Message.sent_at > now - timedelta(days=7))
        if vendor_id is not None:
            history = history.where(Message.vendor_id == vendor_id)
        for user_id, sent_vendor, channel, at in session.execute(history):
            sends[user_id][(sent_vendor, channel)].append(at)

    # Most customers have no settings of a kind: one shared empty frozenset for them.
    return {
        user_id: CustomerConsents(
            account_active=is_active,
            channels_off=frozenset(channels_off[user_id])
            if user_id in channels_off
            else _NO_STRINGS,
            blocked_vendors=frozenset(blocked[user_id]) if user_id in blocked else _NO_STRINGS,
            topics=topics.get(user_id) or {},
            quiet_hours=quiet.get(user_id),
            caps=caps.get(user_id) or {},
            active_grant_vendors=frozenset(grants[user_id]) if user_id in grants else _NO_STRINGS,
            sends={key: tuple(sorted(times)) for key, times in sends[user_id].items()}
            if user_id in sends
            else {},
        )
        for user_id, is_active in active.items()
    }


# One customer towards one business, as the messages API and permits decide on every call:
# statements built once (their cache keys are computed once, not per call), run through the
# connection as plain rows.
_ONE = {"user_id": bindparam("user_id"), "vendor_id": bindparam("vendor_id")}
_ONE_STATUS = select(User.status).where(User.id == _ONE["user_id"])
_ONE_CHANNELS_OFF = select(ChannelSetting.channel).where(
    ChannelSetting.user_id == _ONE["user_id"], ChannelSetting.enabled.is_(False)
)
_ONE_PREFERENCE = select(
    VendorPreference.blocked, VendorPreference.cap_per_day, VendorPreference.cap_per_week
).where(
    VendorPreference.user_id == _ONE["user_id"], VendorPreference.vendor_id == _ONE["vendor_id"]
)
_ONE_TOPICS = (
    select(
        ContactTopic.name,
        TopicConsent.channel,
        TopicConsent.state,
        TopicConsent.expires_at,
        TopicConsent.notice_version,
    )
    .join(ContactTopic, ContactTopic.id == TopicConsent.topic_id)
    .where(TopicConsent.user_id == _ONE["user_id"], TopicConsent.vendor_id == _ONE["vendor_id"])
)
_ONE_QUIET = select(
    ConsentPreferences.quiet_start, ConsentPreferences.quiet_end, ConsentPreferences.timezone
).where(ConsentPreferences.user_id == _ONE["user_id"], ConsentPreferences.quiet_start.is_not(None))
_ONE_GRANT = (
    select(Grant.id)
    .where(
        Grant.user_id == _ONE["user_id"],
        Grant.vendor_id == _ONE["vendor_id"],
        Grant.revoked_at.is_(None),
        or_(Grant.expires_at.is_(None), Grant.expires_at > bindparam("now")),
    )
    .limit(1)
)
_ONE_SENDS = select(Message.channel, Message.sent_at).where(
    Message.user_id == _ONE["user_id"],
    Message.vendor_id == _ONE["vendor_id"],
    Message.sent_at > bindparam("since"),
)


def load_customer(
    session: Session, user_id: str, vendor_id: str, now: datetime
) -> CustomerConsents | None:
    """What ``load_consents(session, [user_id], now, vendor_id)`` returns for that customer
    (None if unknown), in the same seven queries, each built once."""
    if session.autoflush:
        session.flush()
    connection = session.connection()
    values = {"user_id": user_id, "vendor_id": vendor_id}
    status = connection.execute(_ONE_STATUS, values).scalar()
    if status is None:
        return None
    channels_off = frozenset(connection.execute(_ONE_CHANNELS_OFF, values).scalars())
    blocked: frozenset[str] = _NO_STRINGS
    caps: dict[str, Caps] = {}
    preference = connection.execute(_ONE_PREFERENCE, values).first()
    if preference is not None:
        is_blocked, per_day, per_week = preference
        if is_blocked:
            blocked = frozenset({vendor_id})
        if per_day is not None or per_week is not None:
            caps[vendor_id] = Caps(per_day, per_week)
    states = {state.value: state for state in State}
    topics = {
        (vendor_id, name, channel): TopicSetting(states[state], expires_at, version)
        for name, channel, state, expires_at, version in connection.execute(_ONE_TOPICS, values)
    }
    quiet_row = connection.execute(_ONE_QUIET, values).first()
    quiet = (
        QuietHours(time.fromisoformat(quiet_row[0]), time.fromisoformat(quiet_row[1]), quiet_row[2])
        if quiet_row is not None
        else None
    )
    live = connection.execute(_ONE_GRANT, {**values, "now": now}).first() is not None
    sends: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for channel, at in connection.execute(_ONE_SENDS, {**values, "since": now - timedelta(days=7)}):
        sends[(vendor_id, channel)].append(at)
    return CustomerConsents(
        account_active=status == AccountStatus.ACTIVE,
        channels_off=channels_off or _NO_STRINGS,
        blocked_vendors=blocked,
        topics=topics,
        quiet_hours=quiet,
        caps=caps,
        active_grant_vendors=frozenset({vendor_id}) if live else _NO_STRINGS,
        sends={key: tuple(sorted(times)) for key, times in sends.items()},
    )


# Why a customer no longer receives a business's consent requests (stable codes: the
# vendor API names them in its problem types, the pages hide such requests).
VENDOR_BLOCKED = "vendor_blocked"
CONNECTION_ENDED = "connection_ended"


def request_refusals(
    session: Session, user_id: str, now: datetime, vendor_ids: Iterable[str] | None = None
) -> dict[str, str]:
    """The businesses whose consent requests this customer no longer receives, and why.

    - ``vendor_blocked``: the customer blocked all contact from the business.
    - ``connection_ended``: the customer ended the connection: the business has no live
      grant, and the grant that ended last was revoked by the customer. A grant that only
      ran out (the customer chose how long it lasts) or was revoked by the vault itself
      (a replayed refresh token) does not count, and a new grant reopens the door.

    A business that never had a grant falls under the API's other rules (it has no
    subject for the customer at all).
    """
    wanted = None if vendor_ids is None else list(dict.fromkeys(vendor_ids))
    refusals: dict[str, str] = {}
    grants = select(
        Grant.vendor_id, Grant.expires_at, Grant.revoked_at, Grant.revoked_reason
    ).where(Grant.user_id == user_id)
    blocked = select(VendorPreference.vendor_id).where(
        VendorPreference.user_id == user_id, VendorPreference.blocked.is_(True)
    )
    if wanted is not None:
        grants = grants.where(Grant.vendor_id.in_(wanted))
        blocked = blocked.where(VendorPreference.vendor_id.in_(wanted))
    # vendor -> (live, end of the grant that ended last, was that end the customer's)
    latest: dict[str, tuple[bool, datetime | None, bool]] = {}
    for vendor_id, expires_at, revoked_at, reason in session.execute(grants):
        live, last_end, by_customer = latest.get(vendor_id, (False, None, False))
        if not grant_ended(revoked_at, expires_at, now):
            latest[vendor_id] = (True, last_end, by_customer)
            continue
        # Ended by whichever came first: the customer's revocation or the expiry.
        end = min(t for t in (revoked_at, expires_at) if t is not None)
        if last_end is None or end > last_end:
            latest[vendor_id] = (live, end, end == revoked_at and reason == "customer")
    for vendor_id, (live, _end, by_customer) in latest.items():
        if not live and by_customer:
            refusals[vendor_id] = CONNECTION_ENDED
    for vendor_id in session.scalars(blocked):
        refusals[vendor_id] = VENDOR_BLOCKED  # the stronger reason wins
    return refusals
