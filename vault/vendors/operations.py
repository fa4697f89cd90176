"""Onboarding businesses: vendors, their OAuth clients and their contact topics."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from vault.errors import VaultError
from vault.models import utcnow
from vault.oauth.models import OAuthClient, secret_hash
from vault.oauth.scopes import ALL_SCOPES, API_SCOPES
from vault.oauth.signing import ALGORITHM, ALGORITHMS
from vault.vendors.models import ContactTopic, PurposeCategory, Vendor
from vault.vendors.urls import UnsafeURL, is_loopback, optional_vendor_url

DEFAULT_SCOPES = ("openid", "profile", "email")


class VendorError(VaultError, ValueError):
    """Input about a vendor that cannot be accepted; the message says why."""

    status = 400
    code = "vendor-request-refused"
    title = "Request refused"
    oauth_error = "invalid_request"


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
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return uri
    raise VendorError(f"redirect URI {uri!r} must use https (http only on loopback)")


def check_scopes(scopes: list[str]) -> list[str]:
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise VendorError(f"unknown scopes: {' '.join(unknown)}")
    return list(dict.fromkeys(scopes))


@dataclass(frozen=True)
class VendorIdentity:
    """What the verified badge vouches for: everything the consent screen shows beside it.

    The privacy policy URL belongs here too, although the issue named only name, website
    and logo: the consent screen links it right beside the badge and receipts name it as
    the business's policy, so swapping it for another page is as much a change of who is
    asking as a new website.
    """

    name: str
    website: str | None = None
    logo_url: str | None = None
    privacy_policy_url: str | None = None

    @classmethod
    def of(cls, vendor: Vendor) -> VendorIdentity:
        return cls(**{f.name: getattr(vendor, f.name) for f in fields(cls)})


URL_LABELS = {
    "website": "Website",
    "logo_url": "Logo URL",
    "privacy_policy_url": "Privacy policy URL",
}


def check_identity(
    name: str,
    *,
    website: str | None = None,
    logo_url: str | None = None,
    privacy_policy_url: str | None = None,
    loopback_http: bool = False,
) -> VendorIdentity:
    """The normalised identity, or ``VendorError`` naming the first bad value.

    URLs follow ``vault.vendors.urls.check_vendor_url``: https only; ``loopback_http``
    (development and testing) also accepts http on 127.0.0.1, ::1 and localhost.
    """
    name = name.strip()
    if not name or len(name) > 120:
        raise VendorError("a vendor name has 1 to 120 characters")
    urls = {"website": website, "logo_url": logo_url, "privacy_policy_url": privacy_policy_url}
    checked: dict[str, str | None] = {}
    for key, value in urls.items():
        try:
            checked[key] = optional_vendor_url(
                value, label=URL_LABELS[key], loopback_http=loopback_http
            )
        except UnsafeURL as exc:
            raise VendorError(str(exc)) from exc
    return VendorIdentity(name, **checked)


def create_vendor(
    session: Session,
    name: str,
    *,
    website: str | None = None,
    privacy_policy_url: str | None = None,
    logo_url: str | None = None,
    loopback_http: bool = False,
) -> Vendor:
    """A new, unverified vendor (``verify_vendor`` gives it the badge)."""
    identity = check_identity(
        name,
        website=website,
        logo_url=logo_url,
        privacy_policy_url=privacy_policy_url,
        loopback_http=loopback_http,
    )
    vendor = Vendor(
        name=identity.name,
        website=identity.website,
        logo_url=identity.logo_url,
        privacy_policy_url=identity.privacy_policy_url,
        verified=False,
    )
    session.add(vendor)
    session.flush()
    return vendor


@dataclass(frozen=True)
class ProfileUpdate:
    changed: bool  # anything of the identity changed
    verification_cleared: bool  # the vendor had the badge and lost it


def update_profile(
    session: Session,
    vendor: Vendor,
    *,
    name: str,
    website: str | None,
    logo_url: str | None,
    privacy_policy_url: str | None,
    loopback_http: bool = False,
) -> ProfileUpdate:
    """Change what customers see about the vendor. Any real change clears the verified
    badge until an admin verifies the new identity (``verify_vendor``)."""
    new = check_identity(
        name,
        website=website,
        logo_url=logo_url,
        privacy_policy_url=privacy_policy_url,
        loopback_http=loopback_http,
    )
    if new == VendorIdentity.of(vendor):
        return ProfileUpdate(changed=False, verification_cleared=False)
    was_verified = vendor.verified
    for f in fields(VendorIdentity):
        setattr(vendor, f.name, getattr(new, f.name))
    vendor.verified = False
    vendor.verified_at = None
    vendor.verified_by = None
    # Written even when it was already False: this UPDATE then always carries
    # verified = false, so an admin's verify committed concurrently (against the old
    # identity) cannot leave the badge on the new one, whichever commits last.
    flag_modified(vendor, "verified")
    session.flush()
    return ProfileUpdate(changed=True, verification_cleared=was_verified)


def verify_vendor(session: Session, vendor_id: str, *, seen: VendorIdentity, by: str) -> Vendor:
    """Give the vendor the verified badge for the identity the admin checked (``seen``).

    One conditional UPDATE: if the vendor changed anything of its identity since the admin
    looked (even in a transaction that commits at the same moment), nothing is verified
    and ``VendorError`` says so.
    """
    by = by.strip()[:120] or "admin"
    conditions = [
        getattr(Vendor, f.name).is_not_distinct_from(getattr(seen, f.name))
        for f in fields(VendorIdentity)
    ]
    result = session.execute(
        update(Vendor)
        .where(Vendor.id == vendor_id, *conditions)
        .values(verified=True, verified_at=utcnow(), verified_by=by)
        .execution_options(synchronize_session="fetch")
    )
    vendor = session.get(Vendor, vendor_id)
    if vendor is None:
        raise VendorError(f"no vendor with id {vendor_id}")
    if result.rowcount != 1:
        raise VendorError(
            f"vendor {vendor_id} changed its name, website, logo or privacy policy while you "
            "were checking it; nothing was verified: look at it again"
        )
    session.refresh(vendor)
    return vendor


def unverify_vendor(session: Session, vendor_id: str) -> Vendor:
    """Take the badge away (an admin's decision)."""
    vendor = session.get(Vendor, vendor_id)
    if vendor is None:
        raise VendorError(f"no vendor with id {vendor_id}")
    vendor.verified = False
    vendor.verified_at = None
    vendor.verified_by = None
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
