"""Does the configured keyring open this vault? Checked at start, refused with a message.

A wrong master key makes every profile unreadable, and a wrong blind-index secret makes
every customer's log-in fail as if the password were wrong. So the vault keeps a key check
value beside its wrapped keys (``KeyCheck``): a fixed value wrapped by the master key, and
an HMAC of a fixed label under each keyed-hash secret. The first start after migration
records it with the keyring in use, after proving that keyring opens a data key or signing
key already in the database (a vault from before the check); every later start checks it.
Master-key rotation re-wraps the check with the data keys (``wrapped_key_tables``).
"""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vault.crypto.aead import DecryptionError
from vault.crypto.keyring import SECRET_NAMES, KeyProvider, KeyringError, WrappedKey
from vault.keys.models import DataKey, KeyCheck

KEY_CHECK_ID = 1
KEY_CHECK_OWNER = "vault:key-check"
_LABEL = b"CMR Vault key check v1"
KEY_CHECK_VALUE = hashlib.sha256(_LABEL).digest()  # 32 bytes, wrapped like a data key


class KeyMismatch(KeyringError):
    """The configured keyring is not the one this vault's data was sealed with."""


def _secret_checks(keys: KeyProvider) -> dict[str, str]:
    return {
        name: hmac.new(keys.secret(name), _LABEL, hashlib.sha256).hexdigest()
        for name in SECRET_NAMES
    }


def _where(keys: KeyProvider) -> str:
    path = getattr(keys, "path", None)
    return f"the keyring in {path}" if path else "the keyring in VAULT_MASTER_KEY"


def _unwrap(keys: KeyProvider, owner: str, wrapped: WrappedKey, what: str) -> bytes:
    if wrapped.master_key_id not in keys.key_ids():
        raise KeyMismatch(
            f"{_where(keys)} does not open this vault: {what} is wrapped under master key "
            f"{wrapped.master_key_id!r}, which this keyring does not hold (it holds "
            f"{', '.join(sorted(keys.key_ids()))}). Configure the keyring this vault was "
            "created with (or its latest rotation)."
        )
    try:
        return keys.unwrap(owner, wrapped)
    except DecryptionError:
        raise KeyMismatch(
            f"{_where(keys)} does not open this vault: its master key "
            f"{wrapped.master_key_id!r} is not the key {what} was wrapped with (the key "
            "file is damaged or belongs to another vault)."
        ) from None


def _prove_on_existing_keys(session: Session, keys: KeyProvider) -> None:
    """Before the first check value is written: the keyring must open what exists."""
    from vault.oauth.models import SigningKey
    from vault.oauth.signing import key_owner

    data_key = session.scalars(select(DataKey).limit(1)).first()
    if data_key is not None:
        _unwrap(
            keys,
            data_key.user_id,
            WrappedKey(data_key.master_key_id, data_key.wrapped_key),
            "a customer's data key",
        )
    signing_key = session.scalars(select(SigningKey).limit(1)).first()
    if signing_key is not None:
        _unwrap(
            keys,
            key_owner(signing_key.kid),
            WrappedKey(signing_key.master_key_id, signing_key.wrapped_key),
            "a signing key",
        )


def verify(session: Session, keys: KeyProvider, row: KeyCheck) -> None:
    value = _unwrap(
        keys,
        KEY_CHECK_OWNER,
        WrappedKey(row.master_key_id, row.wrapped_key),
        "this vault's key check",
    )
    if not hmac.compare_digest(value, KEY_CHECK_VALUE):
        raise KeyMismatch(f"{_where(keys)} does not open this vault's key check value.")
    expected = _secret_checks(keys)
    for name, check in sorted((row.secret_checks or {}).items()):
        if name in expected and not hmac.compare_digest(check, expected[name]):
            raise KeyMismatch(
                f"{_where(keys)} holds another {name!r} secret than the one this vault was "
                "created with: "
                + (
                    "no customer could log in (their e-mail addresses are looked up by it)."
                    if name == "blind_index"
                    else "every business would see new subject ids for its customers."
                )
                + " Configure the keyring this vault was created with."
            )


def check_keys(session: Session, keys: KeyProvider) -> str:
    """Verify the keyring against this vault, or record the check value on first use.

    Returns ``"verified"`` or ``"recorded"``; raises ``KeyMismatch`` with a message for
    the operator. Flushes; the caller commits (a lost race to record rolls back)."""
    row = session.get(KeyCheck, KEY_CHECK_ID)
    if row is not None:
        verify(session, keys, row)
        return "verified"
    _prove_on_existing_keys(session, keys)
    wrapped = keys.wrap(KEY_CHECK_OWNER, KEY_CHECK_VALUE)
    session.add(
        KeyCheck(
            id=KEY_CHECK_ID,
            master_key_id=wrapped.master_key_id,
            wrapped_key=wrapped.blob,
            secret_checks=_secret_checks(keys),
        )
    )
    try:
        session.flush()
    except IntegrityError:
        # Another process (a second gunicorn worker) recorded it first: check against it.
        session.rollback()
        row = session.get(KeyCheck, KEY_CHECK_ID)
        assert row is not None
        verify(session, keys, row)
        return "verified"
    return "recorded"
