"""argon2id password hashing (argon2-cffi), with costs from configuration."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


class Passwords:
    def __init__(self, time_cost: int, memory_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
        )

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> Passwords:
        return cls(
            int(config["VAULT_ARGON2_TIME_COST"]),  # type: ignore[call-overload]
            int(config["VAULT_ARGON2_MEMORY_COST"]),  # type: ignore[call-overload]
            int(config["VAULT_ARGON2_PARALLELISM"]),  # type: ignore[call-overload]
        )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    @cached_property
    def _decoy(self) -> str:
        return self._hasher.hash("decoy password that matches no account")

    def verify(self, stored: str | None, password: str) -> bool:
        """Check ``password``; with no stored hash, spend the same time and say no.

        Hashing against a decoy keeps unknown e-mails and wrong passwords alike in timing.
        """
        try:
            return self._hasher.verify(stored or self._decoy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)
