"""What the vendor consent API computes, without HTTP: subjects, batch checks, one
customer's view and consent requests. Every function is scoped to one vendor: another
vendor's customers and topics simply do not exist here.

A vendor's subjects are the customers who have (or had) an OAuth grant with it, named by
their pairwise ``sub`` (an HMAC of vendor id and user id, not invertible). The first grant
stores the pair (``vault.oauth.operations.remember_subject``), so mapping the subs of a
request back is an index lookup, however many customers the vendor has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from consent.engine import CHANNELS, Decision, Topic, VendorRef, decide
from vault.consents.models import ConsentRequest
from vault.consents.snapshot import (
    CONNECTION_ENDED,
    VENDOR_BLOCKED,
    load_consents,
    request_refusals,
)
from vault.errors import VaultError
from vault.oauth.operations import resolve_subjects
from vault.vendors.models import ContactTopic, Vendor

UNKNOWN_SUBJECT = "unknown_subject"
UNKNOWN_TOPIC = "unknown_topic"
UNKNOWN_CHANNEL = "unknown_channel"


# Built once (see vault.consents.snapshot._queries).
_VENDOR_TOPICS = select(ContactTopic).where(ContactTopic.vendor_id == bindparam("vendor_id"))


def vendor_topics(session: Session, vendor_id: str) -> dict[str, ContactTopic]:
    return {
        topic.name: topic for topic in session.scalars(_VENDOR_TOPICS, {"vendor_id": vendor_id})
    }


def _decision(decision: Decision, entry: dict[str, Any]) -> dict[str, Any]:
    entry["outcome"] = decision.outcome.value
    entry["rule"] = decision.rule.value
    entry["reason"] = decision.reason
    if decision.not_before is not None:
        entry["not_before"] = decision.not_before.isoformat()
    return entry


def check_batch(
    session: Session,
    vendor: Vendor,
    items: Sequence[dict[str, str]],
    now: datetime,
    *,
    only_user: str | None = None,
) -> list[dict[str, Any]]:
    """One result per item, in order: a decision, or an error for that item alone.

    Everything is loaded up front (subjects, topics, one batch snapshot of the customers
    named), then ``decide`` runs in memory for each item.
    """
    subjects = resolve_subjects(session, vendor.id, [item["sub"] for item in items], only_user)
    topics = {
        name: Topic(topic.name, topic.purpose)
        for name, topic in vendor_topics(session, vendor.id).items()
    }
    wanted = {subjects[item["sub"]] for item in items if item["sub"] in subjects}
    consents = load_consents(session, wanted, now, vendor_id=vendor.id)
    who = VendorRef(vendor.id, vendor.name)
    channels = frozenset(CHANNELS)
    results: list[dict[str, Any]] = []
    append = results.append
    for item in items:
        sub, channel, topic_name = item["sub"], item["channel"], item["topic"]
        entry: dict[str, Any] = {"sub": sub, "channel": channel, "topic": topic_name}
        user_id = subjects.get(sub)
        customer = consents.get(user_id) if user_id is not None else None
        topic = topics.get(topic_name)
        if customer is None:
            entry["error"] = UNKNOWN_SUBJECT
        elif topic is None:
            entry["error"] = UNKNOWN_TOPIC
        elif channel not in channels:
            entry["error"] = UNKNOWN_CHANNEL
        else:
            _decision(decide(customer, who, channel, topic, now), entry)
        append(entry)
    return results


def subject_view(
    session: Session, vendor: Vendor, sub: str, user_id: str, now: datetime
) -> dict[str, Any] | None:
    """The customer's settings that concern the vendor and the decision for every declared
    topic on every channel; None if the customer no longer exists."""
    consents = load_consents(session, [user_id], now, vendor_id=vendor.id).get(user_id)
    if consents is None:
        return None
    who = VendorRef(vendor.id, vendor.name)
    topics = []
    for name, row in sorted(vendor_topics(session, vendor.id).items()):
        topic = Topic(row.name, row.purpose)
        channels = []
        for channel in CHANNELS:
            setting = consents.topics.get((vendor.id, name, channel))
            entry: dict[str, Any] = {
                "channel": channel,
                "setting": None
                if setting is None
                else {
                    "state": setting.state.value,
                    "expires_at": setting.expires_at.isoformat() if setting.expires_at else None,
                    "notice_version": setting.notice_version,
                },
            }
            channels.append(_decision(decide(consents, who, channel, topic, now), entry))
        topics.append(
            {"topic": name, "purpose": row.purpose, "version": row.version, "channels": channels}
        )
    caps = consents.caps.get(vendor.id)
    quiet = consents.quiet_hours
    return {
        "sub": sub,
        "at": now.isoformat(),
        "account_active": consents.account_active,
        "active_relationship": vendor.id in consents.active_grant_vendors,
        "blocked": vendor.id in consents.blocked_vendors,
        "caps": {
            "per_day": caps.per_day if caps else None,
            "per_week": caps.per_week if caps else None,
        },
        "channels_off": [c for c in CHANNELS if c in consents.channels_off],
        "quiet_hours": None
        if quiet is None
        else {
            "start": quiet.start.strftime("%H:%M"),
            "end": quiet.end.strftime("%H:%M"),
            "timezone": quiet.timezone,
        },
        "topics": topics,
    }


class RequestError(VaultError, ValueError):
    """A consent request that cannot be accepted: an HTTP ``status``, a stable ``slug`` and
    a message for the vendor; ``retry_after`` (seconds) when it may be tried later.
    ``vault.errors`` answers it as problem+json (with ``Retry-After``)."""

    oauth_error = "invalid_request"

    def __init__(
        self,
        slug: str,
        title: str,
        detail: str,
        *,
        status: int = 422,
        retry_after: int | None = None,
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        super().__init__(detail, headers=headers)
        self.code = self.slug = slug
        self.title, self.status, self.retry_after = title, status, retry_after


# The customer no longer receives this business's requests
# (vault.consents.snapshot.request_refusals).
REFUSALS = {
    VENDOR_BLOCKED: (
        "vendor-blocked",
        "Blocked by the customer",
        "This customer blocked all contact from your business; consent requests are not delivered.",
    ),
    CONNECTION_ENDED: (
        "connection-ended",
        "Connection ended by the customer",
        "This customer ended their connection with your business; consent requests are not "
        "delivered until they connect again.",
    ),
}


@dataclass(frozen=True)
class RequestResult:
    request: ConsentRequest
    created: bool  # False: an identical pending request already existed


def request_consent(
    session: Session,
    vendor: Vendor,
    user_id: str,
    topic_names: Iterable[str],
    channels: Iterable[str],
    message: str,
    *,
    account_active: bool,
    now: datetime,
    admit: Callable[[], None] | None = None,
) -> RequestResult:
    """Store a pending request; an identical pending one (same topics and channels) is
    returned instead of a second copy.

    Refused (``RequestError``, nothing stored): a closed account (422), a customer who
    blocked the business or ended the connection (403, ``REFUSALS``), an undeclared topic
    (422). ``admit`` is called only when a new request would be stored, and may refuse it
    (the caller's rate limit: answering again with a pending request costs nothing)."""
    if not account_active:
        raise RequestError(
            "account-closed", "Account closed", "This customer closed their account."
        )
    refusal = request_refusals(session, user_id, now, [vendor.id]).get(vendor.id)
    if refusal is not None:
        slug, title, detail = REFUSALS[refusal]
        raise RequestError(slug, title, detail, status=403)
    declared = vendor_topics(session, vendor.id)
    names = list(dict.fromkeys(topic_names))
    unknown = [name for name in names if name not in declared]
    if unknown:
        raise RequestError(
            "unknown-topic",
            "Unknown topic",
            f"Your business has not declared: {', '.join(unknown)}.",
        )
    topic_ids = [declared[name].id for name in names]
    channel_list = [c for c in CHANNELS if c in set(channels)]
    for pending in session.scalars(
        select(ConsentRequest).where(
            ConsentRequest.vendor_id == vendor.id,
            ConsentRequest.user_id == user_id,
            ConsentRequest.status == "pending",
        )
    ):
        if set(pending.topics) == set(topic_ids) and set(pending.channels) == set(channel_list):
            return RequestResult(pending, created=False)
    if admit is not None:
        admit()
    row = ConsentRequest(
        vendor_id=vendor.id,
        user_id=user_id,
        topics=topic_ids,
        channels=channel_list,
        message=message,
        status="pending",
    )
    session.add(row)
    session.flush()
    return RequestResult(row, created=True)


def request_view(session: Session, row: ConsentRequest, sub: str) -> dict[str, Any]:
    names = {
        topic.id: topic.name
        for topic in session.scalars(select(ContactTopic).where(ContactTopic.id.in_(row.topics)))
    }
    return {
        "id": row.id,
        "sub": sub,
        "topics": [names[t] for t in row.topics if t in names],
        "channels": list(row.channels),
        "message": row.message,
        "status": row.status,
        "created_at": row.created_at.isoformat(),
        "answered_at": row.answered_at.isoformat() if row.answered_at else None,
    }
