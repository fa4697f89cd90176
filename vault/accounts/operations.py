"""State changes of accounts. Each function takes a session and leaves committing to the caller."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import pyotp
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vault.accounts.models import AccountStatus, EmailConfirmation, Role, User
from vault.accounts.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, Passwords
from vault.crypto.keyed_hash import blind_index
from vault.crypto.keyring import KeyProvider
from vault.errors import VaultError
from vault.keys.operations import cipher_for, create_data_key, shred
from vault.models import new_id, utcnow
from vault.profile import phone
from vault.profile.operations import EmailInUse, delete_profile, email_index_in_use, save_profile

RECOVERY_CODE_COUNT = 10
TOTP_ISSUER = "CMR Vault"


class AccountError(VaultError):
    """A request about an account that cannot be carried out; the message says why (pages
    show it beside the form field it is about)."""

    status = 400
    code = "account-request-refused"
    title = "Request refused"
    oauth_error = "invalid_request"


class WeakPassword(AccountError):
    code = "weak-password"
    title = "Password refused"


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"Use at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"Use at most {MAX_PASSWORD_LENGTH} characters.")


def find_by_email(session: Session, keys: KeyProvider, email: str) -> User | None:
    index = blind_index(keys.secret("blind_index"), email)
    return session.scalar(select(User).where(User.email_index == index))


def create_account(
    session: Session,
    keys: KeyProvider,
    passwords: Passwords,
    *,
    email: str,
    password: str,
    role: Role = Role.CUSTOMER,
    profile: dict[str, Any] | None = None,
) -> User:
    """Create an account with its own data key; the e-mail is stored encrypted."""
    check_password_policy(password)
    if email_index_in_use(session, blind_index(keys.secret("blind_index"), email)):
        raise EmailInUse()
    user = User(id=new_id(), role=role, password_hash=passwords.hash(password))
    user.password_changed_at = utcnow()
    session.add(user)
    session.flush()
    create_data_key(session, keys, user.id)
    session.flush()
    save_profile(session, keys, user, {**(profile or {}), "email": email})
    return user


def authenticate(
    session: Session, keys: KeyProvider, passwords: Passwords, email: str, password: str
) -> User | None:
    """The active account with this e-mail and password, or None, in similar time either way."""
    user = find_by_email(session, keys, email) if len(password) <= MAX_PASSWORD_LENGTH else None
    stored = user.password_hash if user is not None and user.is_active else None
    if not passwords.verify(stored, password[:MAX_PASSWORD_LENGTH]):
        return None
    assert user is not None and stored is not None
    if passwords.needs_rehash(stored):
        user.password_hash = passwords.hash(password)
    return user


def change_password(
    session: Session, passwords: Passwords, user: User, current: str, new: str
) -> None:
    if not passwords.verify(user.password_hash, current):
        raise AccountError("Your current password is not correct.")
    check_password_policy(new)
    user.password_hash = passwords.hash(new)
    user.password_changed_at = utcnow()
    user.session_token = new_id()  # every other session ends


# --- second factor -------------------------------------------------------------------------


def _hash_recovery_code(code: str) -> str:
    # Recovery codes are 50-bit random values, so a fast hash suffices (no dictionary to try).
    return hashlib.sha256(code.replace("-", "").strip().lower().encode()).hexdigest()


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_provisioning_uri(secret: str, account_name: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account_name, issuer_name=TOTP_ISSUER)


def _totp_step_accepted(user: User, secret: str, code: str) -> bool:
    totp = pyotp.TOTP(secret)
    code = code.replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return False
    now = utcnow()
    for drift in (-1, 0, 1):  # one 30 s step either side for clock skew
        step = totp.timecode(now) + drift
        if hmac.compare_digest(totp.generate_otp(step), code):
            if user.totp_last_step is not None and step <= user.totp_last_step:
                return False  # the same or an older code was already used
            user.totp_last_step = step
            return True
    return False


def enable_totp(
    session: Session, keys: KeyProvider, user: User, secret: str, code: str
) -> list[str]:
    """Turn on TOTP after the person proves their app shows the right code.

    Returns the recovery codes, shown once; only their hashes are kept.
    """
    if not _totp_step_accepted(user, secret, code):
        raise AccountError("That code does not match. Check the time on your device and retry.")
    cipher = cipher_for(session, keys, user.id)
    user.totp_secret = cipher.encrypt("totp_secret", secret.encode())
    user.totp_enabled = True
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODE_COUNT)]
    user.recovery_code_hashes = [_hash_recovery_code(code) for code in codes]
    user.session_token = new_id()
    return codes


def disable_totp(session: Session, passwords: Passwords, user: User, password: str) -> None:
    if not passwords.verify(user.password_hash, password):
        raise AccountError("Your password is not correct.")
    user.totp_secret = None
    user.totp_enabled = False
    user.totp_last_step = None
    user.recovery_code_hashes = []
    user.session_token = new_id()


def verify_second_factor(session: Session, keys: KeyProvider, user: User, code: str) -> bool:
    """Accept a current TOTP code or an unused recovery code (which is then spent)."""
    if not user.totp_enabled or user.totp_secret is None:
        return True
    code = code.strip()
    secret = cipher_for(session, keys, user.id).decrypt("totp_secret", user.totp_secret).decode()
    if _totp_step_accepted(user, secret, code):
        return True
    hashed = _hash_recovery_code(code)
    remaining = [h for h in user.recovery_code_hashes if not hmac.compare_digest(h, hashed)]
    if len(remaining) < len(user.recovery_code_hashes):
        user.recovery_code_hashes = remaining
        return True
    return False


# --- closing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClosedAccount:
    user_id: str


def delete_account(
    session: Session, passwords: Passwords, user: User, password: str
) -> ClosedAccount:
    """Crypto-shred the account: destroy its data key and close it for good.

    The live profile is unreadable at once. A database backup taken earlier still holds
    the data key, wrapped by the current master key: it stays readable with that master
    key until the next ``vault keys rotate`` retires it (README, "Keys and encryption").
    """
    if not passwords.verify(user.password_hash, password):
        raise AccountError("Your password is not correct.")
    return close_account(session, user)


def close_account(session: Session, user: User) -> ClosedAccount:
    shred(session, user.id)
    delete_profile(session, user.id)
    session.execute(delete(EmailConfirmation).where(EmailConfirmation.user_id == user.id))
    phone.forget(session, user)
    user.status = AccountStatus.CLOSED
    user.closed_at = utcnow()
    user.email_index = None
    user.password_hash = None
    user.totp_secret = None
    user.totp_enabled = False
    user.recovery_code_hashes = []
    user.session_token = new_id()
    session.flush()
    return ClosedAccount(user.id)
