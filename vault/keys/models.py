from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
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
