"""Guessing limits per account: growing delays, never a lock.

Every password or second-factor check first *claims* an attempt for its subject (the
account, see ``GuessThrottle``): one atomic UPDATE counts it as a failure in advance and
sets when the next attempt may come, but only if that time has come already. A correct
guess then forgets the subject's failures. So parallel guesses all count (each UPDATE
adds one to what the last one left, on SQLite and PostgreSQL alike), and none slips in
between a check and its count. The first ``free_attempts`` failures cost nothing; after
that each waits twice as long as the one before, up to ``max_delay``. Waiting always ends:
nobody can lock a customer out for good, and a trusted device (``vault.accounts.devices``)
counts apart from the shared account counter, so a stranger's guesses do not even delay
the customer's own browser.

These statements run in a transaction of their own and commit at once: a failure must
stay counted when the request's own work rolls back, and a parallel request must see it.
Failures are forgotten after a day without any (``FORGET_AFTER``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, delete, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from vault.accounts.models import GuessThrottle
from vault.models import UTCDateTime

FORGET_AFTER = timedelta(days=1)

# Scopes: what was guessed, and whether the guess came from a trusted device.
PASSWORD = "password"  # noqa: S105 (a counter's name)
SECOND_FACTOR = "second_factor"
DEVICE_PASSWORD = "device_password"  # noqa: S105
DEVICE_SECOND_FACTOR = "device_2fa"

_table = GuessThrottle.__table__


class TooManyGuesses(Exception):
    """The subject must wait before its next guess."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"wait {retry_after} s")
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        return f"Too many wrong attempts. Wait {describe_wait(self.retry_after)} and try again."


def describe_wait(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


@dataclass(frozen=True)
class GuessPolicy:
    free_attempts: int = 5
    delay: int = 15  # seconds after the last free failure; doubles with each failure after
    max_delay: int = 900

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GuessPolicy:
        return cls(
            int(config["VAULT_GUESS_FREE_ATTEMPTS"]),
            int(config["VAULT_GUESS_DELAY"]),
            int(config["VAULT_GUESS_MAX_DELAY"]),
        )

    def wait_after(self, failures: int) -> int:
        """Seconds to wait after ``failures`` failures in a row."""
        if failures < self.free_attempts or self.delay <= 0:
            return 0
        return min(self.delay * 2 ** (failures - self.free_attempts), self.max_delay)

    def schedule(self) -> list[int]:
        """The distinct waits from the first delayed failure until the cap."""
        waits = []
        failures = self.free_attempts
        while self.delay > 0:
            wait = self.wait_after(failures)
            waits.append(wait)
            if wait >= self.max_delay:
                break
            failures += 1
        return waits


def subject_of(*parts: str | bytes) -> bytes:
    """A 32-byte subject from identifiers (never stored in the clear)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\x00")
    return digest.digest()


def _ensure_row(connection: Connection, scope: str, subject: bytes, now: datetime) -> None:
    values = {"scope": scope, "subject": subject, "failures": 0, "updated_at": now}
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(insert(_table).values(**values).on_conflict_do_nothing())


def claim(
    connection: Connection, policy: GuessPolicy, scope: str, subject: bytes, now: datetime
) -> None:
    """Count one attempt against ``subject`` in advance, or raise ``TooManyGuesses``."""
    connection.execute(delete(_table).where(_table.c.updated_at < now - FORGET_AFTER))
    _ensure_row(connection, scope, subject, now)
    failures = _table.c.failures + 1

    def at(seconds: int | None) -> Any:
        value = None if seconds is None else now + timedelta(seconds=seconds)
        return literal(value, UTCDateTime())

    # The wait each count leads to, spelled out: no pow() in SQLite, and one statement.
    schedule = policy.schedule()
    whens: list[Any] = [(failures < policy.free_attempts, at(None))]
    for offset, wait in enumerate(schedule[:-1]):
        whens.append((failures == policy.free_attempts + offset, at(wait)))
    next_attempt = case(*whens, else_=at(schedule[-1] if schedule else None))
    claimed = connection.execute(
        update(_table)
        .where(
            and_(
                _table.c.scope == scope,
                _table.c.subject == subject,
                or_(_table.c.next_attempt_at.is_(None), _table.c.next_attempt_at <= now),
            )
        )
        .values(failures=failures, next_attempt_at=next_attempt, updated_at=now)
    )
    if claimed.rowcount == 1:
        return
    waiting_until = connection.scalar(
        select(_table.c.next_attempt_at).where(_table.c.scope == scope, _table.c.subject == subject)
    )
    seconds = math.ceil((waiting_until - now).total_seconds()) if waiting_until else 1
    raise TooManyGuesses(max(1, seconds))


def forget(connection: Connection, scope: str, subject: bytes) -> None:
    """A correct guess: the subject's failures no longer count."""
    connection.execute(delete(_table).where(_table.c.scope == scope, _table.c.subject == subject))


def failures(connection: Connection, scope: str, subject: bytes) -> int:
    return (
        connection.scalar(
            select(_table.c.failures).where(_table.c.scope == scope, _table.c.subject == subject)
        )
        or 0
    )
