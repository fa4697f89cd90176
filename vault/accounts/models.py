from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import JSON, Boolean, LargeBinary, String
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
