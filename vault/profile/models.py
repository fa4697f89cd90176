from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.models import Base, UTCDateTime, utcnow


class ProfileField(Base):
    """One claim of one customer, AES-256-GCM encrypted under the customer's data key."""

    __tablename__ = "profile_fields"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class PhoneCode(Base):
    """A code sent by SMS to the profile's phone number, waiting to be typed in.

    One per customer (a new code replaces the old). Only a keyed hash of the code is kept
    (``vault.crypto.keyed_hash.code_digest``), bound to the customer and to the number it
    went to (``number_index``, a keyed hash too): a code sent to one number never confirms
    another. ``attempts`` counts the guesses at this code, each claimed in a transaction of
    its own before it is checked (``vault.profile.phone.claim_attempt``).
    """

    __tablename__ = "phone_codes"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    number_index: Mapped[bytes] = mapped_column(LargeBinary(32))
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
