"""E-mail: an SMTP connector configured by one URL, and a development connector writing files.

``smtp://user:pass@host:587?starttls=true`` sends over SMTP with STARTTLS,
``smtps://user:pass@host:465`` over implicit TLS, ``smtp://host:25`` in the clear (a relay
on the same host or network). Optional query parameters: ``timeout`` (seconds, default 10)
and ``cafile`` (a PEM file of CAs to trust instead of the system's, for a private relay).
User and password are percent-decoded, so ``@``, ``:`` and ``/`` in them can be written
``%40``, ``%3A`` and ``%2F``. TLS always verifies the server's certificate and host name.

Messages are built with the standard library's ``email`` package (``EmailMessage`` under
the SMTP policy): a ``Message-ID`` in the sender's domain, ``Date``, ``From`` with a display
name, ``Auto-Submitted: auto-generated`` (RFC 3834, so auto-responders stay quiet), a text
part and, when given, an HTML alternative.
"""

from __future__ import annotations

import os
import secrets
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from connectors.base import Delivery, Message, Outcome

DEFAULT_TIMEOUT = 10.0
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class EmailConfigError(ValueError):
    """An SMTP URL or sender address that cannot work; the message says what to fix."""


@dataclass(frozen=True)
class Sender:
    display_name: str
    address: str

    @classmethod
    def parse(cls, text: str) -> Sender:
        """``"CMR Vault <vault@example.com>"`` or a bare ``vault@example.com``."""
        name, address = parseaddr(text)
        if not address or "@" not in address or address.startswith("@") or "\n" in text:
            raise EmailConfigError(
                f"not a sender address: {text!r} (use e.g. 'CMR Vault <vault@example.com>')"
            )
        return cls(name, address)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    def header(self) -> Address:
        username, _, domain = self.address.rpartition("@")
        return Address(display_name=self.display_name, username=username, domain=domain)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # "none", "starttls" or "tls"
    username: str | None = None
    password: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    cafile: str | None = None

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise EmailConfigError("an SMTP URL starts with smtp:// or smtps://")
        if not parts.hostname:
            raise EmailConfigError("an SMTP URL names a host, e.g. smtp://mail.example.com:587")
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        unknown = set(query) - {"starttls", "timeout", "cafile"}
        if unknown:
            raise EmailConfigError(f"unknown SMTP URL parameters: {', '.join(sorted(unknown))}")
        starttls = query.get("starttls", "false").lower()
        if starttls not in _TRUE | _FALSE:
            raise EmailConfigError(f"starttls must be true or false, not {starttls!r}")
        if parts.scheme == "smtps":
            if starttls in _TRUE:
                raise EmailConfigError("smtps:// is TLS from the start; drop ?starttls=true")
            security = "tls"
        else:
            security = "starttls" if starttls in _TRUE else "none"
        try:
            port = parts.port or (465 if security == "tls" else 25)
            timeout = float(query.get("timeout", DEFAULT_TIMEOUT))
        except ValueError as exc:
            raise EmailConfigError(f"bad port or timeout in the SMTP URL: {exc}") from exc
        if timeout <= 0:
            raise EmailConfigError("the SMTP timeout must be positive")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if username and security == "none":
            # Credentials would cross the network in the clear.
            raise EmailConfigError(
                "refusing to send an SMTP password without TLS: use ?starttls=true or smtps://"
            )
        return cls(
            host=parts.hostname,
            port=port,
            security=security,
            username=username,
            password=password,
            timeout=timeout,
            cafile=query.get("cafile"),
        )


def build_message(
    message: Message, sender: Sender, *, transfer_encoding: str | None = None
) -> EmailMessage:
    """A standards-conforming MIME message; raises ValueError for header injection.

    ``transfer_encoding`` None lets the ``email`` package pick (7bit, or quoted-printable
    and base64 for long lines and non-ASCII text); ``"8bit"`` keeps the text as written.
    """
    mime = EmailMessage(policy=SMTP_POLICY)
    mime["From"] = sender.header()
    mime["To"] = message.recipient
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(datetime.now(UTC))
    mime["Message-ID"] = make_msgid(domain=sender.domain)
    mime["Auto-Submitted"] = "auto-generated"
    for name, value in message.headers.items():
        mime[name] = value
    mime.set_content(message.text, cte=transfer_encoding)
    if message.html is not None:
        mime.add_alternative(message.html, subtype="html", cte=transfer_encoding)
    return mime


