"""E-mail messages as the connectors send them: the sender, the headers, the MIME parts.

``build_message`` turns a ``connectors.base.Message`` into a standards-conforming
``EmailMessage`` (the standard library's ``email`` package under the SMTP policy). A
business's message (``sender_name``, ``reference``, ``unsubscribe_url``) is from
``"Acme Shop via CMR Vault" <vault@...>``, has the Message-ID ``<{reference}@{sender
domain}>`` and the RFC 8058 one-click unsubscribe headers.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid, parseaddr
from urllib.parse import urlsplit

from connectors.base import Message

_NAME_LIMIT = 64
_NAME_DROPPED = frozenset('<>"\\')
_REFERENCE_LIMIT = 128
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_OWN_HEADERS = frozenset({"from", "sender", "to", "cc", "bcc", "subject", "date", "message-id"})
_UNSUBSCRIBE_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})


class EmailConfigError(ValueError):
    """An SMTP URL or sender address that cannot work; the message says what to fix."""


class MessageError(ValueError):
    """A message that cannot be built as given; the text is safe to log (no address)."""


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


def sender_display_name(sender_name: str | None, sender: Sender) -> str:
    """The From display name of a business's message: ``"Acme Shop via CMR Vault"``.

    The address stays the vault's own (only its domain passes SPF, DKIM and DMARC), so the
    name says who wrote the message and who carried it, the "X via Y" of mailing lists and
    Gmail: the business first, as inboxes show it, and the vault always beside it, so no
    business can pass for another sender with its name alone. The business's name is
    cleaned first (``clean_display_name``); a name with nothing left is the vault's.
    """
    vault = sender.display_name or sender.domain
    business = clean_display_name(sender_name or "")
    return f"{business} via {vault}" if business else vault


def clean_display_name(name: str) -> str:
    """One line of at most 64 characters: no header can be slipped in through a name.

    Control characters and any line or paragraph separator become spaces, runs of spaces
    one; invisible format characters (bidi overrides, zero-width joiners) are dropped, and
    so are angle brackets, double quotes and backslashes, which only help a name pass for
    an address. The ``email`` package then quotes or encodes what is left.
    """
    kept = []
    for char in name:
        category = unicodedata.category(char)
        if category == "Cf" or char in _NAME_DROPPED:
            continue
        kept.append(" " if category[0] in "CZ" else char)
    return " ".join("".join(kept).split())[:_NAME_LIMIT].rstrip()


def message_id(reference: str, domain: str) -> str:
    """``<{reference}@{domain}>``: the same on every attempt, so receivers can de-duplicate."""
    if len(reference) > _REFERENCE_LIMIT or not _DOT_ATOM.fullmatch(reference):
        raise MessageError("the reference is not RFC 5322 dot-atom text")
    return f"<{reference}@{domain}>"


def check_unsubscribe_url(url: str) -> str:
    """An https URL (http only on loopback, for development) fit for ``List-Unsubscribe``."""
    if not url or any(not 0x21 <= ord(char) <= 0x7E or char in '<>"' for char in url):
        raise MessageError("the unsubscribe URL must be printable ASCII without <, > or quotes")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return url
    raise MessageError("the unsubscribe URL must be https (RFC 8058)")


def build_message(
    message: Message, sender: Sender, *, transfer_encoding: str | None = None
) -> EmailMessage:
    """A standards-conforming MIME message; raises ValueError for header injection.

    ``transfer_encoding`` None lets the ``email`` package pick (7bit, or quoted-printable
    and base64 for long lines and non-ASCII text); ``"8bit"`` keeps the text as written.
    """
    own = _OWN_HEADERS | (_UNSUBSCRIBE_HEADERS if message.unsubscribe_url is not None else set())
    for name in message.headers:
        if name.lower() in own:
            raise MessageError(f"the {name} header is the connector's to set")
    if message.sender_name is not None:
        sender = Sender(sender_display_name(message.sender_name, sender), sender.address)
    mime = EmailMessage(policy=SMTP_POLICY)
    mime["From"] = sender.header()
    mime["To"] = message.recipient
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(datetime.now(UTC))
    if message.reference is not None:
        mime["Message-ID"] = message_id(message.reference, sender.domain)
    else:
        mime["Message-ID"] = make_msgid(domain=sender.domain)
    mime["Auto-Submitted"] = "auto-generated"
    if message.unsubscribe_url is not None:
        mime["List-Unsubscribe"] = f"<{check_unsubscribe_url(message.unsubscribe_url)}>"
        mime["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in message.headers.items():
        mime[name] = value
    mime.set_content(message.text, cte=transfer_encoding)
    if message.html is not None:
        mime.add_alternative(message.html, subtype="html", cte=transfer_encoding)
    return mime
