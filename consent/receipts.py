"""Consent receipts: JWS (ES256, key in the vault's JWKS) with Kantara Consent Receipt
v1.1 field names; the vault's own additions sit under one extension key.

Building, signing and checking a receipt needs no vault: the vault stores them and picks
the signing key (``vault.consents.receipts``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ALGORITHM = "ES256"  # any JOSE library verifies it
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


def sign(payload: dict[str, Any], key: Any) -> str:
    """The receipt as a compact JWS, signed with ``key`` (an EC P-256 key from joserfc;
    its ``kid`` goes into the header), verifiable with any JOSE library."""
    return jws.serialize_compact(
        {"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"},
        json.dumps(payload, separators=(",", ":"), sort_keys=True).encode(),
        key,
    )


def signed_ledger_events(token: str, keys: KeySet) -> list[ReceiptEvent]:
    """The ledger events a receipt names, once its signature checks out against one of
    ``keys`` (a vault's published keys, retired ones too: a receipt stays valid after a
    key rotation). A receipt kept by the customer is an anchor outside the vault: the
    ledger must still hold those events with those hashes. ValueError says what is wrong
    with the receipt."""
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
