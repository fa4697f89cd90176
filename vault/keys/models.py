from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.models import Base, UTCDateTime, utcnow


class DataKey(Base):
    """A customer's data key, wrapped by a master key. Deleting the row shreds the profile."""

    __tablename__ = "data_keys"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    master_key_id: Mapped[str] = mapped_column(String(64), index=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    wrapped_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KeyCheck(Base):
    """Proof kept with the wrapped keys that a keyring is this vault's own (one row).

    ``wrapped_key`` is a fixed value wrapped by the master key like any data key (so
    rotation re-wraps it with the others); ``secret_checks`` holds, per keyed-hash secret,
    an HMAC of a fixed label under it. Neither reveals anything about the keys; both let
    the vault refuse to start with a keyring that would make every log-in fail or every
    profile unreadable (``vault.keys.check``)."""

    __tablename__ = "key_check"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    master_key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    secret_checks: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    wrapped_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
