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


def phone_index(key: bytes, number: str) -> bytes:
    """HMAC-SHA256 of an E.164 phone number (the profile schema admits E.164 only, so the
    text is already canonical): says whether the number in the profile is the one that was
    confirmed, without keeping it in the clear outside the encrypted profile."""
    return hmac.new(key, b"phone\x00" + number.encode(), hashlib.sha256).digest()


def code_digest(key: bytes, *parts: str) -> bytes:
    """HMAC-SHA256 of a short one-time code and what it is bound to (``parts``, none
    containing NUL). Keyed, so a copy of the table does not let anyone try the million
    six-digit codes offline."""
    return hmac.new(
        key, b"code\x00" + b"\x00".join(p.encode() for p in parts), hashlib.sha256
    ).digest()


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
