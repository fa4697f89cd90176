"""Keyed one-way identifiers: the e-mail blind index and stable pseudonyms."""

from __future__ import annotations

import hashlib
import hmac


def normalise_email(email: str) -> str:
    """Case-fold and trim, so lookups match however the person types their address."""
    return email.strip().casefold()


def blind_index(key: bytes, email: str) -> bytes:
    """HMAC-SHA256 of the normalised e-mail: lets login find an account without plaintext."""
    return hmac.new(key, b"email\x00" + normalise_email(email).encode(), hashlib.sha256).digest()


def pseudonym(key: bytes, namespace: str, subject_id: str) -> str:
    """A stable identifier that cannot be linked to ``subject_id`` without ``key``."""
    digest = hmac.new(key, namespace.encode() + b"\x00" + subject_id.encode(), hashlib.sha256)
    return digest.hexdigest()
