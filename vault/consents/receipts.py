"""Consent receipts the vault issues: signed with its current ES256 key and stored for the
customer. What a receipt says, and how it is signed and checked, is ``consent.receipts``."""

from __future__ import annotations

from datetime import UTC, datetime

from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.receipts import (
    ALGORITHM,
    ReceiptEvent,
    ReceiptPurpose,
    build_payload,
    sign,
)
from consent.receipts import signed_ledger_events as _signed_ledger_events
from vault.consents.models import ConsentReceipt
from vault.crypto.keyring import KeyProvider
from vault.models import new_id
from vault.oauth.models import SigningKey
from vault.oauth.signing import current_signing_key


def issue(
    session: Session,
    keys: KeyProvider,
    *,
    user_id: str,
    vendor_id: str | None,
    kind: str,
    subject: str,
    controller_name: str,
    policy_url: str | None,
    collection_method: str,
    purposes: list[ReceiptPurpose],
    events: list[ReceiptEvent],
    jurisdiction: str = "EU",
    at: datetime | None = None,
    controller_url: str | None = None,
) -> ConsentReceipt:
    """Sign and store a receipt in the caller's transaction."""
    at = at or datetime.now(UTC)
    key = current_signing_key(session, keys, ALGORITHM)
    receipt_id = new_id()
    payload = build_payload(
        receipt_id=receipt_id,
        kind=kind,
        at=at,
        subject=subject,
        controller_name=controller_name,
        controller_id=vendor_id,
        policy_url=policy_url,
        collection_method=collection_method,
        purposes=purposes,
        events=events,
        jurisdiction=jurisdiction,
        public_key=dict(key.as_dict(private=False)),
        controller_url=controller_url,
    )
    receipt = ConsentReceipt(
        id=receipt_id,
        user_id=user_id,
        vendor_id=vendor_id,
        kind=kind,
        ledger_seq=events[-1].seq,
        jws=sign(payload, key),
        created_at=at,
    )
    session.add(receipt)
    return receipt


def signed_ledger_events(session: Session, token: str) -> list[ReceiptEvent]:
    """The ledger events a receipt names, if one of this vault's signing keys (retired ones
    too) signed it; ValueError otherwise."""
    published = {"keys": [dict(jwk) for jwk in session.scalars(select(SigningKey.public_jwk))]}
    return _signed_ledger_events(token, KeySet.import_key_set(published))
