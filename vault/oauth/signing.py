"""The vault's ES256 signing keys: creation, rotation and the published JWKS."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta

from joserfc.jwk import ECKey
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vault.crypto import aead
from vault.crypto.keyring import KeyProvider, WrappedKey
from vault.models import utcnow
from vault.oauth.models import SigningKey

ALGORITHM = "ES256"


def key_owner(kid: str) -> str:
    return f"signing-key:{kid}"


def create_signing_key(session: Session, keys: KeyProvider) -> SigningKey:
    kid = f"{utcnow():%Y%m%d}-{secrets.token_hex(4)}"
    key = ECKey.generate_key(
        "P-256", parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"}, private=True
    )
    data_key = aead.new_key()
    wrapped = keys.wrap(key_owner(kid), data_key)
    cipher = aead.FieldCipher(data_key, key_owner(kid))
    row = SigningKey(
        kid=kid,
        alg=ALGORITHM,
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


def current_signing_key(session: Session, keys: KeyProvider) -> ECKey:
    """The newest unretired key, decrypted; one is created on first use."""
    row = session.scalar(
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc())
        .limit(1)
    )
    if row is None:
        row = create_signing_key(session, keys)
    return private_key(row, keys)


def private_key(row: SigningKey, keys: KeyProvider) -> ECKey:
    data_key = keys.unwrap(key_owner(row.kid), WrappedKey(row.master_key_id, row.wrapped_key))
    cipher = aead.FieldCipher(data_key, key_owner(row.kid))
    return ECKey.import_key(json.loads(cipher.decrypt("private_jwk", row.private_key_ciphertext)))


def rotate_signing_key(
    session: Session, keys: KeyProvider, publish_for: timedelta
) -> tuple[SigningKey, list[str]]:
    """Start signing with a new key; old keys stay in the JWKS for ``publish_for``.

    ``publish_for`` must cover the longest lifetime of anything signed (id_tokens, and the
    receipts that later features sign stay verifiable for as long as they are kept).
    """
    now = utcnow()
    retired = []
    for row in session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
        row.retired_at = now
        row.publish_until = now + publish_for
        retired.append(row.kid)
    return create_signing_key(session, keys), retired


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
