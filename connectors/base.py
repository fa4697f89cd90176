"""The one interface every delivery channel implements: deliver one message to one address.

A connector reports what happened in three words a retrying outbox understands: the
message was handed over (``SENT``), it may succeed later (``TEMPORARY_FAILURE``: the
server is down, busy or misconfigured) or it never will (``PERMANENT_FAILURE``: the
address is refused, the message cannot be built). ``detail`` says why in terms safe to
log: protocol codes and stages, never an address or a message body.

This package imports nothing of ``vault`` or Flask; the vault picks a connector from its
configuration and hands it finished messages. The channels: ``connectors.email`` (SMTP,
and ``.eml`` files for development), ``connectors.sms`` (Twilio's Messages API, and text
files for development; ``connectors.segments`` counts SMS segments). Webhooks
(``connectors.webhook``) report with the same ``Delivery`` but take a ``Webhook`` (URL,
secret, id, payload) rather than a ``Message``; ``connectors.ssrf`` says where they may go.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class Outcome(enum.StrEnum):
    SENT = "sent"
    TEMPORARY_FAILURE = "temporary_failure"
    PERMANENT_FAILURE = "permanent_failure"


@dataclass(frozen=True)
class Message:
    """One message for one recipient, already rendered.

    ``recipient`` is an e-mail address or, for SMS, an E.164 number. ``subject`` and
    ``html`` are e-mail only (SMS sends ``text``). The last three fields are for businesses'
    messages and may be left out (sign-up mail does):

    - ``sender_name``: the business's name; e-mail shows it as the sender's display name,
      ``"Acme Shop via CMR Vault" <vault@...>``, while the address stays the vault's.
    - ``reference``: the caller's id for this message (the outbox row's), the same on every
      attempt. E-mail makes it the Message-ID ``<{reference}@{sender domain}>`` so a
      receiver can tell a retried message from a new one. Letters, digits and
      ``!#$%&'*+-/=?^_`{|}~`` with single dots between them (RFC 5322 dot-atom text).
    - ``unsubscribe_url``: the message's one-click unsubscribe link (https); e-mail sends it
      as ``List-Unsubscribe`` with ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
      (RFC 8058).
    """

    recipient: str
    subject: str
    text: str
    html: str | None = None
    # Extra headers a channel may carry (e-mail: e.g. Reply-To); never From, To or Message-ID.
    headers: Mapping[str, str] = field(default_factory=dict)
    sender_name: str | None = None
    reference: str | None = None
    unsubscribe_url: str | None = None


@dataclass(frozen=True)
class Delivery:
    """What happened to one message.

    ``message_id`` is the channel's own id for it: the e-mail's ``Message-ID`` header, the
    SMS provider's message sid, the webhook's ``webhook-id``.
    """

    outcome: Outcome
    detail: str = ""
    message_id: str | None = None
    # Where a development connector put the message (a file), for the person to open.
    location: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SENT


@runtime_checkable
class Connector(Protocol):
    """A delivery channel. ``deliver`` never raises for delivery problems: it reports them."""

    channel: str

    def deliver(self, message: Message) -> Delivery: ...
