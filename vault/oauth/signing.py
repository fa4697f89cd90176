"""The vault's signing keys: creation, rotation and the published JWKS.

ES256 is the vault's own algorithm (id_tokens by default, receipts, manifests). RS256 is
kept too because OpenID Connect makes it the one every relying party can verify; a client
registered with ``id_token_signed_response_alg=RS256`` gets RS256 id_tokens."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta

from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vault.crypto import aead
from vault.crypto.keyring import KeyProvider, WrappedKey
from vault.models import utcnow
from vault.oauth.models import SigningKey

ALGORITHM = "ES256"
ALGORITHMS = ("ES256", "RS256")
SigningJWK = ECKey | RSAKey


def key_owner(kid: str) -> str:
    return f"signing-key:{kid}"


def _generate(alg: str, kid: str) -> SigningJWK:
    parameters = {"kid": kid, "alg": alg, "use": "sig"}
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=parameters, private=True)
    if alg == "RS256":
        return RSAKey.generate_key(2048, parameters=parameters, private=True)
    raise ValueError(f"unsupported signing algorithm {alg!r}")


def create_signing_key(session: Session, keys: KeyProvider, alg: str = ALGORITHM) -> SigningKey:
    kid = f"{utcnow():%Y%m%d}-{alg.lower()}-{secrets.token_hex(4)}"
    key = _generate(alg, kid)
    data_key = aead.new_key()
    wrapped = keys.wrap(key_owner(kid), data_key)
    cipher = aead.FieldCipher(data_key, key_owner(kid))
    row = SigningKey(
        kid=kid,
        alg=alg,
        public_jwk=dict(key.as_dict(private=False)),
        private_key_ciphertext=cipher.encrypt(
            "private_jwk", json.dumps(key.as_dict(private=True)).encode()
        ),
        master_key_id=wrapped.master_key_id,
        wrapped_key=wrapped.blob,
    )
    session.add(row)
    session.flush()
    return row


def _current_row(session: Session, alg: str) -> SigningKey | None:
    return session.scalar(
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None), SigningKey.alg == alg)
        .order_by(SigningKey.created_at.desc())
        .limit(1)
    )


def current_signing_key(session: Session, keys: KeyProvider, alg: str = ALGORITHM) -> SigningJWK:
    """The newest unretired key for ``alg``, decrypted; one is created on first use."""
    row = _current_row(session, alg) or create_signing_key(session, keys, alg)
    return private_key(row, keys)


def ensure_signing_keys(session: Session, keys: KeyProvider) -> None:
    """A current key for every algorithm, so the JWKS is complete before anything is signed."""
    for alg in ALGORITHMS:
        if _current_row(session, alg) is None:
            create_signing_key(session, keys, alg)


def private_key(row: SigningKey, keys: KeyProvider) -> SigningJWK:
    data_key = keys.unwrap(key_owner(row.kid), WrappedKey(row.master_key_id, row.wrapped_key))
    cipher = aead.FieldCipher(data_key, key_owner(row.kid))
    document = json.loads(cipher.decrypt("private_jwk", row.private_key_ciphertext))
    return (ECKey if row.alg == "ES256" else RSAKey).import_key(document)


def rotate_signing_keys(
    session: Session, keys: KeyProvider, publish_for: timedelta
) -> tuple[dict[str, SigningKey], list[str]]:
    """Start signing with a new key per algorithm; old keys stay in the JWKS for
    ``publish_for``.

    ``publish_for`` must cover the longest lifetime of anything signed (id_tokens, and the
    receipts that later features sign stay verifiable for as long as they are kept).
    """
    now = utcnow()
    retired = []
    for row in session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
        row.retired_at = now
        row.publish_until = now + publish_for
        retired.append(row.kid)
    return {alg: create_signing_key(session, keys, alg) for alg in ALGORITHMS}, retired


def published_keys(session: Session, now: datetime | None = None) -> list[SigningKey]:
    now = now or utcnow()
    return list(
        session.scalars(
            select(SigningKey)
            .where(or_(SigningKey.publish_until.is_(None), SigningKey.publish_until > now))
            .order_by(SigningKey.created_at.desc())
        )
    )


def jwks(session: Session) -> dict[str, list[dict[str, str]]]:
    return {"keys": [dict(row.public_jwk) for row in published_keys(session)]}
