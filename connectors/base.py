"""The one interface every delivery channel implements: deliver one message to one address.

A connector reports what happened in three words a retrying outbox understands: the
message was handed over (``SENT``), it may succeed later (``TEMPORARY_FAILURE``: the
server is down, busy or misconfigured) or it never will (``PERMANENT_FAILURE``: the
address is refused, the message cannot be built). ``detail`` says why in terms safe to
log: protocol codes and stages, never an address or a message body.

This package imports nothing of ``vault`` or Flask; the vault picks a connector from its
configuration and hands it finished messages.
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
    """One message for one recipient, already rendered."""

    recipient: str
    subject: str
    text: str
    html: str | None = None
    # Extra headers a channel may carry (e.g. List-Unsubscribe for e-mail).
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
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
