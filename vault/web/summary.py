"""The few numbers the overview page shows a customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from vault.consents.models import ConsentRequest, TopicConsent
from vault.models import utcnow
from vault.oauth.models import AccessEvent, Grant


@dataclass(frozen=True)
class CustomerSummary:
    connected_businesses: int
    reads_last_30_days: int
    allowed_contacts: int
    pending_requests: int


def customer_summary(session: Session, user_id: str) -> CustomerSummary:
    now = utcnow()

    def count(query: object) -> int:
        return session.scalar(query) or 0  # type: ignore[arg-type]

    return CustomerSummary(
        connected_businesses=count(
            select(func.count(func.distinct(Grant.vendor_id))).where(
                Grant.user_id == user_id,
                Grant.revoked_at.is_(None),
                or_(Grant.expires_at.is_(None), Grant.expires_at > now),
            )
        ),
        reads_last_30_days=count(
            select(func.count()).where(
                AccessEvent.user_id == user_id, AccessEvent.at > now - timedelta(days=30)
            )
        ),
        allowed_contacts=count(
            select(func.count()).where(
                TopicConsent.user_id == user_id,
                TopicConsent.state == "granted",
                or_(TopicConsent.expires_at.is_(None), TopicConsent.expires_at > now),
            )
        ),
        pending_requests=count(
            select(func.count()).where(
                ConsentRequest.user_id == user_id, ConsentRequest.status == "pending"
            )
        ),
    )
