from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from vault.accounts.models import User
from vault.crypto.keyring import KeyProvider
from vault.models import utcnow
from vault.oauth.operations import access_events, customer_grants, last_access_by_grant
from vault.profile.operations import load_profile

EXPORT_FORMAT = "cmr-vault-export/1"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


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
    }
