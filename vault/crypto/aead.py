"""AES-256-GCM for profile fields and for wrapping data keys.

Each ciphertext carries a version byte and a random 96-bit nonce. The associated data
names the owner and the purpose (field name, or key id for wrapped keys), so a
ciphertext copied to another customer or field fails authentication instead of
decrypting into the wrong place.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12
KEY_BYTES = 32


class DecryptionError(Exception):
    """A ciphertext did not authenticate under the key and context it was read with."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def _field_context(owner_id: str, field: str) -> bytes:
    return b"cmr-vault/field/v1\x00" + owner_id.encode() + b"\x00" + field.encode()


def _wrap_context(owner_id: str, master_key_id: str) -> bytes:
    return b"cmr-vault/data-key/v1\x00" + owner_id.encode() + b"\x00" + master_key_id.encode()


def _seal(aead: AESGCM, plaintext: bytes, associated_data: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_VERSION + nonce + aead.encrypt(nonce, plaintext, associated_data)


def _open(aead: AESGCM, blob: bytes, associated_data: bytes) -> bytes:
    if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != FORMAT_VERSION:
        raise DecryptionError("not a vault ciphertext (unknown format or truncated)")
    nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        return aead.decrypt(nonce, body, associated_data)
    except InvalidTag as exc:
        raise DecryptionError("ciphertext failed authentication") from exc


class FieldCipher:
    """Encrypts and decrypts the fields of one customer under their data key."""

    def __init__(self, data_key: bytes, owner_id: str) -> None:
        if len(data_key) != KEY_BYTES:
            raise ValueError("data keys are 256-bit")
        self._aead = AESGCM(data_key)
        self.owner_id = owner_id

    def encrypt(self, field: str, plaintext: bytes) -> bytes:
        return _seal(self._aead, plaintext, _field_context(self.owner_id, field))

    def decrypt(self, field: str, blob: bytes) -> bytes:
        try:
            return _open(self._aead, blob, _field_context(self.owner_id, field))
        except DecryptionError as exc:
            raise DecryptionError(
                f"field {field!r} of customer {self.owner_id} does not decrypt: the ciphertext "
                "was altered or belongs to another customer or field"
            ) from exc


def wrap_data_key(master_key: bytes, master_key_id: str, owner_id: str, data_key: bytes) -> bytes:
    return _seal(AESGCM(master_key), data_key, _wrap_context(owner_id, master_key_id))


def unwrap_data_key(master_key: bytes, master_key_id: str, owner_id: str, wrapped: bytes) -> bytes:
    try:
        return _open(AESGCM(master_key), wrapped, _wrap_context(owner_id, master_key_id))
    except DecryptionError as exc:
        raise DecryptionError(
            f"the data key of customer {owner_id} does not unwrap with master key {master_key_id!r}"
        ) from exc
