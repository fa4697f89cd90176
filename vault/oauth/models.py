"""OAuth state. Every secret (client secret, code, access and refresh token) is stored only
as a SHA-256 hash: they are long random strings, so a fast hash cannot be brute-forced, and
a database leak yields nothing that authenticates."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from vault.accounts.models import User
from vault.models import Base, UTCDateTime, new_id, utcnow
from vault.vendors.models import Vendor


def secret_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def grant_ended(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> bool:
    return revoked_at is not None or (expires_at is not None and expires_at <= now)


def effective_scope(issued: str, granted: str | None) -> str:
    """What a code or token may reveal when it is used: the scopes it was issued for, less
    any the customer has since taken away from its grant (``granted`` is None for tokens
    tied to no grant, such as client credentials)."""
    if granted is None:
        return issued
    current = set(granted.split())
    return " ".join(s for s in issued.split() if s in current)


def token_refused(
    *,
    revoked_at: datetime | None,
    client_disabled_at: datetime | None,
    grant_ended: bool,
    account_closed: bool,
) -> bool:
    """The one rule for whether an issued token no longer works: revoked itself, its client
    disabled, its grant ended, or the customer's account closed."""
    return revoked_at is not None or client_disabled_at is not None or grant_ended or account_closed


class OAuthClient(Base, ClientMixin):
    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("vendors.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(120))
    secret_hash: Mapped[str | None] = mapped_column(String(64))  # None: public client
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    scope: Mapped[str] = mapped_column(Text, default="openid")
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    # OIDC Registration metadata; set explicitly at registration (ES256 unless asked).
    id_token_signed_response_alg: Mapped[str] = mapped_column(
        String(10), default="ES256", server_default="ES256"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    vendor: Mapped[Vendor] = relationship()

    @property
    def is_public(self) -> bool:
        return self.secret_hash is None

    # --- authlib ClientMixin ---
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Only an unambiguous registration may be implied (RFC 6749 3.1.2.3).
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str:
        if not scope:
            return ""
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string match (RFC 9700 2.1): no prefix, no wildcard, no normalisation.
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(self.secret_hash, secret_hash(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.disabled_at is not None:
            return False
        if self.is_public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class Grant(Base):
    """A customer's permission for one client: which scopes, since when, until when."""

    __tablename__ = "oauth_grants"
    # A customer's grants with one business: a consent answer reads these by customer, so
    # its cost does not grow with the business's number of customers (migration 0013). It
    # also serves every lookup by user_id alone.
    __table_args__ = (Index("ix_oauth_grants_customer", "user_id", "vendor_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    vendor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("vendors.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(40))

    client: Mapped[OAuthClient] = relationship()
    vendor: Mapped[Vendor] = relationship()
    user: Mapped[User] = relationship()

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()

    def is_active(self, now: datetime | None = None) -> bool:
        return not grant_ended(self.revoked_at, self.expires_at, now or utcnow())


class PairwiseSubject(Base):
    """The ``sub`` one vendor knows a customer by, written when their first grant starts.

    ``sub`` is a keyed hash (``vault.oauth.scopes.pairwise_sub``) that cannot be reversed;
    keeping it here turns "which customer is this sub?" into one index lookup instead of
    hashing every customer the vendor has on every call of the consent API. Rows stay when
    grants end: a vendor may still ask about a former customer.
    """

    __tablename__ = "pairwise_subjects"
    __table_args__ = (UniqueConstraint("vendor_id", "user_id"),)

    vendor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("vendors.id", ondelete="CASCADE"), primary_key=True
    )
    sub: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuthorizationCode(Base, AuthorizationCodeMixin):
    __tablename__ = "oauth_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("oauth_clients.client_id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"))
    grant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("oauth_grants.id", ondelete="CASCADE")
    )
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(255))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    auth_time: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()
    grant: Mapped[Grant] = relationship()
    client: Mapped[OAuthClient] = relationship()

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        """The scopes the token exchange issues: narrowed if the customer unticked some
        while the code was waiting to be redeemed."""
        return effective_scope(self.scope, self.grant.scope)

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class Token(Base, TokenMixin):
    __tablename__ = "oauth_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE")
    )
    grant_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("oauth_grants.id", ondelete="CASCADE"), index=True
    )
    code_id: Mapped[str | None] = mapped_column(String(36), index=True)
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_type: Mapped[str] = mapped_column(String(20), default="Bearer")
    scope: Mapped[str] = mapped_column(Text, default="")
    issued_at: Mapped[int] = mapped_column(Integer, default=lambda: int(time.time()))
    expires_in: Mapped[int] = mapped_column(Integer)
    refresh_expires_at: Mapped[int | None] = mapped_column(Integer)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the refresh token was exchanged: a second use is a replay.
    refresh_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    client: Mapped[OAuthClient] = relationship()
    grant: Mapped[Grant | None] = relationship()
    user: Mapped[User | None] = relationship()

    # --- authlib TokenMixin ---
    def check_client(self, client: OAuthClient) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        """What this token (and a refresh of it) may still reveal: see ``effective_scope``."""
        return effective_scope(self.scope, self.grant.scope if self.grant is not None else None)

    def get_expires_in(self) -> int:
        return self.expires_in

    def get_expires_at(self) -> int:
        return self.issued_at + self.expires_in

    def is_expired(self) -> bool:
        return self.get_expires_at() <= time.time()

    def is_revoked(self) -> bool:
        """Revoked itself, or its grant ended, its client was disabled, or the customer's
        account is closed."""
        return token_refused(
            revoked_at=self.revoked_at,
            client_disabled_at=self.client.disabled_at if self.client is not None else None,
            grant_ended=self.grant is not None and not self.grant.is_active(),
            account_closed=self.user is not None and not self.user.is_active,
        )

    def is_refresh_usable(self) -> bool:
        if self.revoked_at is not None or self.refresh_used_at is not None:
            return False
        if self.refresh_expires_at is not None and self.refresh_expires_at <= time.time():
            return False
        return self.grant is None or self.grant.is_active()

    def get_user(self) -> User | None:
        return self.user

    def get_client(self) -> OAuthClient:
        return self.client


class SigningKey(Base):
    """An ES256 key for id_tokens (and later receipts). The private half is encrypted
    under a data key wrapped by the master key, like a customer's profile."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10), default="ES256")
    public_jwk: Mapped[dict[str, str]] = mapped_column(JSON)
    private_key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # No longer signs after this; stays in the JWKS until publish_until.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    publish_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AccessEvent(Base):
    """One read of profile data by a vendor, shown to the customer at /activity."""

    __tablename__ = "access_events"
    __table_args__ = (Index("ix_access_events_grant_id_at", "grant_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    grant_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("oauth_grants.id", ondelete="SET NULL")
    )
    vendor_id: Mapped[str] = mapped_column(String(36), ForeignKey("vendors.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(64))
    claims: Mapped[list[str]] = mapped_column(JSON, default=list)
    endpoint: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    vendor: Mapped[Vendor] = relationship()
