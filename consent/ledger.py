"""The consent ledger's canonical form: what an event is, byte for byte, and its hash.

Each event's ``body`` is the canonical JSON (sorted keys, no spaces, UTF-8, non-ASCII kept)
of its 13 fields, ``seq`` and ``prev_hash`` among them, and its ``hash`` is the SHA-256 of
those bytes; ``prev_hash`` is the hash of the event before (64 zeros for the first). The
body is the single source of truth: whatever a store keeps beside it must agree with it.

This module and ``consent.ledger_verify`` need no database and no vault: an auditor can
check an exported ledger with them alone. The vault stores and appends events in
``vault.consents.ledger``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
HASHED_FIELDS = (
    "seq",
    "at",
    "event_type",
    "subject",
    "vendor_id",
    "channel",
    "topic",
    "prev_state",
    "new_state",
    "actor",
    "source",
    "notice_version",
    "prev_hash",
)
SOURCES = ("ui", "api", "unsubscribe", "system")

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_state(state: Any) -> str:
    return _ENCODER.encode(state)


def canonical_bytes(event: dict[str, Any]) -> bytes:
    """The definition: json.dumps of the 13 hashed fields, sorted keys, no spaces, UTF-8."""
    return _ENCODER.encode({name: event[name] for name in HASHED_FIELDS}).encode()


def event_hash(event: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(event)).hexdigest()


def timestamp(at: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a Z, e.g. 2026-11-23T17:30:00.000000Z
    (isoformat costs a third of strftime, and every append spells one)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def new_event(
    seq: int,
    prev_hash: str,
    *,
    event_type: str,
    subject: str,
    actor: str,
    source: str,
    vendor_id: str | None = None,
    channel: str | None = None,
    topic: str | None = None,
    prev_state: Any = None,
    new_state: Any = None,
    notice_version: int | None = None,
    at: datetime | None = None,
) -> tuple[str, str]:
    """The body and hash of the event that follows (seq - 1, prev_hash)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}")
    body = canonical_bytes(
        {
            "seq": seq,
            "at": timestamp(at or datetime.now(UTC)),
            "event_type": event_type,
            "subject": subject,
            "vendor_id": vendor_id,
            "channel": channel,
            "topic": topic,
            "prev_state": canonical_state(prev_state),
            "new_state": canonical_state(new_state),
            "actor": actor,
            "source": source,
            "notice_version": notice_version,
            "prev_hash": prev_hash,
        }
    )
    return body.decode(), hashlib.sha256(body).hexdigest()
