"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for tests.

Plain, STARTTLS or implicit TLS, with or without AUTH; ``refuse`` makes it answer a
chosen reply to RCPT for an address (``550 ...`` permanent, ``451 ...`` temporary),
``refuse_sender`` to MAIL FROM.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

LINK = re.compile(r"https?://\S+")


@dataclass
class Received:
    envelope_from: str
    recipients: list[str]
    message: EmailMessage
    # The client's (host, port): one per connection, so tests can count connections.
    peer: Any = None

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None, "no text part"
        return part.get_content().replace("\r\n", "\n")  # CRLF is the wire's, not ours

    def links(self) -> list[str]:
        return LINK.findall(self.text)

    def link(self, containing: str) -> str:
        found = [link for link in self.links() if containing in link]
        assert len(found) == 1, f"expected one link with {containing!r} in:\n{self.text}"
        return found[0]


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)
    sender_replies: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self.sender_replies.get(address)
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.original_content, policy=default_policy)
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), message, session.peer)  # type: ignore[arg-type]
            )
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MailServer:
    """``with MailServer() as server: ... server.url ... server.received``."""

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
        port: int | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self.handler = _Handler()
        self.credentials = credentials
        self.port = port or free_port()
        options: dict[str, Any] = {}
        if idle_timeout is not None:  # the server closes a connection idle this long
            options.update(timeout=idle_timeout)
        if tls is not None and not implicit_tls:
            options.update(tls_context=tls, require_starttls=True)
        if credentials is not None:
            options.update(authenticator=self._authenticate, auth_required=True)
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=tls if implicit_tls else None,
            **options,
        )
        self.scheme = "smtps" if implicit_tls else "smtp"

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and self.credentials == (
            auth_data.login.decode(),
            auth_data.password.decode(),
        )
        return AuthResult(success=ok, handled=False)  # False: the server answers 535 itself

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def clear(self) -> None:
        with self.handler.lock:
            self.handler.received.clear()
        self.handler.replies.clear()
        self.handler.sender_replies.clear()

    def refuse(self, address: str, reply: str) -> None:
        self.handler.replies[address] = reply

    def refuse_sender(self, address: str, reply: str) -> None:
        """Answer ``reply`` to MAIL FROM for ``address``."""
        self.handler.sender_replies[address] = reply

    def to(self, address: str) -> list[Received]:
        return [mail for mail in self.received if address in mail.recipients]

    def only_to(self, address: str) -> Received:
        mails = self.to(address)
        assert len(mails) == 1, f"{len(mails)} mails to {address}: {[m.subject for m in mails]}"
        return mails[0]

    def start(self) -> MailServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> MailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files in ``folder``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
