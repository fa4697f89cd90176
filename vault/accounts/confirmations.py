"""Double opt-in: an address is used only once the link mailed to it is followed.

Sign-up asks for an address only; the link leads to choosing a password, and only then
does the account exist. Whoever follows the link controls the mailbox and chooses the
password, so nobody can prepare an account on someone else's address and take it over
later. An e-mail change keeps the current address until the link sent to the new one is
followed by the same account.

For an address another account already uses, no link is made: the caller mails that
address's owner that someone tried to use it, and answers exactly as for a free address,
so neither sign-up nor e-mail change tells anyone which addresses have accounts.

Links carry 32 random bytes. The database keeps their SHA-256 (a stolen table opens
nothing) and the address sealed under a key derived from them (HKDF-SHA256, AES-256-GCM
through ``FieldCipher``), so a pending address is readable only with the link. Following a
link deletes its row in the request's transaction: of two concurrent uses one finds the
row gone (single use), and expired rows are never accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vault.accounts.models import ConfirmationPurpose, EmailConfirmation, User
from vault.accounts.operations import AccountError, create_account
from vault.accounts.passwords import Passwords
from vault.crypto.aead import DecryptionError, FieldCipher
from vault.crypto.keyed_hash import blind_index
from vault.crypto.keyring import KeyProvider
from vault.models import new_id, utcnow
from vault.profile.operations import EmailInUse, change_login_email, email_index_in_use

TOKEN_BYTES = 32


class InvalidLink(AccountError):
    """The link is unknown, used, expired or someone else's; the page says so plainly."""

    status = 404
    code = "invalid-link"
    title = "Invalid link"

    def __init__(self) -> None:
        super().__init__(
            "This link is not valid: it was used already, has expired or was mistyped."
        )


@dataclass(frozen=True)
class LinkRequest:
    """What to mail to ``email``: a link (``token``), or, when another account uses the
    address already, a note to its owner (``token`` is None)."""

    email: str
    token: str | None

    @property
    def address_taken(self) -> bool:
        return self.token is None


@dataclass(frozen=True)
class PendingLink:
    row: EmailConfirmation
    email: str


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _cipher(token: str, confirmation_id: str) -> FieldCipher:
    try:
        secret = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidLink() from None
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"cmr-vault/confirmation/v1"
    ).derive(secret)
    return FieldCipher(key, confirmation_id)


def purge_expired(session: Session, now: datetime) -> None:
    session.execute(delete(EmailConfirmation).where(EmailConfirmation.expires_at <= now))


def _new_link(
    session: Session,
    purpose: ConfirmationPurpose,
    email: str,
    index: bytes,
    lifetime: timedelta,
    now: datetime,
    user_id: str | None = None,
) -> str:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = EmailConfirmation(
        id=new_id(),
        purpose=purpose,
        token_hash=_token_hash(token),
        user_id=user_id,
        email_index=index,
        created_at=now,
        expires_at=now + lifetime,
    )
    row.sealed_email = _cipher(token, row.id).encrypt("email", email.encode())
    session.add(row)
    session.flush()
    return token


def request_signup(
    session: Session, keys: KeyProvider, email: str, *, lifetime: timedelta, now: datetime
) -> LinkRequest:
    """A sign-up link for a free address; for a taken one, nothing is stored."""
    purge_expired(session, now)
    index = blind_index(keys.secret("blind_index"), email)
    if email_index_in_use(session, index):
        return LinkRequest(email, None)
    return LinkRequest(
        email, _new_link(session, ConfirmationPurpose.SIGNUP, email, index, lifetime, now)
    )


def open_link(
    session: Session,
    purpose: ConfirmationPurpose,
    token: str,
    now: datetime,
    *,
    user_id: str | None = None,
) -> PendingLink:
    """The pending address behind a link (without using it up), or ``InvalidLink``."""
    query = select(EmailConfirmation).where(
        EmailConfirmation.token_hash == _token_hash(token),
        EmailConfirmation.purpose == purpose,
        EmailConfirmation.expires_at > now,
    )
    if user_id is not None:
        query = query.where(EmailConfirmation.user_id == user_id)
    row = session.scalar(query)
    if row is None:
        raise InvalidLink()
    try:
        email = _cipher(token, row.id).decrypt("email", row.sealed_email).decode()
    except DecryptionError:
        raise InvalidLink() from None
    return PendingLink(row, email)


def _use_up(session: Session, pending: PendingLink) -> None:
    """Delete the link's row; whoever deletes it first wins, the other finds it gone."""
    deleted = session.execute(
        delete(EmailConfirmation)
        .where(EmailConfirmation.id == pending.row.id)
        .execution_options(synchronize_session=False)
    )
    if deleted.rowcount != 1:
        raise InvalidLink()
    session.expunge(pending.row)


def confirm_signup(
    session: Session,
    keys: KeyProvider,
    passwords: Passwords,
    token: str,
    password: str,
    now: datetime | None = None,
) -> User:
    """Create the account the link was sent for, with the password chosen now."""
    now = now or utcnow()
    pending = open_link(session, ConfirmationPurpose.SIGNUP, token, now)
    _use_up(session, pending)
    if email_index_in_use(session, pending.row.email_index):
        raise EmailInUse()
    user = create_account(session, keys, passwords, email=pending.email, password=password)
    # Other sign-up links to the same address are moot now.
    session.execute(
        delete(EmailConfirmation).where(
            EmailConfirmation.purpose == ConfirmationPurpose.SIGNUP,
            EmailConfirmation.email_index == pending.row.email_index,
        )
    )
    return user


def request_email_change(
    session: Session,
    keys: KeyProvider,
    user: User,
    email: str,
    *,
    lifetime: timedelta,
    now: datetime,
) -> LinkRequest | None:
    """A link to move ``user``'s login to ``email``; None when it is their address already.

    Only the newest request of an account stays valid.
    """
    index = blind_index(keys.secret("blind_index"), email)
    if index == user.email_index:
        return None
    purge_expired(session, now)
    if email_index_in_use(session, index, except_user_id=user.id):
        return LinkRequest(email, None)
    session.execute(
        delete(EmailConfirmation).where(
            EmailConfirmation.purpose == ConfirmationPurpose.EMAIL_CHANGE,
            EmailConfirmation.user_id == user.id,
        )
    )
    token = _new_link(
        session, ConfirmationPurpose.EMAIL_CHANGE, email, index, lifetime, now, user.id
    )
    return LinkRequest(email, token)


def confirm_email_change(
    session: Session, keys: KeyProvider, user: User, token: str, now: datetime | None = None
) -> str:
    """Make the confirmed address ``user``'s login; returns it. A link of another account
    is ``InvalidLink``, the same as an unknown one."""
    now = now or utcnow()
    pending = open_link(session, ConfirmationPurpose.EMAIL_CHANGE, token, now, user_id=user.id)
    _use_up(session, pending)
    change_login_email(session, keys, user, pending.email)
    return pending.email
