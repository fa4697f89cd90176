from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import JSON, Boolean, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.models import Base, UTCDateTime, new_id, utcnow


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    VENDOR_MEMBER = "vendor_member"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


STAFF_ROLES = frozenset({Role.COMPLIANCE, Role.ADMIN})


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


class User(UserMixin, Base):
    """An account. Its e-mail lives encrypted in the profile; only a blind index is here."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    role: Mapped[str] = mapped_column(String(20), default=Role.CUSTOMER)
    status: Mapped[str] = mapped_column(String(10), default=AccountStatus.ACTIVE)
    # HMAC of the normalised e-mail; NULL once the account is closed so it can be reused.
    email_index: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Changes whenever existing sessions must end (password change, 2FA change, deletion).
    session_token: Mapped[str] = mapped_column(String(36), default=new_id)
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)  # encrypted with the data key
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_last_step: Mapped[int | None] = mapped_column()  # refuses a replayed code
    recovery_code_hashes: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Keyed hash (``vault.crypto.keyed_hash.phone_index``) of the phone number the customer
    # proved to hold with a code sent to it (``vault.profile.phone``); NULL while the
    # profile's number is unconfirmed. Saving another number, or none, clears it
    # (``vault.profile.operations.save_profile``), so "not NULL" means "the number in the
    # profile is confirmed": what the consent snapshot reads without decrypting anything.
    phone_confirmed_index: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    phone_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def get_id(self) -> str:
        # flask-login stores this in the session: rotating session_token logs out everywhere.
        return f"{self.id}:{self.session_token}"

    @property
    def is_active(self) -> bool:
        return self.status == AccountStatus.ACTIVE

    @property
    def is_customer(self) -> bool:
        return self.role == Role.CUSTOMER

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES


class ConfirmationPurpose(enum.StrEnum):
    SIGNUP = "signup"
    EMAIL_CHANGE = "email_change"


class EmailConfirmation(Base):
    """A link sent to an address, waiting to be followed (double opt-in).

    The link carries a random secret; only its SHA-256 is stored, so the table alone opens
    nothing. The address itself is personal data: it is sealed (AES-256-GCM) under a key
    derived from that secret, so only the link's holder can read it back; its blind index
    is kept to notice when the address was taken meanwhile.
    """

    __tablename__ = "email_confirmations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    # The account whose address changes; NULL for a sign-up (no account exists yet).
    user_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    email_index: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    sealed_email: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class GuessThrottle(Base):
    """Failed guesses (passwords, second-factor codes) of one subject, and when the next
    guess may come. ``subject`` is a keyed or plain hash, never an address: the blind index
    of the e-mail typed at log-in (known and unknown addresses alike), a hash of the
    account id for second-factor codes, or a trusted device's hash."""

    __tablename__ = "guess_throttles"

    scope: Mapped[str] = mapped_column(String(20), primary_key=True)
    subject: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
