"""What an unsubscribe link names, and withdrawing it.

A link names one consent (customer x business x channel x topic, ``tokens.UnsubscribeTarget``).
Following it withdraws exactly that consent through ``vault.consents.operations`` (the same
change the customer's own consent page makes), with the ledger event's ``source`` set to
``unsubscribe`` and the customer's signed receipt issued in the same transaction.

Idempotent by state, not by token: if the consent is already withdrawn, nothing is written
(no second ledger event, however often or however concurrently the link is followed). A
customer who allowed the topic again later and follows the old link again is unsubscribed
again, which is what they asked for.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.engine import CHANNEL_NAMES, CHANNELS, State
from vault.accounts.models import AccountStatus, User
from vault.consents import ledger as ledger_store
from vault.consents.models import ConsentReceipt, TopicConsent
from vault.consents.operations import ConsentChanges, TopicChoice, save_consents
from vault.crypto.keyring import KeyProvider
from vault.unsubscribe.tokens import UnsubscribeTarget
from vault.vendors.models import ContactTopic, Vendor

SOURCE = "unsubscribe"  # consent.ledger.SOURCES


class Standing(enum.StrEnum):
    """Where the consent a link names stands now."""

    SUBSCRIBED = "subscribed"  # not withdrawn: the button withdraws it
    UNSUBSCRIBED = "unsubscribed"  # already withdrawn (by this link or otherwise)
    ACCOUNT_CLOSED = "account_closed"  # nobody to contact any more
    VENDOR_GONE = "vendor_gone"  # the business left the vault
    TOPIC_GONE = "topic_gone"  # the business no longer has this topic


@dataclass(frozen=True)
class Subscription:
    """What a page may say about a link: the business, the channel and the topic, never the
    customer's address or profile (the customer is only an id here)."""

    target: UnsubscribeTarget
    standing: Standing
    vendor_name: str | None = None
    topic_name: str | None = None
    topic_description: str | None = None

    @property
    def channel_name(self) -> str:
        return CHANNEL_NAMES[self.target.channel]


@dataclass(frozen=True)
class Withdrawal:
    subscription: Subscription  # as it stood before
    receipt: ConsentReceipt | None  # None: nothing changed

    @property
    def changed(self) -> bool:
        return self.receipt is not None


def known_channel(target: UnsubscribeTarget) -> bool:
    """A signed token always names a known channel; a check all the same, since an unknown
    one would fail deep inside the consent change."""
    return target.channel in CHANNELS


def look_up(session: Session, target: UnsubscribeTarget) -> Subscription:
    """The consent the link names, as it stands now (reads only)."""
    user = session.get(User, target.user_id)
    if user is None or user.status != AccountStatus.ACTIVE:
        return Subscription(target, Standing.ACCOUNT_CLOSED)
    vendor = session.get(Vendor, target.vendor_id)
    if vendor is None:
        return Subscription(target, Standing.VENDOR_GONE)
    topic = session.scalar(
        select(ContactTopic).where(
            ContactTopic.vendor_id == vendor.id, ContactTopic.name == target.topic
        )
    )
    if topic is None:
        return Subscription(target, Standing.TOPIC_GONE, vendor_name=vendor.name)
    row = session.get(TopicConsent, (user.id, topic.id, target.channel))
    withdrawn = row is not None and row.state == str(State.WITHDRAWN)
    return Subscription(
        target,
        Standing.UNSUBSCRIBED if withdrawn else Standing.SUBSCRIBED,
        vendor_name=vendor.name,
        topic_name=topic.name,
        topic_description=topic.description or None,
    )


def withdraw(session: Session, keys: KeyProvider, target: UnsubscribeTarget) -> Withdrawal:
    """Withdraw exactly the consent the link names, unless there is nothing to withdraw.

    A link followed again (a mail client retrying) finds it withdrawn and writes nothing,
    not even a lock. Otherwise the ledger's lock is taken and the state read again under it:
    two requests with the same link at once (a mail client's one-click POST and a person's
    click) queue there, and the second reads the first's withdrawal and writes nothing.
    Flushes, never commits."""
    current = look_up(session, target)
    if current.standing != Standing.SUBSCRIBED:
        return Withdrawal(current, None)
    ledger_store.lock(session)
    session.expire_all()  # what was read before the lock is read again, as it is now
    current = look_up(session, target)
    if current.standing != Standing.SUBSCRIBED:
        return Withdrawal(current, None)
    topic = session.scalar(
        select(ContactTopic).where(
            ContactTopic.vendor_id == target.vendor_id, ContactTopic.name == target.topic
        )
    )
    assert topic is not None  # look_up found it under the same lock
    issued = save_consents(
        session,
        keys,
        target.user_id,
        ConsentChanges(topics={(topic.id, target.channel): TopicChoice(State.WITHDRAWN)}),
        source=SOURCE,
        actor="customer",  # the holder of the link the customer was sent
    )
    # A consent that was not withdrawn always changes, so there is exactly one receipt.
    return Withdrawal(current, issued[0] if issued else None)
