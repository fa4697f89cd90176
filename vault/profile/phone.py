"""Confirming the profile's phone number with a six-digit code sent to it by SMS.

A number the customer types is unconfirmed: anyone can type anyone's number, and the
consent engine lets no business text or call an unconfirmed number (``unconfirmed_address``
in ``consent.engine``). The customer asks for a code (``request_code``); the view sends it
over the SMS connector after the commit; typing it in (``confirm``) stores the keyed hash
of the number on the account (``User.phone_confirmed_index``). Saving another number, or
none, clears it (``clear_if_changed``, called by ``save_profile``), so the column being set
means "the number in the profile is confirmed", which the consent snapshot reads in its
one query per customer without decrypting anything.

Guessing: a code is one in a million, lives ``VAULT_PHONE_CODE_LIFETIME`` seconds (10
minutes) and takes ``VAULT_PHONE_CODE_ATTEMPTS`` guesses (5); each guess is claimed in a
transaction of its own before it is checked (``claim_attempt``: one atomic UPDATE, so
parallel guesses all count, and a wrong guess stays counted when the request rolls back).
The views add the per-account growing delays of ``vault.accounts.guards`` across codes and
Flask-Limiter's limit on codes sent per number and per account.

Nothing here keeps the number in the clear: the code row holds keyed hashes only.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.orm import Session

from vault.accounts.models import User
from vault.crypto.keyed_hash import code_digest, phone_index
from vault.crypto.keyring import KeyProvider
from vault.errors import VaultError
from vault.profile.models import PhoneCode

CODE_DIGITS = 6
_codes = PhoneCode.__table__


class PhoneError(VaultError):
    """Why a code cannot be sent or does not confirm the number, in the customer's words
    (never the number itself)."""

    status = 400
    code = "phone-confirmation"
    title = "Phone confirmation"


class NoCode(PhoneError):
    def __init__(self) -> None:
        super().__init__("No code is waiting for this account: send a new code.")


class CodeExpired(PhoneError):
    def __init__(self) -> None:
        super().__init__("This code has expired: send a new code.")


class CodeUsedUp(PhoneError):
    status = 429

    def __init__(self) -> None:
        super().__init__("Too many wrong codes: this code no longer works. Send a new code.")


class WrongCode(PhoneError):
    def __init__(self, attempts_left: int) -> None:
        more = (
            f"{attempts_left} more {'try' if attempts_left == 1 else 'tries'} with this code."
            if attempts_left
            else "That was the last try with this code: send a new code."
        )
        super().__init__(f"That code is not right. {more}")
        self.attempts_left = attempts_left


def _key(keys: KeyProvider) -> bytes:
    # The blind-index secret, domain-separated by each hash's prefix ("phone", "code"):
    # a new keyring secret would make every existing keyring file invalid.
    return keys.secret("blind_index")


def number_index(keys: KeyProvider, number: str) -> bytes:
    return phone_index(_key(keys), number)


def _code_hash(keys: KeyProvider, user_id: str, index: bytes, code: str) -> bytes:
    return code_digest(_key(keys), "phone", user_id, index.hex(), code)


def is_confirmed(keys: KeyProvider, user: User, number: str | None) -> bool:
    """Whether ``number`` (the profile's, decrypted) is the one the customer confirmed."""
    if not number or user.phone_confirmed_index is None:
        return False
    return hmac.compare_digest(number_index(keys, number), user.phone_confirmed_index)


def clear_if_changed(keys: KeyProvider, user: User, number: str | None) -> bool:
    """Forget the confirmation unless ``number`` (about to be saved) is the confirmed one;
    True if a confirmation was forgotten."""
    if user.phone_confirmed_index is None or is_confirmed(keys, user, number):
        return False
    user.phone_confirmed_index = None
    user.phone_confirmed_at = None
    return True


@dataclass(frozen=True)
class CodeRequest:
    """A code to send: the number it goes to and the code (kept out of reprs and logs)."""

    number: str = field(repr=False)
    code: str = field(repr=False)
    expires_at: datetime


def check_sendable(keys: KeyProvider, user: User, number: str | None) -> str:
    """``number`` if a code may go to it; refused (``PhoneError``): no number in the
    profile, or one confirmed already."""
    if not number:
        raise PhoneError("Add a phone number to your profile first, then confirm it.")
    if is_confirmed(keys, user, number):
        raise PhoneError("Your phone number is confirmed already.")
    return number


def request_code(
    session: Session,
    keys: KeyProvider,
    user: User,
    number: str | None,
    *,
    lifetime: timedelta,
    now: datetime,
) -> CodeRequest:
    """A new code for ``number`` (the profile's), replacing any code still waiting.

    Refused (``PhoneError``) as ``check_sendable`` says."""
    number = check_sendable(keys, user, number)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    index = number_index(keys, number)
    session.execute(delete(PhoneCode).where(PhoneCode.user_id == user.id))
    session.add(
        PhoneCode(
            user_id=user.id,
            number_index=index,
            code_hash=_code_hash(keys, user.id, index, code),
            attempts=0,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return CodeRequest(number, code, now + lifetime)


def pending_code(session: Session, user_id: str, now: datetime) -> PhoneCode | None:
    """The code waiting to be typed in, unless it expired."""
    row = session.get(PhoneCode, user_id)
    return row if row is not None and row.expires_at > now else None


def claim_attempt(connection: Connection, user_id: str, limit: int, now: datetime) -> int:
    """Count one guess at the customer's code before it is checked; the guesses left after
    this one. Run it in a transaction of its own (``engine.begin()``) that commits at once.

    Raises ``NoCode``, ``CodeExpired`` or ``CodeUsedUp`` when no guess may be made."""
    claimed = connection.execute(
        update(_codes)
        .where(
            _codes.c.user_id == user_id,
            _codes.c.attempts < limit,
            _codes.c.expires_at > now,
        )
        .values(attempts=_codes.c.attempts + 1)
        .returning(_codes.c.attempts)
    ).first()
    if claimed is not None:
        return max(0, limit - claimed.attempts)
    row = connection.execute(
        select(_codes.c.attempts, _codes.c.expires_at).where(_codes.c.user_id == user_id)
    ).first()
    if row is None:
        raise NoCode()
    if row.expires_at <= now:
        raise CodeExpired()
    raise CodeUsedUp()


def confirm(
    session: Session,
    keys: KeyProvider,
    user: User,
    number: str | None,
    code: str,
    *,
    attempts_left: int,
    now: datetime,
) -> None:
    """Mark ``number`` (the profile's, decrypted) confirmed if ``code`` is the one sent to
    it; the guess was claimed already (``claim_attempt``, which said ``attempts_left``)."""
    row = session.get(PhoneCode, user.id)
    if row is None:
        raise NoCode()
    if row.expires_at <= now:
        raise CodeExpired()
    if not number or not hmac.compare_digest(number_index(keys, number), row.number_index):
        # The profile's number changed after the code was sent to the old one.
        raise PhoneError(
            "Your phone number changed since this code was sent: send a code to the new one."
        )
    if not hmac.compare_digest(_code_hash(keys, user.id, row.number_index, code), row.code_hash):
        raise WrongCode(attempts_left)
    user.phone_confirmed_index = row.number_index
    user.phone_confirmed_at = now
    session.delete(row)
    session.flush()


def forget(session: Session, user: User) -> None:
    """Closing the account: no confirmation and no waiting code stay behind."""
    session.execute(delete(PhoneCode).where(PhoneCode.user_id == user.id))
    user.phone_confirmed_index = None
    user.phone_confirmed_at = None
