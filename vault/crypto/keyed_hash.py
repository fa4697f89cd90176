"""Keyed one-way identifiers: the e-mail blind index and stable pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def normalise_email(email: str) -> str:
    """Case-fold and trim, so lookups match however the person types their address."""
    return email.strip().casefold()


def blind_index(key: bytes, email: str) -> bytes:
    """HMAC-SHA256 of the normalised e-mail: lets login find an account without plaintext."""
    return hmac.new(key, b"email\x00" + normalise_email(email).encode(), hashlib.sha256).digest()


def pseudonym(key: bytes, namespace: str, subject_id: str) -> str:
    """A stable identifier that cannot be linked to ``subject_id`` without ``key``."""
    return next(iter(pseudonyms(key, namespace, [subject_id])))


def pseudonyms(key: bytes, namespace: str, subject_ids: Iterable[str]) -> dict[str, str]:
    """``pseudonym -> subject_id`` for many subjects of one namespace; the keyed prefix is
    hashed once, which is what makes mapping a vendor's whole customer base back cheap."""
    base = hmac.new(key, namespace.encode() + b"\x00", hashlib.sha256)
    result = {}
    for subject_id in subject_ids:
        digest = base.copy()
        digest.update(subject_id.encode())
        result[digest.hexdigest()] = subject_id
    return result
