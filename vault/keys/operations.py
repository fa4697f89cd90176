"""Data-key lifecycle. Field ciphertexts are never touched here: only wrapped keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vault.crypto import aead
from vault.crypto.keyring import KeyProvider, KeyringError, LocalKeyProvider, WrappedKey
from vault.keys.models import DataKey, KeyCheck
from vault.models import utcnow


class DataKeyShredded(Exception):
    """The customer's data key was destroyed: their profile can no longer be decrypted."""


def create_data_key(session: Session, keys: KeyProvider, user_id: str) -> aead.FieldCipher:
    data_key = aead.new_key()
    wrapped = keys.wrap(user_id, data_key)
    session.add(
        DataKey(user_id=user_id, master_key_id=wrapped.master_key_id, wrapped_key=wrapped.blob)
    )
    return aead.FieldCipher(data_key, user_id)


def cipher_for(session: Session, keys: KeyProvider, user_id: str) -> aead.FieldCipher:
    row = session.get(DataKey, user_id)
    if row is None:
        raise DataKeyShredded(f"customer {user_id} has no data key (account deleted)")
    data_key = keys.unwrap(user_id, WrappedKey(row.master_key_id, row.wrapped_key))
    return aead.FieldCipher(data_key, user_id)


def shred(session: Session, user_id: str) -> None:
    session.execute(delete(DataKey).where(DataKey.user_id == user_id))


@dataclass(frozen=True)
class WrappedKeyTable:
    """A table whose rows hold a key wrapped by the master key (columns ``master_key_id``
    and ``wrapped_key``); ``owner`` gives the id the wrapping is bound to."""

    model: Any
    owner: Callable[[Any], str]
    order_by: Any
    # Counted in progress and reports; the key check value is nobody's key, so it is not.
    counted: bool = True


def wrapped_key_tables() -> list[WrappedKeyTable]:
    """Everything master-key rotation must re-wrap: customers' data keys, signing keys,
    webhook signing secrets and the key check value (``vault.keys.check``), which must
    always open under the current keyring."""
    from vault.keys.check import KEY_CHECK_OWNER
    from vault.oauth.models import SigningKey
    from vault.oauth.signing import key_owner
    from vault.webhooks.models import WebhookEndpoint, secret_owner

    return [
        WrappedKeyTable(DataKey, lambda row: row.user_id, DataKey.user_id),
        WrappedKeyTable(SigningKey, lambda row: key_owner(row.kid), SigningKey.kid),
        WrappedKeyTable(KeyCheck, lambda row: KEY_CHECK_OWNER, KeyCheck.id, counted=False),
        WrappedKeyTable(
            WebhookEndpoint, lambda row: secret_owner(row.vendor_id), WebhookEndpoint.vendor_id
        ),
    ]


def count_wrapped_under_other_keys(
    session: Session, current_key_id: str, *, counted_only: bool = False
) -> int:
    return sum(
        session.scalar(
            select(func.count())
            .select_from(table.model)
            .where(table.model.master_key_id != current_key_id)
        )
        or 0
        for table in wrapped_key_tables()
        if table.counted or not counted_only
    )


def rewrap_all(
    session: Session,
    keys: KeyProvider,
    *,
    batch_size: int = 500,
    on_progress: Callable[[int], None] = lambda done: None,
) -> int:
    """Re-wrap every data key not yet under the current master key; commit per batch.

    Safe to interrupt and rerun: each committed batch is finished work, and the next run
    picks up only the keys still wrapped under an older master key.
    """
    total = 0
    for table in wrapped_key_tables():
        model = table.model
        while True:
            # Read per batch, in step with what ``keys.wrap`` uses: were the keyring replaced
            # mid-run, rows just wrapped under its new current key must not be selected again.
            current = keys.current_key_id
            rows = session.scalars(
                select(model)
                .where(model.master_key_id != current)
                .order_by(table.order_by)
                .limit(batch_size)
            ).all()
            if not rows:
                break
            for row in rows:
                owner = table.owner(row)
                data_key = keys.unwrap(owner, WrappedKey(row.master_key_id, row.wrapped_key))
                wrapped = keys.wrap(owner, data_key)
                row.master_key_id, row.wrapped_key = wrapped.master_key_id, wrapped.blob
                if hasattr(row, "wrapped_at"):
                    row.wrapped_at = utcnow()
            session.commit()
            if table.counted:
                total += len(rows)
                on_progress(len(rows))
    return total


def rotate_master_key(
    session: Session,
    keys: LocalKeyProvider,
    *,
    on_start: Callable[[int], None] = lambda total: None,
    on_progress: Callable[[int], None] = lambda done: None,
) -> tuple[str, list[str], int]:
    """Introduce a new master key, re-wrap every data key, then drop the old keys.

    Returns (new key id, retired key ids, number of keys re-wrapped).
    """
    with keys.rotation_lock():
        new_key_id = keys.begin_rotation()
        on_start(count_wrapped_under_other_keys(session, new_key_id, counted_only=True))
        rewrapped = rewrap_all(session, keys, on_progress=on_progress)
        left = count_wrapped_under_other_keys(session, new_key_id)
        if left or keys.current_key_id != new_key_id:
            raise KeyringError(
                "some data keys are still wrapped under another master key than "
                f"{new_key_id!r}; nothing was retired, run `vault keys rotate` again"
            )
        retired = keys.retire_all_but_current()
    return new_key_id, retired, rewrapped