def _failure(code: int, stage: str) -> Delivery:
    outcome = Outcome.PERMANENT_FAILURE if 500 <= code < 600 else Outcome.TEMPORARY_FAILURE
    return Delivery(outcome, f"SMTP {code} at {stage}")


class SmtpConnector:
    """Hands each message to an SMTP server, one connection per message."""

    channel = "email"

    def __init__(
        self, settings: SmtpSettings, sender: Sender, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.settings = settings
        self.sender = sender
        self._ssl_context = ssl_context

    @classmethod
    def from_url(
        cls, url: str, sender: str, *, ssl_context: ssl.SSLContext | None = None
    ) -> SmtpConnector:
        return cls(SmtpSettings.from_url(url), Sender.parse(sender), ssl_context=ssl_context)

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is not None:
            return self._ssl_context
        return ssl.create_default_context(cafile=self.settings.cafile)

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        if settings.security == "tls":
            return smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout, context=self._context()
            )
        connection = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        if settings.security == "starttls":
            connection.starttls(context=self._context())
        return connection

    def deliver(self, message: Message) -> Delivery:
        try:
            mime = build_message(message, self.sender)
        except (ValueError, TypeError):
            return Delivery(Outcome.PERMANENT_FAILURE, "the message could not be built")
        message_id = str(mime["Message-ID"])
        try:
            with self._connect() as connection:
                if self.settings.username:
                    connection.login(self.settings.username, self.settings.password or "")
                refused = connection.send_message(
                    mime, from_addr=self.sender.address, to_addrs=[message.recipient]
                )
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0]
            return _failure(code, "RCPT")
        except smtplib.SMTPSenderRefused as exc:
            return _failure(exc.smtp_code, "MAIL FROM")
        except smtplib.SMTPDataError as exc:
            return _failure(exc.smtp_code, "DATA")
        except smtplib.SMTPAuthenticationError as exc:
            # The operator's credentials, not this message: it can go once they are fixed.
            return Delivery(Outcome.TEMPORARY_FAILURE, f"SMTP {exc.smtp_code} at AUTH")
        except smtplib.SMTPNotSupportedError:
            return Delivery(
                Outcome.TEMPORARY_FAILURE, "the server lacks an extension (STARTTLS, AUTH, UTF-8)"
            )
        except smtplib.SMTPResponseException as exc:
            return Delivery(Outcome.TEMPORARY_FAILURE, f"SMTP {exc.smtp_code}")
        except ssl.SSLError as exc:
            return Delivery(Outcome.TEMPORARY_FAILURE, f"TLS failed: {exc.reason or 'error'}")
        except (smtplib.SMTPException, OSError) as exc:
            # Refused, reset or timed-out connections: the server may be back later.
            return Delivery(Outcome.TEMPORARY_FAILURE, f"connection failed: {type(exc).__name__}")
        except UnicodeEncodeError:
            return Delivery(Outcome.PERMANENT_FAILURE, "the address needs SMTPUTF8")
        if refused:  # only possible with several recipients; kept for completeness
            return _failure(next(iter(refused.values()))[0], "RCPT")
        return Delivery(Outcome.SENT, "accepted", message_id=message_id)


class FileConnector:
    """Development without a mail server: each message becomes a ``.eml`` file to open.

    Files are created with mode 0600 in ``folder`` (made on first use); any mail program
    opens them, and so does a text editor: the text is kept 8-bit, so a link in it reads
    and copies as it was written (no quoted-printable line breaks).
    """

    channel = "email"

    def __init__(self, folder: str | os.PathLike[str], sender: Sender) -> None:
        self.folder = Path(folder)
        self.sender = sender

    def deliver(self, message: Message) -> Delivery:
        try:
            mime = build_message(message, self.sender, transfer_encoding="8bit")
        except (ValueError, TypeError):
            return Delivery(Outcome.PERMANENT_FAILURE, "the message could not be built")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = self.folder / f"{stamp}-{secrets.token_hex(4)}.eml"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(mime.as_bytes())
        except OSError as exc:
            return Delivery(Outcome.TEMPORARY_FAILURE, f"could not write: {type(exc).__name__}")
        return Delivery(
            Outcome.SENT, "written", message_id=str(mime["Message-ID"]), location=str(path)
        )
