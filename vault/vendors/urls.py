"""Which URLs a business may publish about itself (website, logo, privacy policy).

Customers see and follow these links on the consent screen, so the rule is strict: https
with a real host name, nothing else. Plain http is accepted only for a loopback host
(127.0.0.1, ::1, localhost) while the vault runs in development or testing, so a vendor
can try the vault on one machine. ``javascript:``, ``data:`` and every other scheme, URLs
without a host, user names or passwords in the URL, backslashes, spaces and control
characters are refused: each is a known way to make a link do something else than it
shows.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from flask import current_app, has_app_context

MAX_LENGTH = 500
# One label of a host name: letters, digits and inner hyphens (international names in
# their punycode, xn--, form).
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Whitespace, C0/C1 controls, DEL and the invisible format characters browsers drop.
_INVISIBLE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
LOOPBACK_NAMES = frozenset({"localhost"})


class UnsafeURL(ValueError):
    """A vendor URL that is refused; the message says why, in words for the vendor."""


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_host_name(host: str) -> bool:
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(_LABEL.match(label) for label in labels)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def loopback_http_allowed() -> bool:
    """Plain http on loopback is for trying the vault on one machine: development and
    testing configurations only (and never outside an app)."""
    return has_app_context() and current_app.config.get("VAULT_ENV") in (
        "development",
        "testing",
    )


def check_vendor_url(value: str, *, label: str = "URL", loopback_http: bool = False) -> str:
    """The URL, stripped of surrounding blanks, or ``UnsafeURL`` saying what is wrong.

    ``loopback_http``: accept ``http://`` for a loopback host (development and testing
    only; the caller knows which configuration runs).
    """
    url = value.strip()
    if not url:
        raise UnsafeURL(f"{label} is empty.")
    if len(url) > MAX_LENGTH:
        raise UnsafeURL(f"{label} is longer than {MAX_LENGTH} characters.")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeURL(
            f"{label} must be an https:// address (not {scheme}:)."
            if scheme
            else f"{label} must be a full https:// address (https://example.com/...)."
        )
    if _INVISIBLE.search(url):
        raise UnsafeURL(f"{label} must not contain spaces, line breaks or control characters.")
    if "\\" in url:
        raise UnsafeURL(f"{label} must not contain backslashes.")
    if not parts.netloc.strip() or not parts.hostname:
        raise UnsafeURL(f"{label} must name a host, like https://example.com/.")
    if "@" in parts.netloc:
        raise UnsafeURL(f"{label} must not contain a user name or password.")
    host = parts.hostname
    try:
        parts.port  # noqa: B018  (urlsplit checks the port only when asked)
    except ValueError as exc:
        raise UnsafeURL(f"{label} has an invalid port.") from exc
    if not (_is_ip(host) or _is_host_name(host)):
        raise UnsafeURL(
            f"{label} has an invalid host name {host!r} (international names in their xn-- form)."
        )
    if scheme == "http" and not (loopback_http and is_loopback(host)):
        raise UnsafeURL(
            f"{label} must use https"
            + (" (http only for 127.0.0.1, ::1 or localhost)." if loopback_http else ".")
        )
    return url


def optional_vendor_url(
    value: str | None, *, label: str = "URL", loopback_http: bool = False
) -> str | None:
    """``check_vendor_url`` for an optional field: None or blank is None."""
    if value is None or not value.strip():
        return None
    return check_vendor_url(value, label=label, loopback_http=loopback_http)
