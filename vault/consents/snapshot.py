"""Load what ``decide`` needs from the database, for one customer or for a whole batch."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, time, timedelta
from functools import cache, partial
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, String, any_, bindparam, func, or_, select
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

# The confirmed addresses (``consent.engine.ADDRESS_CHANNELS``). The e-mail always is: an
# account exists only once its sign-up link was followed, and a new address replaces it only
# once its own link was (vault.accounts.confirmations). The phone number is once its code
# was typed back, which ``User.phone_confirmed_index`` records until the number changes
# (vault.profile.phone): read in the same query as the account's status.
EMAIL_ONLY = frozenset({"email"})
WITH_PHONE = frozenset({"email", "sms", "phone"})

# Ids per IN (...) query on databases without a one-parameter set (see _id_sets).
CHUNK = 500
_NO_STRINGS: frozenset[str] = frozenset()


def _among(dialect: str) -> Callable[[ColumnElement[Any]], ColumnElement[bool]]:
    """``column`` is one of the ids bound as ``ids``: a JSON array read by ``json_each`` on
    SQLite, an array for ``= ANY`` on PostgreSQL, an expanding IN (...) elsewhere."""
    if dialect == "sqlite":
        values = func.json_each(bindparam("ids")).table_valued("value")
        return lambda column: column.in_(select(values.c.value))
    if dialect == "postgresql":
        return lambda column: column == any_(bindparam("ids", type_=ARRAY(String)))
    return lambda column: column.in_(bindparam("ids", expanding=True))


def _id_sets(dialect: str, ids: list[str]) -> list[Any]:
    """The values of ``ids`` for each query: the whole set as one parameter on SQLite and
    PostgreSQL (one query per table, and a statement whose SQL does not depend on the batch
    size: no IN of 10,000 parameters to render), chunks of ``CHUNK`` elsewhere."""
    if dialect == "sqlite":
        return [json.dumps(ids)]
    if dialect == "postgresql":
        return [ids]
    return [ids[start : start + CHUNK] for start in range(0, len(ids), CHUNK)]


class _Queries(NamedTuple):
    users: Select[Any]
    channels_off: Select[Any]
    vendor_prefs: Select[Any]
    topics: Select[Any]
    quiet: Select[Any]
    live_grants: Select[Any]
    history: Select[Any]


@cache
def _queries(dialect: str, by_vendor: bool) -> _Queries:
    """The seven statements, built once per database and kind: for one customer, building
    and keying them cost more than running them. Every table is read by ``user_id`` (and
    ``vendor_id`` with ``by_vendor``), through indexes that lead with the customer
    (migration 0013), so one customer's answer costs the same at any size of the business.
    Parameters: ``ids``, ``now``, ``since`` (a week before now) and ``vendor_id``."""
    among = _among(dialect)

    def of_vendor(query: Select[Any], column: ColumnElement[Any]) -> Select[Any]:
        return query.where(column == bindparam("vendor_id")) if by_vendor else query

    return _Queries(
        select(User.id, User.status, User.phone_confirmed_index.is_not(None)).where(among(User.id)),
        select(ChannelSetting.user_id, ChannelSetting.channel).where(
            among(ChannelSetting.user_id), ChannelSetting.enabled.is_(False)
        ),
        of_vendor(
            select(
                VendorPreference.user_id,
                VendorPreference.vendor_id,
                VendorPreference.blocked,
                VendorPreference.cap_per_day,
                VendorPreference.cap_per_week,
            ).where(among(VendorPreference.user_id)),
            VendorPreference.vendor_id,
        ),
        of_vendor(
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
            .where(among(TopicConsent.user_id)),
            TopicConsent.vendor_id,
        ),
        select(
            ConsentPreferences.user_id,
            ConsentPreferences.quiet_start,
            ConsentPreferences.quiet_end,
            ConsentPreferences.timezone,
        ).where(among(ConsentPreferences.user_id), ConsentPreferences.quiet_start.is_not(None)),
        of_vendor(
            select(Grant.user_id, Grant.vendor_id).where(
                among(Grant.user_id),
                Grant.revoked_at.is_(None),
                or_(Grant.expires_at.is_(None), Grant.expires_at > bindparam("now")),
            ),
            Grant.vendor_id,
        ),
        # Frequency caps count delivered messages (sent_at is set only on delivery).
        of_vendor(
            select(Message.user_id, Message.vendor_id, Message.channel, Message.sent_at).where(
                among(Message.user_id), Message.sent_at > bindparam("since")
            ),
            Message.vendor_id,
        ),
    )


def load_consents(
    session: Session, user_ids: Iterable[str], now: datetime, vendor_id: str | None = None
) -> dict[str, CustomerConsents]:
    """Settings of many customers in seven queries (per 500 customers on other databases).

    With ``vendor_id``, only what concerns that vendor is loaded (what a batch check needs).
    Unknown ids are simply absent from the result.

    Plain column queries on the session's connection, no ORM entities: a 10,000-customer
    batch is tens of thousands of rows, and building mapped objects for them would cost
    more than the queries.
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
    phones: set[str] = set()  # customers whose profile's phone number is confirmed
    states = {state.value: state for state in State}
    times: dict[str, time] = {}

    def clock(text: str) -> time:
        value = times.get(text)
        if value is None:
            value = times[text] = time.fromisoformat(text)
        return value

    if session.autoflush:
        session.flush()  # the statements run on the connection, past the session's autoflush
    connection = session.connection()
    dialect = connection.dialect.name
    queries = _queries(dialect, vendor_id is not None)
    for chunk in _id_sets(dialect, ids) if ids else ():
        params = {"ids": chunk, "now": now, "since": now - timedelta(days=7)}
        if vendor_id is not None:
            params["vendor_id"] = vendor_id
        run = partial(connection.execute, parameters=params)
        for user_id, status, phone_confirmed in run(queries.users):
            active[user_id] = status == AccountStatus.ACTIVE
            if phone_confirmed:
                phones.add(user_id)
        for user_id, channel in run(queries.channels_off):
            channels_off[user_id].add(channel)
        for user_id, pref_vendor, is_blocked, per_day, per_week in run(queries.vendor_prefs):
            if is_blocked:
                blocked[user_id].add(pref_vendor)
            if per_day is not None or per_week is not None:
                caps[user_id][pref_vendor] = Caps(per_day, per_week)
        for (
            user_id,
            consent_vendor,
            topic_name,
            channel,
            state,
            expires_at,
            version,
        ) in run(queries.topics):
            topics[user_id][(consent_vendor, topic_name, channel)] = TopicSetting(
                states[state], expires_at, version
            )
        for user_id, start, end, zone in run(queries.quiet):
            quiet[user_id] = QuietHours(clock(start), clock(end), zone)
        for user_id, grant_vendor in run(queries.live_grants):
            grants[user_id].add(grant_vendor)
        for user_id, sent_vendor, channel, at in run(queries.history):
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
            confirmed_channels=WITH_PHONE if user_id in phones else EMAIL_ONLY,
        )
        for user_id, is_active in active.items()
    }


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
