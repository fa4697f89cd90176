"""Master keys and keyed-hash secrets, behind a provider interface.

A ``KeyProvider`` wraps and unwraps per-customer data keys; the master key never leaves
it and never touches the database. ``LocalKeyProvider`` reads a keyring (JSON) from a
key file or from the ``VAULT_MASTER_KEY`` environment variable. A KMS-backed provider
would implement the same protocol, doing ``wrap``/``unwrap`` remotely.

Keyring document::

    {"format": "cmr-vault-keyring/1",
     "current": "mk-20261123-1a2b3c",
     "master_keys": {"mk-20261123-1a2b3c": "<base64 of 32 bytes>", ...},
     "secrets": {"blind_index": "<base64>", "pseudonym": "<base64>"}}

Several master keys exist only while a rotation is in progress; the secrets never rotate
with them because they index data that cannot be recomputed without decrypting it.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import secrets as _secrets
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from vault.crypto import aead

KEYRING_FORMAT = "cmr-vault-keyring/1"
SECRET_NAMES = ("blind_index", "pseudonym")
MAX_KEY_ID_LENGTH = 64  # DataKey.master_key_id is String(64)


class KeyringError(Exception):
    """The keyring is missing, malformed or cannot do what was asked."""


@dataclass(frozen=True)
class WrappedKey:
    master_key_id: str
    blob: bytes


class KeyProvider(Protocol):
    @property
    def current_key_id(self) -> str: ...

    def key_ids(self) -> frozenset[str]: ...

    def wrap(self, owner_id: str, data_key: bytes) -> WrappedKey: ...

    def unwrap(self, owner_id: str, wrapped: WrappedKey) -> bytes: ...

    def secret(self, name: str) -> bytes: ...


def _new_key_id() -> str:
    return f"mk-{datetime.now(UTC):%Y%m%d}-{_secrets.token_hex(3)}"


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise KeyringError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyringError(f"{what} is not valid base64") from exc
    if len(raw) != aead.KEY_BYTES:
        raise KeyringError(f"{what} must be {aead.KEY_BYTES} bytes, not {len(raw)}")
    return raw


@dataclass
class Keyring:
    current: str
    master_keys: dict[str, bytes]
    secrets: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def generate(cls) -> Keyring:
        key_id = _new_key_id()
        return cls(
            current=key_id,
            master_keys={key_id: aead.new_key()},
            secrets={name: aead.new_key() for name in SECRET_NAMES},
        )

    @classmethod
    def parse(cls, text: str) -> Keyring:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyringError(f"keyring is not JSON: {exc.msg}") from exc
        if not isinstance(document, Mapping) or document.get("format") != KEYRING_FORMAT:
            raise KeyringError(f"keyring must be a JSON object with format {KEYRING_FORMAT!r}")
        raw_keys = document.get("master_keys")
        if not isinstance(raw_keys, Mapping) or not raw_keys:
            raise KeyringError("keyring has no master_keys")
        for key_id in raw_keys:
            # Data keys record the id of the master key that wraps them in a 64-char column.
            if not key_id or len(key_id) > MAX_KEY_ID_LENGTH:
                raise KeyringError(
                    f"master key id {key_id!r} must be 1 to {MAX_KEY_ID_LENGTH} characters"
                )
        master_keys = {str(k): _unb64(v, f"master key {k!r}") for k, v in raw_keys.items()}
        current = document.get("current")
        if not isinstance(current, str) or current not in master_keys:
            raise KeyringError("keyring's current key is not among its master_keys")
        raw_secrets = document.get("secrets") or {}
        if not isinstance(raw_secrets, Mapping):
            raise KeyringError("keyring secrets must be an object")
        found = {str(k): _unb64(v, f"secret {k!r}") for k, v in raw_secrets.items()}
        missing = [name for name in SECRET_NAMES if name not in found]
        if missing:
            raise KeyringError(f"keyring lacks secrets: {', '.join(missing)}")
        return cls(current=current, master_keys=master_keys, secrets=found)

    def copy(self) -> Keyring:
        return Keyring(self.current, dict(self.master_keys), dict(self.secrets))

    def dumps(self) -> str:
        return json.dumps(
            {
                "format": KEYRING_FORMAT,
                "current": self.current,
                "master_keys": {k: _b64(v) for k, v in self.master_keys.items()},
                "secrets": {k: _b64(v) for k, v in self.secrets.items()},
            },
            indent=2,
        )


def write_keyring_file(path: Path, keyring: Keyring) -> None:
    """Atomically replace ``path`` (mode 0600) so an interruption leaves one whole keyring."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(keyring.dumps() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file_identity(result: os.stat_result) -> tuple[int, int, int, int]:
    # The keyring file is replaced atomically (a new inode each time), so the inode tells a
    # rewrite apart even where timestamps are too coarse to (two writes in one tick).
    return (result.st_dev, result.st_ino, result.st_mtime_ns, result.st_size)


def _read_keyring_file(path: Path) -> tuple[str, tuple[int, int, int, int]]:
    """The file's text and the identity of that very file (not of a later replacement)."""
    with path.open() as handle:
        identity = _file_identity(os.fstat(handle.fileno()))
        return handle.read(), identity


