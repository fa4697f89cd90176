"""E-mail: an SMTP connector configured by one URL, and a development connector writing files.

``smtp://user:pass@host:587?starttls=true`` sends over SMTP with STARTTLS,
``smtps://user:pass@host:465`` over implicit TLS, ``smtp://host:25`` in the clear (a relay
on the same host or network). Optional query parameters: ``timeout`` (seconds, default 10)
and ``cafile`` (a PEM file of CAs to trust instead of the system's, for a private relay).
User and password are percent-decoded, so ``@``, ``:`` and ``/`` in them can be written
``%40``, ``%3A`` and ``%2F``. TLS always verifies the server's certificate and host name.

Messages are built by ``connectors.mime.build_message`` (a Message-ID, ``Date``, ``From``
with a display name, ``Auto-Submitted``, a text part and an optional HTML one; for a
business's message its name beside the vault's, and one-click unsubscribe headers).
``Sender`` and ``EmailConfigError`` live there too and are importable from here.

A worker delivering many messages keeps one connection open: ``with connector:`` (or
``open()`` ... ``close()``); see ``SmtpConnector``.
"""

from __future__ import annotations

import os
import secrets
import select
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from connectors.base import Delivery, Message, Outcome
from connectors.mime import EmailConfigError, MessageError, Sender, build_message

DEFAULT_TIMEOUT = 10.0
# A kept connection idle longer than this is replaced before the next message: servers
# close idle ones after a few minutes (RFC 5321 suggests 5), NATs sometimes silently.
DEFAULT_MAX_IDLE = 60.0
# Replies asking for (stronger) authentication (RFC 4954): the operator's to fix.
_SETUP_CODES = frozenset({530, 534, 535, 538})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # "none", "starttls" or "tls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
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


def _built(message: Message, sender: Sender, **options: str) -> EmailMessage | Delivery:
    try:
        return build_message(message, sender, **options)
    except MessageError as exc:
        return Delivery(Outcome.PERMANENT_FAILURE, f"the message could not be built: {exc}")
    except (ValueError, TypeError):
        # The email package's own refusals (a line break in a header...) quote the value.
        return Delivery(Outcome.PERMANENT_FAILURE, "the message could not be built")


def _refused(code: int, stage: str) -> Delivery:
    """A refusal of MAIL FROM, RCPT TO or DATA: a 5xx about this message is final.

    MAIL FROM names the vault's own address, the same for every message: its 5xx refusal
    (sender not allowed, relaying denied) is the set-up's and waits like a failed AUTH,
    except ``552`` (the message is too large). ``530``, ``534``, ``535`` and ``538`` ask for
    authentication or stronger authentication, at any stage: the set-up's too.
    """
    setup = code in _SETUP_CODES or (stage == "MAIL FROM" and code != 552)
    final = 500 <= code < 600 and not setup
    outcome = Outcome.PERMANENT_FAILURE if final else Outcome.TEMPORARY_FAILURE
    return Delivery(outcome, f"SMTP {code} at {stage}")


