from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.engine import CHANNELS
from vault.accounts.models import User
from vault.consents.models import (
    ChannelSetting,
    ConsentPreferences,
    ConsentRequest,
    TopicConsent,
    VendorPreference,
)
from vault.consents.operations import list_receipts
from vault.crypto.keyring import KeyProvider
from vault.models import utcnow
from vault.oauth.operations import access_events, customer_grants, last_access_by_grant
from vault.profile.operations import load_profile

EXPORT_FORMAT = "cmr-vault-export/1"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _consents(session: Session, user_id: str) -> dict[str, Any]:
    """The customer's contact preferences: switches, quiet hours, businesses, topics."""
    switches = {
        row.channel: row.enabled
        for row in session.scalars(select(ChannelSetting).where(ChannelSetting.user_id == user_id))
    }
    prefs = session.get(ConsentPreferences, user_id)
    return {
        "channels": {channel: switches.get(channel, True) for channel in CHANNELS},
        "quiet_hours": (
            {"start": prefs.quiet_start, "end": prefs.quiet_end, "timezone": prefs.timezone}
            if prefs is not None and prefs.quiet_start
            else None
        ),
        "businesses": [
            {
                "business": row.vendor.name,
                "vendor_id": row.vendor_id,
                "blocked": row.blocked,
                "cap_per_day": row.cap_per_day,
                "cap_per_week": row.cap_per_week,
                "updated_at": _iso(row.updated_at),
            }
            for row in session.scalars(
                select(VendorPreference)
                .where(VendorPreference.user_id == user_id)
                .order_by(VendorPreference.vendor_id)
            )
        ],
        "topics": [
            {
                "business": row.topic.vendor.name,
                "vendor_id": row.vendor_id,
                "topic": row.topic.name,
                "purpose": row.topic.purpose,
                "channel": row.channel,
                "state": row.state,
                "expires_at": _iso(row.expires_at),
                "notice_version": row.notice_version,
                "source": row.source,
                "updated_at": _iso(row.updated_at),
            }
            for row in session.scalars(
                select(TopicConsent)
                .where(TopicConsent.user_id == user_id)
                .order_by(TopicConsent.vendor_id, TopicConsent.topic_id, TopicConsent.channel)
            )
        ],
        "requests": [
            {
                "id": row.id,
                "business": row.vendor.name,
                "topics": row.topics,
                "channels": row.channels,
                "message": row.message,
                "status": row.status,
                "created_at": _iso(row.created_at),
                "answered_at": _iso(row.answered_at),
            }
            for row in session.scalars(
                select(ConsentRequest)
                .where(ConsentRequest.user_id == user_id)
                .order_by(ConsentRequest.created_at)
            )
        ],
    }


def build_export(session: Session, keys: KeyProvider, user: User) -> dict[str, Any]:
    """The GDPR Art. 20 document. New features add their sections here as they are built."""
    last_access = last_access_by_grant(session, user.id)
    return {
        "format": EXPORT_FORMAT,
        "generated_at": _iso(utcnow()),
        "account": {
            "id": user.id,
            "role": str(user.role),
            "status": str(user.status),
            "created_at": _iso(user.created_at),
            "password_changed_at": _iso(user.password_changed_at),
            "two_factor_enabled": user.totp_enabled,
            "recovery_codes_left": len(user.recovery_code_hashes or []),
            # When the profile's phone number was confirmed by its code (None: it is not).
            "phone_confirmed_at": _iso(user.phone_confirmed_at),
        },
        "profile": load_profile(session, keys, user.id),
        "grants": [
            {
                "id": grant.id,
                "business": grant.vendor.name,
                "client_id": grant.client_id,
                "scopes": grant.scopes,
                "created_at": _iso(grant.created_at),
                "expires_at": _iso(grant.expires_at),
                "revoked_at": _iso(grant.revoked_at),
                "last_access_at": _iso(last_access.get(grant.id)),
            }
            for grant in customer_grants(session, user.id)
        ],
        "access_log": [
            {
                "at": _iso(event.at),
                "business": event.vendor.name,
                "grant_id": event.grant_id,
                "claims": event.claims,
                "endpoint": event.endpoint,
            }
            for event in access_events(session, user.id, limit=None)
        ],
        "consents": _consents(session, user.id),
        "consent_receipts": [
            {
                "id": receipt.id,
                "kind": receipt.kind,
                "business": receipt.vendor.name if receipt.vendor else None,
                "created_at": _iso(receipt.created_at),
                "ledger_seq": receipt.ledger_seq,
                "jws": receipt.jws,
            }
            for receipt in list_receipts(session, user.id)
        ],
    }
