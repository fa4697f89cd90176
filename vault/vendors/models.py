from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from vault.models import Base, UTCDateTime, new_id, utcnow
from vault.vendors.urls import optional_vendor_url


class PurposeCategory(enum.StrEnum):
    SERVICE = "service"
    MARKETING = "marketing"
    RESEARCH = "research"
    OTHER = "other"


class Vendor(Base):
    __tablename__ = "vendors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(120))
    website: Mapped[str | None] = mapped_column(String(500))
    logo_url: Mapped[str | None] = mapped_column(String(500))
    privacy_policy_url: Mapped[str | None] = mapped_column(String(500))
    # Set by a vault admin after checking who the business is; shown on the consent screen.
    # Any change of what the badge vouches for (name, website, logo, privacy policy)
    # clears it (vault.vendors.operations.update_profile) until an admin verifies again.
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    topics: Mapped[list[ContactTopic]] = relationship(
        back_populates="vendor", order_by="ContactTopic.name"
    )

    @validates("website", "logo_url", "privacy_policy_url")
    def _safe_url(self, key: str, value: str | None) -> str | None:
        """The last line behind the operations, which apply the full rule (http only in
        development): whatever path sets a URL, a ``javascript:``, ``data:`` or host-less
        one never reaches the database."""
        return optional_vendor_url(value, label=key, loopback_http=True)


class VendorMember(Base):
    """A user account that acts for a vendor in the business portal."""

    __tablename__ = "vendor_members"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    vendor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("vendors.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContactTopic(Base):
    """Something a vendor may want to contact customers about.

    ``version`` goes up whenever the description changes, so consent given to an older
    wording can be told apart (and asked again).
    """

    __tablename__ = "contact_topics"
    __table_args__ = (UniqueConstraint("vendor_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("vendors.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    purpose: Mapped[str] = mapped_column(String(20), default=PurposeCategory.OTHER)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    vendor: Mapped[Vendor] = relationship(back_populates="topics")