class _ConnectFailed(Exception):
    """Connecting, TLS, EHLO or AUTH failed: the operator's set-up, never the message's."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class SmtpConnector:
    """Hands messages to an SMTP server.

    Outside ``open()`` each ``deliver`` connects, sends and quits (sign-up mail from web
    requests, which may run in parallel). Between ``open()`` and ``close()``, or inside
    ``with connector:``, one connection is kept for every delivery: opened by the first,
    checked before each next one (a connection the server closed or spoke on unasked, say
    a ``421`` idle time-out, or one idle longer than ``max_idle`` seconds, is replaced by a
    new one before anything is sent) and dropped after any failure that leaves it in doubt.
    Deliveries on a kept connection take turns (a lock), so one connector can be shared by
    threads.

    A message is never sent twice by the connector itself: once MAIL FROM has gone out, a
    failure is reported, not retried, because the server may have taken the message
    already. Outcomes:

    - ``SENT``: the server accepted the message (``message_id`` is its Message-ID).
    - ``PERMANENT_FAILURE``: a 5xx reply to RCPT TO (no such user...) or DATA (content
      refused), ``552`` to MAIL FROM (too large); the message cannot be built (``detail``
      says why); a non-ASCII address the server cannot take.
    - ``TEMPORARY_FAILURE``: a 4xx reply; no connection, a dropped one or a time-out; and
      the operator's set-up, even with a 5xx: any failure while connecting, in TLS, EHLO
      or AUTH, other 5xx refusals of MAIL FROM (the vault's own sender address), and
      ``530``/``534``/``535``/``538`` (authentication needed) anywhere. The message waits
      while the set-up is fixed.
    """

    channel = "email"

    def __init__(
        self,
        settings: SmtpSettings,
        sender: Sender,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: float = DEFAULT_MAX_IDLE,
    ) -> None:
        self.settings = settings
        self.sender = sender
        self.max_idle = max_idle
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self._keep_open = False
        self._connection: smtplib.SMTP | None = None
        self._last_used = 0.0

    @classmethod
    def from_url(
        cls, url: str, sender: str, *, ssl_context: ssl.SSLContext | None = None
    ) -> SmtpConnector:
        return cls(SmtpSettings.from_url(url), Sender.parse(sender), ssl_context=ssl_context)

    def open(self) -> SmtpConnector:
        """Keep one connection across deliveries from now on; it opens on the first one."""
        with self._lock:
            self._keep_open = True
        return self

    def close(self) -> None:
        """Quit the kept connection, if any; later deliveries connect one at a time again."""
        with self._lock:
            self._keep_open = False
            self._drop(politely=True)

    def __enter__(self) -> SmtpConnector:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def deliver(self, message: Message) -> Delivery:
        mime = _built(message, self.sender)
        if isinstance(mime, Delivery):
            return mime
        if self._keep_open:
            with self._lock:
                if self._keep_open:  # close() may have run while this thread waited
                    return self._deliver_kept(mime, message.recipient)
        try:
            connection = self._connect()
        except _ConnectFailed as exc:
            return Delivery(Outcome.TEMPORARY_FAILURE, exc.detail)
        try:
            delivery, _ = self._send(connection, mime, message.recipient)
        finally:
            _quit(connection)
        return delivery

    def _deliver_kept(self, mime: EmailMessage, recipient: str) -> Delivery:
        if self._connection is not None and not self._fresh(self._connection):
            self._drop(politely=False)
        if self._connection is None:
            try:
                self._connection = self._connect()
            except _ConnectFailed as exc:
                return Delivery(Outcome.TEMPORARY_FAILURE, exc.detail)
        delivery, reusable = self._send(self._connection, mime, recipient)
        if reusable:
            self._last_used = time.monotonic()
        else:
            self._drop(politely=False)
        return delivery

    def _fresh(self, connection: smtplib.SMTP) -> bool:
        """True when the connection may carry another message without a round trip to ask.

        A server does not speak unasked except to close (``421``) or when it has closed: a
        socket readable before we send is one to replace, as is one idle too long (a NAT
        or firewall may have forgotten it without telling either side).
        """
        if time.monotonic() - self._last_used > self.max_idle or connection.sock is None:
            return False
        try:
            readable, _, _ = select.select([connection.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def _drop(self, *, politely: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if politely:
            _quit(connection)
        else:
            connection.close()

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is not None:
            return self._ssl_context
        return ssl.create_default_context(cafile=self.settings.cafile)

    def _connect(self) -> smtplib.SMTP:
        """A connection ready for MAIL FROM (TLS and AUTH done), or ``_ConnectFailed``."""
        settings = self.settings
        connection: smtplib.SMTP | None = None
        try:
            if settings.security == "tls":
                connection = smtplib.SMTP_SSL(
                    settings.host, settings.port, timeout=settings.timeout, context=self._context()
                )
            else:
                connection = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
                if settings.security == "starttls":
                    connection.starttls(context=self._context())
            connection.ehlo_or_helo_if_needed()
            if settings.username:
                connection.login(settings.username, settings.password or "")
            return connection
        except smtplib.SMTPAuthenticationError as exc:
            failure = _ConnectFailed(f"SMTP {exc.smtp_code} at AUTH")
        except smtplib.SMTPNotSupportedError:
            failure = _ConnectFailed("the server lacks an extension (STARTTLS or AUTH)")
        except smtplib.SMTPResponseException as exc:
            failure = _ConnectFailed(f"SMTP {exc.smtp_code} at connect")
        except ssl.SSLError as exc:
            failure = _ConnectFailed(f"TLS failed: {exc.reason or 'error'}")
        except (smtplib.SMTPException, OSError) as exc:
            # Refused, reset or timed-out connections: the server may be back later.
            failure = _ConnectFailed(f"connection failed: {type(exc).__name__}")
        if connection is not None:
            connection.close()
        raise failure

    def _send(
        self, connection: smtplib.SMTP, mime: EmailMessage, recipient: str
    ) -> tuple[Delivery, bool]:
        """Send one message; the flag says whether the connection can carry another."""
        try:
            refused = connection.send_message(
                mime, from_addr=self.sender.address, to_addrs=[recipient]
            )
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0]
            delivery = _refused(code, "RCPT")
        except smtplib.SMTPSenderRefused as exc:
            delivery = _refused(exc.smtp_code, "MAIL FROM")
        except smtplib.SMTPDataError as exc:
            delivery = _refused(exc.smtp_code, "DATA")
        except smtplib.SMTPNotSupportedError:
            # Only SMTPUTF8 is asked for here; the next server (or this one fixed) may have it.
            return Delivery(Outcome.TEMPORARY_FAILURE, "the server lacks SMTPUTF8"), True
        except UnicodeEncodeError:
            return Delivery(Outcome.PERMANENT_FAILURE, "the address needs SMTPUTF8"), False
        except (smtplib.SMTPException, OSError) as exc:
            # Dropped or timed out mid-transaction: the server may or may not have the
            # message, so it is reported (the outbox retries; the Message-ID stays the same).
            detail = f"connection lost: {type(exc).__name__}"
            return Delivery(Outcome.TEMPORARY_FAILURE, detail), False
        else:
            if refused:  # only possible with several recipients; kept for completeness
                return _refused(next(iter(refused.values()))[0], "RCPT"), True
            return Delivery(Outcome.SENT, "accepted", message_id=str(mime["Message-ID"])), True
        # A refusal: smtplib reset the transaction, or closed the connection after a 421.
        return delivery, connection.sock is not None


def _quit(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        connection.close()


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
        mime = _built(message, self.sender, transfer_encoding="8bit")
        if isinstance(mime, Delivery):
            return mime
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