class LocalKeyProvider:
    """Master keys held in this process, loaded from a key file or an environment variable."""

    def __init__(
        self,
        keyring: Keyring,
        path: Path | None = None,
        _identity: tuple[int, int, int, int] | None = None,
    ) -> None:
        self._keyring_value = keyring
        self.path = path
        if path is not None and _identity is None:
            _identity = _file_identity(path.stat())
        self._loaded_identity = _identity

    @property
    def _keyring(self) -> Keyring:
        # Another process (`vault keys rotate`) may have rewritten the file: reload it, so
        # running servers wrap new keys under the new master key and can unwrap re-wrapped ones.
        if self.path is not None:
            try:
                identity = _file_identity(self.path.stat())
            except FileNotFoundError:
                identity = self._loaded_identity
            if identity != self._loaded_identity:
                text, identity = _read_keyring_file(self.path)
                self._keyring_value = Keyring.parse(text)
                self._loaded_identity = identity
        return self._keyring_value

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> LocalKeyProvider:
        path = Path(path)
        try:
            text, identity = _read_keyring_file(path)
        except FileNotFoundError as exc:
            raise KeyringError(
                f"master key file {path} does not exist (create one with "
                f"`vault keys generate --file {path}`)"
            ) from exc
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyringError(f"master key file {path} is readable by others (chmod 600 it)")
        return cls(Keyring.parse(text), path, identity)

    @classmethod
    def from_text(cls, text: str) -> LocalKeyProvider:
        return cls(Keyring.parse(text))

    @property
    def current_key_id(self) -> str:
        return self._keyring.current

    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keyring.master_keys)

    def wrap(self, owner_id: str, data_key: bytes) -> WrappedKey:
        keyring = self._keyring  # once: a reload between two reads could mix two keyrings
        key_id = keyring.current
        blob = aead.wrap_data_key(keyring.master_keys[key_id], key_id, owner_id, data_key)
        return WrappedKey(key_id, blob)

    def unwrap(self, owner_id: str, wrapped: WrappedKey) -> bytes:
        master = self._keyring.master_keys.get(wrapped.master_key_id)
        if master is None:
            raise KeyringError(
                f"master key {wrapped.master_key_id!r} is not in the keyring; it was retired "
                "or the wrong key file is configured"
            )
        return aead.unwrap_data_key(master, wrapped.master_key_id, owner_id, wrapped.blob)

    def secret(self, name: str) -> bytes:
        try:
            return self._keyring.secrets[name]
        except KeyError as exc:
            raise KeyringError(f"keyring has no secret {name!r}") from exc

    # Rotation needs to change the keyring itself, which only a file can persist.
    def _require_file(self) -> Path:
        if self.path is None:
            raise KeyringError(
                "the master key comes from VAULT_MASTER_KEY, which the vault cannot rewrite: "
                "to rotate, put the keyring in a file (mode 0600), set VAULT_MASTER_KEY_FILE "
                "to it instead of VAULT_MASTER_KEY, and run `vault keys rotate` again"
            )
        return self.path

    @contextmanager
    def rotation_lock(self) -> Iterator[None]:
        """Held for a whole rotation: two at once would each add a key and one would be lost
        from the file while data keys are wrapped under it."""
        path = self._require_file()
        lock_path = path.with_name(f".{path.name}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise KeyringError(
                    f"another key rotation holds {lock_path}; wait for it to finish"
                ) from exc
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def begin_rotation(self) -> str:
        """Make a fresh key current, keeping the old ones to unwrap until re-wrapping ends.

        If a rotation is already under way (more than one key), it is resumed instead.
        """
        path = self._require_file()
        # Change a copy: if writing the file fails, this process must not go on wrapping
        # data keys under a master key that exists nowhere else.
        keyring = self._keyring.copy()
        if len(keyring.master_keys) == 1:
            key_id = _new_key_id()
            keyring.master_keys[key_id] = aead.new_key()
            keyring.current = key_id
            self._save(path, keyring)
        return keyring.current

    def retire_all_but_current(self) -> list[str]:
        path = self._require_file()
        keyring = self._keyring.copy()
        retired = [k for k in keyring.master_keys if k != keyring.current]
        for key_id in retired:
            del keyring.master_keys[key_id]
        if retired:
            self._save(path, keyring)
        return retired

    def _save(self, path: Path, keyring: Keyring) -> None:
        write_keyring_file(path, keyring)
        self._keyring_value = keyring
        self._loaded_identity = _file_identity(path.stat())


def provider_from_config(config: Mapping[str, object]) -> LocalKeyProvider:
    text = config.get("VAULT_MASTER_KEY")
    if text:
        return LocalKeyProvider.from_text(str(text))
    path = config.get("VAULT_MASTER_KEY_FILE")
    if path:
        return LocalKeyProvider.from_file(str(path))
    raise KeyringError("no master key configured (VAULT_MASTER_KEY or VAULT_MASTER_KEY_FILE)")
