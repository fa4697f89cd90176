"""Onboarding businesses: vendors, their OAuth clients and their contact topics."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from vault.models import utcnow
from vault.oauth.models import OAuthClient, secret_hash
from vault.oauth.scopes import ALL_SCOPES, API_SCOPES
from vault.oauth.signing import ALGORITHM, ALGORITHMS
from vault.vendors.models import ContactTopic, PurposeCategory, Vendor

DEFAULT_SCOPES = ("openid", "profile", "email")


class VendorError(ValueError):
    """Input about a vendor that cannot be accepted; the message says why."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: str) -> str:
    """https only (loopback http for development), absolute, no fragment, no wildcard."""
    parts = urlsplit(uri)
    if not parts.scheme or not parts.netloc or not parts.hostname:
        raise VendorError(f"redirect URI {uri!r} must be an absolute URL")
    if parts.fragment or "#" in uri:
        raise VendorError(f"redirect URI {uri!r} must not contain a fragment")
    if "*" in uri:
        raise VendorError(f"redirect URI {uri!r} must not contain wildcards")
    if parts.scheme == "https":
        return uri
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return uri
    raise VendorError(f"redirect URI {uri!r} must use https (http only on loopback)")


def check_scopes(scopes: list[str]) -> list[str]:
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise VendorError(f"unknown scopes: {' '.join(unknown)}")
    return list(dict.fromkeys(scopes))


def create_vendor(
    session: Session,
    name: str,
    *,
    website: str | None = None,
    privacy_policy_url: str | None = None,
    logo_url: str | None = None,
) -> Vendor:
    name = name.strip()
    if not name or len(name) > 120:
        raise VendorError("a vendor name has 1 to 120 characters")
    vendor = Vendor(
        name=name, website=website, privacy_policy_url=privacy_policy_url, logo_url=logo_url
    )
    session.add(vendor)
    session.flush()
    return vendor


@dataclass(frozen=True)
class NewClient:
    client: OAuthClient
    client_secret: str | None  # shown once; only its hash is stored


def create_client(
    session: Session,
    vendor: Vendor,
    *,
    redirect_uris: list[str],
    public: bool = False,
    scopes: list[str] | None = None,
    name: str | None = None,
    id_token_alg: str = ALGORITHM,
) -> NewClient:
    if not redirect_uris:
        raise VendorError("a client needs at least one redirect URI")
    uris = [check_redirect_uri(uri) for uri in redirect_uris]
    if id_token_alg not in ALGORITHMS:
        raise VendorError(f"id_token algorithm must be one of {', '.join(ALGORITHMS)}")
    scope_list = check_scopes(list(scopes or DEFAULT_SCOPES))
    grant_types = ["authorization_code", "refresh_token"]
    if not public and any(s in API_SCOPES for s in scope_list):
        grant_types.append("client_credentials")
    secret = None if public else secrets.token_urlsafe(32)
    client = OAuthClient(
        client_id=secrets.token_urlsafe(18),
        vendor_id=vendor.id,
        name=name or vendor.name,
        secret_hash=secret_hash(secret) if secret else None,
        redirect_uris=uris,
        scope=" ".join(scope_list),
        grant_types=grant_types,
        id_token_signed_response_alg=id_token_alg,
        secret_rotated_at=utcnow() if secret else None,
    )
    session.add(client)
    session.flush()
    return NewClient(client, secret)


def rotate_client_secret(session: Session, client: OAuthClient) -> str:
    if client.is_public:
        raise VendorError("public clients have no secret")
    secret = secrets.token_urlsafe(32)
    client.secret_hash = secret_hash(secret)
    client.secret_rotated_at = utcnow()
    session.flush()
    return secret


def declare_topic(
    session: Session, vendor: Vendor, name: str, purpose: str, description: str = ""
) -> ContactTopic:
    """Declare or reword a topic; a changed description is a new version of the notice."""
    name = name.strip()
    if not name or len(name) > 64:
        raise VendorError("a topic name has 1 to 64 characters")
    if purpose not in set(PurposeCategory):
        raise VendorError(f"purpose must be one of {', '.join(PurposeCategory)}, not {purpose!r}")
    topic = session.scalar(
        select(ContactTopic).where(ContactTopic.vendor_id == vendor.id, ContactTopic.name == name)
    )
    if topic is None:
        topic = ContactTopic(
            vendor_id=vendor.id, name=name, purpose=purpose, description=description, version=1
        )
        session.add(topic)
    elif (topic.description, topic.purpose) != (description, purpose):
        topic.description, topic.purpose = description, purpose
        topic.version += 1
    session.flush()
    return topic
