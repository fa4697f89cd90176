"""Where the vault may post a webhook: the SSRF guard, checked before every delivery.

A business chooses its endpoint URL, and the vault posts to it from inside its own
network: unchecked, a URL could reach the vault's database, a cloud metadata service or
anything else behind the firewall. ``check_url`` accepts, in production, only an https
URL without user name or password whose host is, or resolves only to, public addresses.
Refused everywhere: unspecified, link-local (``169.254.169.254``), multicast, reserved,
documentation and benchmarking ranges, and the same behind IPv6 (IPv4-mapped, 6to4,
NAT64). ``allow_local=True`` (development and tests) also accepts ``http`` and loopback
and private ranges (``127/8``, ``::1``, ``10/8``, ``172.16/12``, ``192.168/16``,
``100.64/10``, ``fc00::/7``).

The check resolves the name once and returns the addresses it judged; the webhook
connector connects to one of those, never resolving again, so a name that answers a
public address to the check and a private one to the connection (DNS rebinding) gains
nothing. It runs again at every delivery, since DNS may have changed since the URL was
saved. Nothing here follows redirects: a 3xx is an answer like any other.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
Kind = Literal["public", "local", "forbidden"]

MAX_URL_LENGTH = 2048
_LOCAL_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """A URL the vault will not post to; ``str()`` says why in words safe to show and log.

    ``permanent`` is False when the same URL may pass later: its name does not resolve
    now, or resolves to a refused address (DNS may change); True when the URL itself is
    refused (scheme, credentials, a literal address).
    """

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True)
class CheckedURL:
    url: str
    scheme: str
    host: str  # as in the URL, lower case: the Host header, TLS SNI and certificate name
    port: int
    addresses: tuple[str, ...]  # every address the host resolved to, all accepted


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (``/etc/hosts``, then DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_kind(address: str | IPAddress) -> Kind:
    """``public``, ``local`` (loopback or private: development only) or ``forbidden``."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_kind(embedded)
    if ip.is_loopback:
        return "local"
    if ip.is_unspecified or ip.is_link_local or ip.is_multicast or ip.is_reserved:
        return "forbidden"
    if any(ip in network for network in _LOCAL_NETWORKS):
        return "local"
    # is_global excludes the other special-purpose ranges (documentation, benchmarking...).
    return "public" if ip.is_global else "forbidden"


def _literal(host: str) -> IPAddress | None:
    """The address a host names by itself, including forms like ``2130706433``, ``0x7f.1``
    or ``127.1`` that the system resolver reads as IPv4 without asking DNS."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _judge(ip: IPAddress, allow_local: bool) -> str | None:
    kind = address_kind(ip)
    if kind == "public" or (kind == "local" and allow_local):
        return None
    return "a private or loopback address" if kind == "local" else "a reserved address"


def check_url(
    url: str, *, allow_local: bool = False, resolve: Resolver | None = system_resolver
) -> CheckedURL:
    """The URL and the addresses it may be reached at, or ``UnsafeURL`` saying why not.

    ``resolve=None`` checks only what needs no DNS (the form, a literal address, names
    like ``localhost``) and returns no addresses for a name: fit to validate a form, not
    to connect.
    """
    if len(url) > MAX_URL_LENGTH or any(not 0x21 <= ord(char) <= 0x7E for char in url):
        raise UnsafeURL(
            "the URL must be printable ASCII (a punycode host, a percent-encoded path)",
            permanent=True,
        )
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_local else ("https",)
    if parts.scheme not in schemes:
        raise UnsafeURL("the URL must start with https://", permanent=True)
    if "@" in parts.netloc:
        raise UnsafeURL("the URL must not carry a user name or password", permanent=True)
    host = parts.hostname
    if not host:
        raise UnsafeURL("the URL must name a host", permanent=True)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if port == 0:
        raise UnsafeURL("the URL's port is not a number from 1 to 65535", permanent=True)
    literal = _literal(host)
    if literal is not None:
        refused = _judge(literal, allow_local)
        if refused:
            raise UnsafeURL(f"the URL's host is {refused}", permanent=True)
        return CheckedURL(url, parts.scheme, host, port, (str(literal),))
    name = host.rstrip(".")
    if (name == "localhost" or name.endswith(".localhost")) and not allow_local:
        raise UnsafeURL("the URL's host is a private or loopback address", permanent=True)
    if resolve is None:
        return CheckedURL(url, parts.scheme, host, port, ())
    try:
        addresses = tuple(resolve(host, port))
    except (OSError, UnicodeError):
        raise UnsafeURL("the URL's host name does not resolve", permanent=False) from None
    if not addresses:
        raise UnsafeURL("the URL's host name does not resolve", permanent=False)
    for address in addresses:
        try:
            refused = _judge(ipaddress.ip_address(address), allow_local)
        except ValueError:
            refused = "not an IP address"
        if refused:
            raise UnsafeURL(f"the URL's host name resolves to {refused}", permanent=False)
    return CheckedURL(url, parts.scheme, host, port, addresses)
