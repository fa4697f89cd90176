"""Scopes: which claims each reveals, and how a customer reads them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vault.crypto.keyed_hash import pseudonym
from vault.crypto.keyring import KeyProvider


@dataclass(frozen=True)
class ScopeInfo:
    name: str
    title: str
    description: str
    claims: tuple[str, ...]


PROFILE_SCOPES: dict[str, ScopeInfo] = {
    info.name: info
    for info in (
        ScopeInfo(
            "openid",
            "Know it is you",
            "A pseudonymous id for you, different for "
            "every business, so businesses cannot link you with each other.",
            ("sub",),
        ),
        ScopeInfo(
            "profile",
            "Your basic profile",
            "Your name, nickname, birthdate, gender, language, time zone and website.",
            (
                "name",
                "given_name",
                "middle_name",
                "family_name",
                "nickname",
                "birthdate",
                "gender",
                "locale",
                "zoneinfo",
                "website",
            ),
        ),
        ScopeInfo(
            "email", "Your e-mail address", "The e-mail address in your profile.", ("email",)
        ),
        ScopeInfo(
            "phone", "Your phone number", "The phone number in your profile.", ("phone_number",)
        ),
        ScopeInfo(
            "address",
            "Your postal address",
            "Your street, city, region, postal code and country.",
            ("address",),
        ),
        ScopeInfo("interests", "Your interests", "The interests you declared.", ("interests",)),
    )
}

# Vendor-level API scopes (client credentials).
API_SCOPES: dict[str, ScopeInfo] = {
    info.name: info
    for info in (
        ScopeInfo(
            "consent:read",
            "Read consent settings",
            "Read the contact settings your customers set for your business.",
            (),
        ),
        ScopeInfo(
            "consent:check",
            "Check consent",
            "Ask whether a contact (customer, channel, topic) is allowed now.",
            (),
        ),
        ScopeInfo(
            "consent:request",
            "Request consent",
            "Propose topics and channels to a customer, who answers in the vault.",
            (),
        ),
        ScopeInfo(
            "messages:send",
            "Send messages",
            "Have the vault deliver messages to your customers (e-mail, SMS), each checked "
            "against their consent when it is sent; you never see their addresses.",
            (),
        ),
        ScopeInfo(
            "messages:permit",
            "Contact permits",
            "Get a signed permit to contact a customer through your own systems, for a few "
            "minutes, when their consent allows it.",
            (),
        ),
    )
}

ALL_SCOPES = {**PROFILE_SCOPES, **API_SCOPES}


def pairwise_sub(keys: KeyProvider, vendor_id: str, user_id: str) -> str:
    """The customer's id as one vendor sees it: stable for that vendor, unlinkable across."""
    return pseudonym(keys.secret("pseudonym"), f"sub:{vendor_id}", user_id)


def claim_names(scopes: list[str] | str) -> list[str]:
    if isinstance(scopes, str):
        scopes = scopes.split()
    names: list[str] = []
    for scope in scopes:
        info = PROFILE_SCOPES.get(scope)
        if info is not None:
            names.extend(c for c in info.claims if c not in names)
    return names


def _formatted_address(address: dict[str, str]) -> str:
    parts = [
        address.get("street_address"),
        " ".join(p for p in (address.get("postal_code"), address.get("locality")) if p),
        address.get("region"),
        address.get("country"),
    ]
    return "\n".join(p for p in parts if p)


# OIDC Core 5.1: each address claim comes with whether the vault confirmed it. The e-mail
# always is (an account exists only once its sign-up link was followed, and a new address
# replaces it only once confirmed: vault.accounts.confirmations); the phone number only
# once a code sent to it was typed back (vault.profile.phone).
VERIFIED_CLAIMS = {"email": "email_verified", "phone_number": "phone_number_verified"}


def disclosed(claims: dict[str, Any]) -> list[str]:
    """The profile fields a claims set reveals, for the access log: not ``sub`` (the
    sign-in's pseudonym) nor the ``*_verified`` flags that go with a field."""
    flags = set(VERIFIED_CLAIMS.values())
    return sorted(k for k in claims if k != "sub" and k not in flags)


def claims_for(
    profile: dict[str, Any], scopes: list[str] | str, sub: str, *, phone_verified: bool = False
) -> dict[str, Any]:
    """Exactly the claims the scopes allow, from what the profile holds; ``email`` and
    ``phone_number`` with their ``*_verified`` flag (``phone_verified``: the number in
    ``profile`` is the confirmed one, ``vault.profile.phone.is_confirmed``)."""
    wanted = claim_names(scopes)
    claims: dict[str, Any] = {"sub": sub}
    for name in wanted:
        if name == "sub":
            continue
        if name == "name":
            full = " ".join(
                profile[p] for p in ("given_name", "middle_name", "family_name") if profile.get(p)
            )
            if full:
                claims["name"] = full
        elif name == "address" and profile.get("address"):
            claims["address"] = {
                **profile["address"],
                "formatted": _formatted_address(profile["address"]),
            }
        elif profile.get(name) not in (None, "", []):
            claims[name] = profile[name]
    if "email" in claims:
        claims["email_verified"] = True
    if "phone_number" in claims:
        claims["phone_number_verified"] = phone_verified
    return claims
