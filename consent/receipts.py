"""Consent receipts: JWS (ES256, key in the vault's JWKS) with Kantara Consent Receipt
v1.1 field names; the vault's own additions sit under one extension key."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.models import ConsentReceipt
from vault.crypto.keyring import KeyProvider
from vault.models import new_id
from vault.oauth.models import SigningKey
from vault.oauth.signing import ALGORITHM, current_signing_key

EXTENSION_KEY = "cmrVault"
KANTARA_VERSION = "KI-CR-v1.1.0"


@dataclass(frozen=True)
class ReceiptPurpose:
    purpose: str  # the topic (or scope) in words
    category: str  # service, marketing, research, other, data-sharing
    consent_type: str  # EXPLICIT
    channel: str | None
    state: str  # granted, withdrawn, ended
    notice_version: int | None
    termination: str  # how and when it ends
    pii_categories: list[str] = field(default_factory=list)
    topic: str | None = None  # the vendor's topic name, for topic consents


@dataclass(frozen=True)
class ReceiptEvent:
    seq: int
    hash: str
    event_type: str


def build_payload(
    *,
    receipt_id: str,
    kind: str,
    at: datetime,
    subject: str,
    controller_name: str,
    controller_id: str | None,
    policy_url: str | None,
    collection_method: str,
    purposes: list[ReceiptPurpose],
    events: list[ReceiptEvent],
    jurisdiction: str,
    public_key: dict[str, Any],
    controller_url: str | None = None,
) -> dict[str, Any]:
    return {
        "version": KANTARA_VERSION,
        "jurisdiction": jurisdiction,
        "consentTimestamp": int(at.timestamp()),
        "collectionMethod": collection_method,
        "consentReceiptID": receipt_id,
        "publicKey": public_key,
        "language": "en",
        "piiPrincipalId": subject,
        "piiControllers": [
            {
                "piiController": controller_name,
                "onBehalf": False,
                "contact": controller_name,
                "piiControllerUrl": controller_url or policy_url or "",
            }
        ],
        "policyUrl": policy_url or "",
        "services": [
            {
                "service": controller_name,
                "purposes": [
                    {
                        "purpose": p.purpose,
                        "purposeCategory": [p.category],
                        "consentType": p.consent_type,
                        "piiCategory": p.pii_categories or ["contact details"],
                        "primaryPurpose": True,
                        "termination": p.termination,
                        "thirdPartyDisclosure": False,
                    }
                    for p in purposes
                ],
            }
        ],
        "sensitive": False,
        "spiCat": [],
        EXTENSION_KEY: {
            "kind": kind,
            "vendorId": controller_id,
            "changes": [
                {
                    "purpose": p.purpose,
                    "topic": p.topic,
                    "channel": p.channel,
                    "state": p.state,
                    "noticeVersion": p.notice_version,
                }
                for p in purposes
            ],
            "ledger": [{"seq": e.seq, "hash": e.hash, "eventType": e.event_type} for e in events],
        },
    }


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
    token = jws.serialize_compact(
        {"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"},
        json.dumps(payload, separators=(",", ":"), sort_keys=True).encode(),
        key,
    )
    receipt = ConsentReceipt(
        id=receipt_id,
        user_id=user_id,
        vendor_id=vendor_id,
        kind=kind,
        ledger_seq=events[-1].seq,
        jws=token,
        created_at=at,
    )
    session.add(receipt)
    return receipt


def signed_ledger_events(session: Session, token: str) -> list[ReceiptEvent]:
    """The ledger events a receipt names, once its signature checks out against one of the
    vault's signing keys (retired ones too: a receipt stays valid after a key rotation).
    A receipt kept by the customer is an anchor outside the vault: the ledger must still
    hold those events with those hashes. ValueError says what is wrong with the receipt."""
    keys = KeySet.import_key_set(
        {"keys": [dict(public) for public in session.scalars(select(SigningKey.public_jwk))]}
    )
    try:
        verified = jws.deserialize_compact(token.strip(), keys, algorithms=[ALGORITHM])
        payload = json.loads(verified.payload)
    except (JoseError, ValueError) as error:
        raise ValueError(f"not a receipt signed by this vault ({error})") from None
    events = payload.get(EXTENSION_KEY, {}).get("ledger") if isinstance(payload, dict) else None
    try:
        return [ReceiptEvent(int(e["seq"]), str(e["hash"]), str(e["eventType"])) for e in events]
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"the receipt names no ledger events under {EXTENSION_KEY}") from None
