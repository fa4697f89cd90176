"""One HTTP POST with the standard library: explicit time-out, no redirects, a capped answer.

The SMS adapter and the webhook connector use it. ``connect_to`` pins the connection to an
address checked beforehand (``connectors.ssrf``) while the ``Host`` header, TLS SNI and the
certificate check keep the URL's name: a DNS answer that changes between the check and the
connection (DNS rebinding) cannot send the request anywhere else.

``timeout`` bounds connecting and each read, not the whole exchange: a server trickling its
answer a byte at a time can hold a request longer, up to ``MAX_ANSWER`` bytes of body. A
redirect is an answer like any other (``http.client`` never follows one).
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_ANSWER = 64 * 1024
USER_AGENT = "CMR-Vault-Connectors/1"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # at most MAX_ANSWER bytes of it


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP to a given address, the Host header naming the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a given address, with SNI and certificate checked against the URL's host."""

    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address = address
        self.tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        try:
            self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    connect_to: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Answer:
    """POST ``body`` to ``url`` and return the answer, whatever its status.

    Raises ``OSError`` (refused, reset, timed out, TLS failed: ``ssl.SSLError`` is one) or
    ``http.client.HTTPException`` (a malformed answer or none). TLS verifies the server's
    certificate and name, with the system's CAs unless ``ssl_context`` says otherwise.
    """
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("an http or https URL with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl_context or ssl.create_default_context()
        if connect_to is None:
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            connection = _PinnedHTTPSConnection(host, port, connect_to, timeout, context)
    elif connect_to is None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    else:
        connection = _PinnedHTTPConnection(host, port, connect_to, timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    all_headers = {"User-Agent": USER_AGENT, "Connection": "close", **headers}
    try:
        connection.request("POST", target, body=body, headers=all_headers)
        response = connection.getresponse()
        return Answer(response.status, response.read(MAX_ANSWER))
    finally:
        connection.close()
