"""The outbox worker: claims due messages, decides again, delivers, records the outcome.

One pass (``Worker.run_once``):

1. **Claim** up to ``VAULT_OUTBOX_BATCH`` due rows (queued or deferred, ``not_before``
   passed, no live lease) in one short transaction: ``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL, so workers on several machines take disjoint rows without waiting for each
   other; on SQLite one conditional ``UPDATE ... RETURNING``, atomic under its write lock.
   A claim is a token and a lease (``VAULT_OUTBOX_LEASE`` seconds): a worker killed
   mid-delivery leaves its rows to whoever looks after the lease ran out (at least once;
   every message carries its id as Message-ID, so receivers can de-duplicate).
2. **Decide again**, message by message, on the customer's settings as stored at that
   moment (a consent withdrawn while the batch runs stops the next message; deliveries
   already committed count against frequency caps): withdrawn, blocked, capped ->
   ``blocked``, never sent; quiet hours -> ``deferred`` to their end.
3. Only then **decrypt** the address (the e-mail or phone number of the profile) and the
   content, build the message and **deliver** it through the channel's connector.
4. **Record** the outcome with a contact-log row, one commit per message: ``sent``; a
   temporary failure is retried after an exponential back-off with jitter, up to
   ``VAULT_OUTBOX_MAX_ATTEMPTS``, then ``failed``; a permanent failure is ``failed``.

The SMTP connection is kept open across messages (``SmtpConnector.open``). ``stop()`` (the
CLI calls it on SIGTERM) finishes the message in hand and releases the rest of the batch.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from werkzeug.routing import BuildError

from connectors.base import Connector, Delivery, Outcome
from connectors.base import Message as Outgoing
from consent.engine import Decision, Topic, VendorRef, decide
from consent.engine import Outcome as Verdict
from vault.consents import ledger
from vault.consents.snapshot import load_consents
from vault.crypto.aead import DecryptionError
from vault.keys.operations import DataKeyShredded, cipher_for
from vault.messages.models import PENDING, Event, Message, Status
from vault.messages.operations import Decided, body_field, log, subject_field
from vault.models import utcnow
from vault.outbox import backoff, claim_due, release
from vault.profile.models import ProfileField
from vault.unsubscribe.tokens import UnsubscribeTarget, make_token
from vault.vendors.models import ContactTopic, Vendor
from vault.webhooks.delivery import WebhookSender

logger = logging.getLogger("vault.messages")

# The one update that records an outcome and ends the claim: built once.
_FINISH = (
    update(Message)
    .where(Message.id == bindparam("message_id"), Message.claim_token == bindparam("token"))
    .values(
        status=bindparam("new_status"),
        attempts=bindparam("new_attempts"),
        not_before=bindparam("new_not_before"),
        last_error=bindparam("new_last_error"),
        sent_at=bindparam("new_sent_at"),
        provider_id=bindparam("new_provider_id"),
        claim_token=None,
        lease_until=None,
        updated_at=bindparam("now"),
    )
    .execution_options(synchronize_session=False)
)

# Which profile claim holds each channel's address.
ADDRESS_CLAIMS = {"email": "email", "sms": "phone_number"}
DEVELOPMENT_BASE_URL = "http://127.0.0.1:5000"


class Worker:
    """Delivers the outbox of one app. Connectors default to the configured ones (built
    for this worker alone, so its kept SMTP connection is its own)."""

    def __init__(
        self,
        app: Flask,
        *,
        email: Connector | None = None,
        sms: Connector | None = None,
        webhook: Any = None,
    ) -> None:
        from vault import mail
        from vault import sms as sms_channel

        self.app = app
        config = app.config
        self.connectors: dict[str, Connector | None] = {
            "email": email or mail.build_connector(config),
            "sms": sms or sms_channel.build_connector(config),
        }
        # Consent-change webhooks share this worker, its claim, lease and back-off.
        self.webhooks = WebhookSender(app, connector=webhook)
        self.batch = int(config["VAULT_OUTBOX_BATCH"])
        self.lease = timedelta(seconds=int(config["VAULT_OUTBOX_LEASE"]))
        self.max_attempts = int(config["VAULT_OUTBOX_MAX_ATTEMPTS"])
        self.base_delay = float(config["VAULT_OUTBOX_BACKOFF"])
        self.max_delay = float(config["VAULT_OUTBOX_MAX_BACKOFF"])
        self.poll = float(config["VAULT_OUTBOX_POLL"])
        issuer = config.get("VAULT_ISSUER")
        self.base_url = str(issuer or DEVELOPMENT_BASE_URL).rstrip("/")
        self._urls = app.url_map.bind("localhost")
        self._stop = threading.Event()
        self._contacts: dict[tuple[str, str], tuple[Any, str | None]] = {}
        self.delivered = 0

    # --- running ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the message in hand, release the rest of the batch, and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _open(self) -> None:
        for connector in self.connectors.values():
            opener = getattr(connector, "open", None)
            if opener is not None:
                opener()

    def _close(self) -> None:
        for connector in self.connectors.values():
            closer = getattr(connector, "close", None)
            if closer is not None:
                closer()

    def run_once(self) -> int:
        """Deliver until nothing is due (or ``stop()``); the number of messages and webhooks
        handled."""
        from vault.extensions import db

        handled = 0
        self._open()
        try:
            # A session of its own that keeps loaded rows across its commits (one per
            # message): nothing is read twice.
            with self.app.app_context(), Session(db.engine, expire_on_commit=False) as session:
                while not self.stopping:
                    claimed = self.claim(session)
                    done = self.process(session, claimed) if claimed[1] else 0
                    if not self.stopping:
                        done += self.webhooks.run_batch(session, lambda: self.stopping)
                    if not done:
                        break
                    handled += done
        finally:
            self._close()
        return handled

    def run(self) -> None:
        """Deliver until ``stop()``, looking again every ``VAULT_OUTBOX_POLL`` seconds when
        idle. Database trouble is logged and waited out, never the end of the worker."""
        from vault.errors import DATABASE_TROUBLE

        logger.info("outbox worker started")
        while not self.stopping:
            try:
                handled = self.run_once()
            except DATABASE_TROUBLE as error:
                logger.warning("outbox worker: database unavailable (%s)", type(error).__name__)
                handled = 0
            if not handled:
                self._stop.wait(self.poll)
        logger.info("outbox worker stopped")

    # --- claiming ----------------------------------------------------------------------------

    def claim(self, session: Session) -> tuple[str, list[Message]]:
        """Take up to ``batch`` due messages for this worker; commits the claim."""
        return claim_due(session, Message, PENDING, batch=self.batch, lease=self.lease)

    # --- one batch -----------------------------------------------------------------------------

    def process(self, session: Session, claimed: tuple[str, list[Message]]) -> int:
        token, messages = claimed
        if not messages:
            return 0
        from vault.services import keys

        provider = keys()
        vendor_ids = {m.vendor_id for m in messages}
        vendors = {
            v.id: v for v in session.scalars(select(Vendor).where(Vendor.id.in_(vendor_ids)))
        }
        topics = {
            (t.vendor_id, t.name): Topic(t.name, t.purpose)
            for t in session.scalars(
                select(ContactTopic).where(ContactTopic.vendor_id.in_(vendor_ids))
            )
        }
        # Decrypted addresses live no longer than the batch.
        self._contacts = {}
        handled = 0
        for index, message in enumerate(messages):
            if self.stopping:
                self._release(session, token, [m.id for m in messages[index:]])
                break
            # Plain values: the commit below expires the ORM objects.
            ids = (message.id, message.user_id, message.vendor_id, message.channel)
            vendor = vendors.get(message.vendor_id)
            topic = topics.get((message.vendor_id, message.topic))
            at = utcnow()
            # The ledger head first, then the settings: every change up to that event is in
            # what is decided on. Per message, so nothing is sent on a stale snapshot.
            head = ledger.head(session) or (0, "0" * 64)
            customer = load_consents(session, [ids[1]], at, vendor_id=ids[2]).get(ids[1])
            if vendor is None or topic is None:
                decision = Decision(
                    Verdict.DENY,
                    _no_topic_rule(),
                    "The business no longer declares this topic.",
                )
            else:
                decision = decide(
                    customer, VendorRef(vendor.id, vendor.name), message.channel, topic, at
                )
            decided = Decided(decision, head[0], head[1])
            try:
                if decision.outcome is Verdict.DENY:
                    self._blocked(session, message, token, decided, at)
                elif decision.outcome is Verdict.DEFER:
                    self._deferred(session, message, token, decided, at)
                else:
                    delivery = self._deliver(session, provider, message, vendor)
                    self._record(session, message, token, decided, delivery)
                session.commit()
            except Exception:
                session.rollback()
                logger.exception("outbox: message %s could not be handled", ids[0])
                self._release(session, token, [ids[0]])
            handled += 1
        self._contacts = {}
        return handled

    def _release(self, session: Session, token: str, ids: list[str]) -> None:
        """Give claimed rows back at once (stopping, or a message that raised)."""
        release(session, Message, token, ids)

    def _finish(self, session: Session, message: Message, token: str, **values: Any) -> None:
        """Update a claimed row and end the claim; a row whose lease ran out and that
        another worker claimed since is left to that worker."""
        current = {
            "status": message.status,
            "attempts": message.attempts,
            "not_before": message.not_before,
            "last_error": message.last_error,
            "sent_at": message.sent_at,
            "provider_id": message.provider_id,
        }
        changed = {f"new_{name}": value for name, value in {**current, **values}.items()}
        result = session.execute(
            _FINISH, {**changed, "message_id": message.id, "token": token, "now": utcnow()}
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            logger.warning("outbox: message %s was claimed by another worker meanwhile", message.id)

    def _log(
        self,
        session: Session,
        message: Message,
        event: Event,
        at: datetime,
        decided: Decided | None = None,
        detail: str | None = None,
    ) -> None:
        log(
            session,
            vendor_id=message.vendor_id,
            user_id=message.user_id,
            channel=message.channel,
            topic=message.topic,
            event=event,
            at=at,
            message_id=message.id,
            decided=decided,
            detail=detail,
        )

    def _blocked(
        self, session: Session, message: Message, token: str, decided: Decided, at: datetime
    ) -> None:
        rule = decided.decision.rule.value
        self._finish(
            session, message, token, status=Status.BLOCKED.value, last_error=f"blocked: {rule}"
        )
        self._log(session, message, Event.BLOCKED, at, decided)
        logger.info("outbox: message %s blocked at send time (%s)", message.id, rule)

    def _deferred(
        self, session: Session, message: Message, token: str, decided: Decided, at: datetime
    ) -> None:
        not_before = decided.decision.not_before or at
        self._finish(session, message, token, status=Status.DEFERRED.value, not_before=not_before)
        self._log(session, message, Event.DEFERRED, at, decided)

    # --- delivering ----------------------------------------------------------------------------

    def _deliver(
        self, session: Session, provider: Any, message: Message, vendor: Vendor | None
    ) -> Delivery:
        connector = self.connectors.get(message.channel)
        if connector is None:
            return Delivery(Outcome.TEMPORARY_FAILURE, f"no {message.channel} channel configured")
        try:
            # The customer's key and address, once per batch (a customer may have many).
            key = (message.user_id, message.channel)
            if key not in self._contacts:
                cipher = cipher_for(session, provider, message.user_id)
                field = session.get(
                    ProfileField, (message.user_id, ADDRESS_CLAIMS[message.channel])
                )
                address = (
                    json.loads(cipher.decrypt(field.name, field.ciphertext)) if field else None
                )
                self._contacts[key] = (cipher, address)
            cipher, address = self._contacts[key]
            if address is None:
                what = "e-mail address" if message.channel == "email" else "phone number"
                return Delivery(Outcome.PERMANENT_FAILURE, f"the customer has no {what}")
            text = cipher.decrypt(body_field(message.id), message.body_ciphertext).decode()
            subject = (
                cipher.decrypt(subject_field(message.id), message.subject_ciphertext).decode()
                if message.subject_ciphertext is not None
                else ""
            )
        except DataKeyShredded:
            return Delivery(Outcome.PERMANENT_FAILURE, "the customer's data was erased")
        except DecryptionError:
            return Delivery(Outcome.PERMANENT_FAILURE, "the message does not decrypt")
        outgoing = Outgoing(
            recipient=address,
            subject=subject,
            text=text if text.endswith("\n") else text + "\n",
            sender_name=vendor.name if vendor is not None else None,
            reference=message.id,
            unsubscribe_url=self.unsubscribe_url(message) if message.channel == "email" else None,
        )
        if message.channel == "sms":
            outgoing = replace(outgoing, text=text)
        return connector.deliver(outgoing)

    def unsubscribe_url(self, message: Message) -> str:
        """The message's one-click unsubscribe link (``vault.unsubscribe``)."""
        token = make_token(
            UnsubscribeTarget(
                message.id,
                message.user_id,  # type: ignore[arg-type]
                message.vendor_id,  # type: ignore[arg-type]
                message.channel,
                message.topic,
            )
        )
        try:
            path = self._urls.build("unsubscribe.confirm", {"token": token})
        except BuildError:  # the unsubscribe pages are not registered in this build
            path = f"/unsubscribe/{token}"
        return self.base_url + path

    def _record(
        self, session: Session, message: Message, token: str, decided: Decided, delivery: Delivery
    ) -> None:
        at = utcnow()
        attempts = message.attempts + 1
        detail = delivery.detail[:200] if delivery.detail else None
        if delivery.ok:
            self._finish(
                session,
                message,
                token,
                status=Status.SENT.value,
                attempts=attempts,
                sent_at=at,
                last_error=None,
                provider_id=(delivery.message_id or "")[:255] or None,
            )
            self._log(session, message, Event.SENT, at, decided, detail)
            self.delivered += 1
            logger.info("outbox: message %s sent", message.id)
            return
        if delivery.outcome is Outcome.TEMPORARY_FAILURE and attempts < self.max_attempts:
            delay = backoff(attempts, self.base_delay, self.max_delay)
            self._finish(
                session,
                message,
                token,
                status=Status.QUEUED.value,
                attempts=attempts,
                not_before=at + timedelta(seconds=delay),
                last_error=detail,
            )
            self._log(session, message, Event.RETRY, at, decided, detail)
            logger.info(
                "outbox: message %s attempt %d failed (%s); next in %.0f s",
                message.id,
                attempts,
                detail,
                delay,
            )
            return
        self._finish(
            session,
            message,
            token,
            status=Status.FAILED.value,
            attempts=attempts,
            last_error=detail,
        )
        self._log(session, message, Event.FAILED, at, decided, detail)
        logger.warning(
            "outbox: message %s failed after %d attempt(s): %s", message.id, attempts, detail
        )


def _no_topic_rule() -> Any:
    from consent.engine import Rule

    return Rule.NO_CONSENT
