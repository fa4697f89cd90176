"""The outbox worker delivering through real servers on loopback: aiosmtpd for e-mail, a
local HTTP server playing Twilio for SMS; faults (SMTP down, provider errors, time-outs,
consent withdrawn before sending, an abandoned claim) and frequency caps. On SQLite and on
PostgreSQL."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from connectors.email import SmtpConnector
from connectors.sms import TwilioConnector
from tests.connectors.httpserver import LocalHTTPServer, Reply, Request, json_reply
from tests.connectors.test_sms import ACCOUNT, BROKEN, INVALID, SLOW, form, sms_url, twilio
from tests.factories import confirm_phone
from tests.mailserver import MailServer, free_port
from tests.vault.consents.test_vendor_api import _save
from tests.vault.messages.helpers import (
    World,
    connect,
    email,
    grant,
    make_shop,
    send,
    token,
    withdraw,
)
from tests.vault.oauth.conftest import Vault
from vault.consents.operations import ConsentChanges, VendorSettings
from vault.extensions import db
from vault.messages.worker import Worker
from vault.unsubscribe.tokens import _serializer

SENDER = "CMR Vault <vault@vault.example>"


@pytest.fixture
def live_config_overrides() -> dict[str, Any]:
    # Retries come back within a second (the tests wait for them), three attempts at most;
    # a lease of two seconds stands for "the worker died".
    return {
        "VAULT_OUTBOX_BACKOFF": 1,
        "VAULT_OUTBOX_MAX_BACKOFF": 1,
        "VAULT_OUTBOX_MAX_ATTEMPTS": 3,
        "VAULT_OUTBOX_LEASE": 2,
    }


def smtp(server: MailServer) -> SmtpConnector:
    return SmtpConnector.from_url(server.url, SENDER)


def worker(vault: Vault, mail: MailServer | None = None, **connectors: Any) -> Worker:
    if mail is not None:
        connectors["email"] = smtp(mail)
    return Worker(vault.app, **connectors)


def status(vault: Vault, message_id: str) -> tuple:
    return tuple(
        vault.sql(
            "SELECT status, attempts, last_error, sent_at IS NOT NULL FROM messages WHERE id = :id",
            id=message_id,
        )[0]
    )


def events(vault: Vault, message_id: str) -> list[str]:
    return [
        row[0]
        for row in vault.sql(
            "SELECT event FROM contact_log WHERE message_id = :id ORDER BY id", id=message_id
        )
    ]


def queue(vault: Vault, world: World, count: int = 1, **body: Any) -> list[str]:
    session = token(vault, world.shop)
    ids = []
    for _ in range(count):
        payload = {k: v for k, v in {**email(world.sub), **body}.items() if v is not None}
        response = send(vault, session, payload)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def test_email_delivered_with_vendor_name_message_id_and_one_click_unsubscribe(
    vault: Vault, world: World, mailbox: MailServer
) -> None:
    [message_id] = queue(vault, world, subject="Our news", body="Hello from Acme")
    assert worker(vault, mailbox).run_once() == 1
    mail = mailbox.only_to(world.user.email)
    [sender] = mail.message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "Acme Shop via CMR Vault",
        "vault@vault.example",
    )
    assert mail.message["Message-ID"] == f"<{message_id}@vault.example>"
    assert mail.subject == "Our news" and mail.text.strip() == "Hello from Acme"
    unsubscribe = re.fullmatch(
        r"<(http://127\.0\.0\.1:5000/unsubscribe/(.+))>", mail.message["List-Unsubscribe"]
    )
    assert unsubscribe, mail.message["List-Unsubscribe"]
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with vault.app.app_context():
        named = _serializer().loads(unsubscribe.group(2))
    assert named == [message_id, world.user.id, world.shop.client.vendor_id, "email", "news"]
    assert status(vault, message_id) == ("sent", 1, None, True)
    assert events(vault, message_id) == ["accepted", "sent"]
    shown = token(vault, world.shop).get(vault.base + f"/api/v1/messages/{message_id}", timeout=10)
    assert shown.json()["status"] == "sent" and shown.json()["sent_at"]
    assert world.user.email not in shown.text
    # Nothing more to do: a second pass delivers nothing again.
    assert worker(vault, mailbox).run_once() == 0
    assert len(mailbox.to(world.user.email)) == 1


def test_one_smtp_connection_carries_every_message(
    vault: Vault, world: World, mailbox: MailServer
) -> None:
    queue(vault, world, count=5)
    assert worker(vault, mailbox).run_once() == 5
    mails = mailbox.to(world.user.email)
    assert len(mails) == 5
    assert len({mail.peer for mail in mails}) == 1


def test_sms_through_a_provider_speaking_twilio(vault: Vault, world: World) -> None:
    [message_id] = queue(vault, world, channel="sms", subject=None, body="Your code news")
    with LocalHTTPServer(twilio()) as provider:
        sms = TwilioConnector.from_url(sms_url(provider))
        assert worker(vault, sms=sms).run_once() == 1
    [request] = provider.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert form(request) == {"To": "+15005550006", "From": "+15005550006", "Body": "Your code news"}
    assert status(vault, message_id) == ("sent", 1, None, True)
    assert vault.sql("SELECT provider_id FROM messages")[0][0].startswith("SM")


def test_smtp_down_while_messages_queue_then_back_each_delivered_once(
    vault: Vault, world: World
) -> None:
    port = free_port()
    server = MailServer(port=port)
    ids = queue(vault, world, count=5)
    down = worker(vault, server)
    assert down.run_once() == 5
    for message_id in ids:
        state, attempts, error, sent = status(vault, message_id)
        assert (state, attempts, sent) == ("queued", 1, False)
        assert error == "connection failed: ConnectionRefusedError"
    # Backed off: nothing is due right away.
    assert worker(vault, server).run_once() == 0
    with server:
        time.sleep(1.1)  # the back-off (at most VAULT_OUTBOX_MAX_BACKOFF)
        assert worker(vault, server).run_once() == 5
        mails = server.to(world.user.email)
    assert sorted(str(mail.message["Message-ID"]) for mail in mails) == sorted(
        f"<{message_id}@vault.example>" for message_id in ids
    )
    for message_id in ids:
        assert status(vault, message_id) == ("sent", 2, None, True)
        assert events(vault, message_id) == ["accepted", "retry", "sent"]


def test_consent_withdrawn_between_queueing_and_sending_is_never_sent(
    vault: Vault, world: World, mailbox: MailServer
) -> None:
    [message_id] = queue(vault, world)
    withdraw(vault, world.user.id, world.shop, "news", "email")
    worker(vault, mailbox).run_once()
    assert mailbox.to(world.user.email) == []
    assert status(vault, message_id) == ("blocked", 0, "blocked: withdrawn", False)
    assert events(vault, message_id) == ["accepted", "blocked"]
    rule = vault.sql("SELECT rule FROM contact_log WHERE event = 'blocked'")[0][0]
    assert rule == "withdrawn"


class _WithdrawsAfterFirst:
    """An e-mail connector that, once the first message is handed over, lets the customer
    withdraw (committed from another session, as their own request would be)."""

    channel = "email"

    def __init__(self, inner: SmtpConnector, on_first: Any) -> None:
        self.inner, self.on_first, self.delivered = inner, on_first, 0

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def deliver(self, message: Any) -> Any:
        delivery = self.inner.deliver(message)
        self.delivered += 1
        if self.delivered == 1:
            customer = threading.Thread(target=self.on_first)  # a request of its own
            customer.start()
            customer.join(timeout=30)  # committed before the next message is decided
        return delivery


def test_consent_withdrawn_while_a_batch_is_delivered_stops_the_rest_of_it(
    vault: Vault, world: World, mailbox: MailServer
) -> None:
    ids = queue(vault, world, count=3)
    connector = _WithdrawsAfterFirst(
        smtp(mailbox), lambda: withdraw(vault, world.user.id, world.shop, "news", "email")
    )
    running = worker(vault, email=connector)
    assert running.batch >= 3  # one claim holds all three
    running.run_once()
    assert [status(vault, i)[0] for i in ids] == ["sent", "blocked", "blocked"]
    assert len(mailbox.to(world.user.email)) == 1


def test_smtp_refusals_fail_or_retry(vault: Vault, mailbox: MailServer) -> None:
    shop = make_shop(vault, "Acme Shop", {"news": "marketing"})
    gone, busy = vault.customer(), vault.customer()
    subs = {}
    for user in (gone, busy):
        subs[user.id] = connect(vault, user.id, shop)
        grant(vault, user.id, shop, "news", "email")
    mailbox.refuse(gone.email, "550 5.1.1 No such user")
    mailbox.refuse(busy.email, "451 4.3.0 Try again later")
    session = token(vault, shop)
    failed = send(vault, session, email(subs[gone.id])).json()["id"]
    retried = send(vault, session, email(subs[busy.id])).json()["id"]
    worker(vault, mailbox).run_once()
    assert status(vault, failed) == ("failed", 1, "SMTP 550 at RCPT", False)
    assert status(vault, retried) == ("queued", 1, "SMTP 451 at RCPT", False)
    # Still refused at every attempt: failed after VAULT_OUTBOX_MAX_ATTEMPTS (3).
    for _ in range(2):
        time.sleep(1.1)
        worker(vault, mailbox).run_once()
    assert status(vault, retried) == ("failed", 3, "SMTP 451 at RCPT", False)
    assert events(vault, retried) == ["accepted", "retry", "retry", "failed"]
    assert mailbox.received == []


def test_sms_provider_4xx_5xx_and_timeouts(vault: Vault) -> None:
    shop = make_shop(vault, "Acme Shop", {"news": "marketing"})
    session = token(vault, shop)
    ids = {}
    for number in (INVALID, BROKEN, SLOW):
        user = vault.customer(phone_number=number)
        confirm_phone(vault.app, user.id)  # texts go only to a confirmed number
        sub = connect(vault, user.id, shop)
        grant(vault, user.id, shop, "news", "sms")
        body = {"sub": sub, "channel": "sms", "topic": "news", "body": "Hi"}
        ids[number] = send(vault, session, body).json()["id"]
    troubled = {"now": True}

    def respond(request: Request) -> Reply:
        to = form(request)["To"]
        if to == INVALID:
            return json_reply(400, '{"code": 21211, "message": "invalid", "status": 400}')
        if troubled["now"] and to == BROKEN:
            return 500, {"Content-Type": "text/html"}, b"<h1>Internal Server Error</h1>"
        if troubled["now"] and to == SLOW:
            time.sleep(1.0)
        return json_reply(201, '{"sid": "SM' + "f" * 32 + '", "status": "queued"}')

    with LocalHTTPServer(respond) as provider:
        sms = TwilioConnector.from_url(sms_url(provider, query="from=%2B15005550006&timeout=0.5"))
        worker(vault, sms=sms).run_once()
        assert status(vault, ids[INVALID]) == (
            "failed",
            1,
            "HTTP 400, provider error 21211",
            False,
        )
        assert status(vault, ids[BROKEN]) == ("queued", 1, "HTTP 500", False)
        assert status(vault, ids[SLOW]) == ("queued", 1, "connection failed: TimeoutError", False)
        troubled["now"] = False  # the provider recovers
        time.sleep(1.1)
        worker(vault, sms=sms).run_once()
    assert status(vault, ids[BROKEN]) == ("sent", 2, None, True)
    assert status(vault, ids[SLOW]) == ("sent", 2, None, True)
    assert status(vault, ids[INVALID])[0] == "failed"


def test_caps_fire_after_n_delivered_messages(
    vault: Vault, world: World, mailbox: MailServer
) -> None:
    _save(
        vault,
        world.user.id,
        ConsentChanges(vendors={world.shop.client.vendor_id: VendorSettings(cap_per_day=2)}),
    )
    # Four queued at once: the cap counts delivered messages, so all are accepted...
    ids = queue(vault, world, count=4)
    worker(vault, mailbox).run_once()
    # ... and the worker delivers two, then blocks the rest (one batch, counted as it goes).
    assert [status(vault, i)[0] for i in ids] == ["sent", "sent", "blocked", "blocked"]
    assert status(vault, ids[2])[2] == "blocked: cap_reached_day"
    assert len(mailbox.to(world.user.email)) == 2
    # Now that two were delivered, the API refuses a new one at once.
    refused = send(vault, token(vault, world.shop), email(world.sub))
    assert refused.status_code == 403 and refused.json()["rule"] == "cap_reached_day"


def test_deferred_message_waits_for_the_end_of_quiet_hours(
    vault: Vault, world: World, mailbox: MailServer
) -> None:
    from datetime import time as clock

    _save(vault, world.user.id, ConsentChanges(quiet_hours=(clock(0, 0), clock(23, 59), "UTC")))
    [message_id] = queue(vault, world)
    assert worker(vault, mailbox).run_once() == 0
    assert status(vault, message_id)[0] == "deferred"
    # Quiet hours end (the customer clears them), and the due time comes.
    _save(vault, world.user.id, ConsentChanges(clear_quiet_hours=True))
    vault.sql("UPDATE messages SET not_before = :t", t=_now() - timedelta(seconds=1))
    assert worker(vault, mailbox).run_once() == 1
    assert status(vault, message_id)[0] == "sent"


def test_a_worker_that_died_holding_a_claim_leaves_it_to_another_after_the_lease(
    vault: Vault, world: World, mailbox: MailServer
) -> None:
    ids = queue(vault, world, count=3)
    dead = worker(vault, mailbox)
    with vault.app.app_context():
        from sqlalchemy.orm import Session

        with Session(db.engine) as session:
            _token, claimed = dead.claim(session)
    assert len(claimed) == 3  # ... and then the process was killed: nothing recorded
    assert worker(vault, mailbox).run_once() == 0  # the lease is live
    time.sleep(2.1)  # VAULT_OUTBOX_LEASE
    assert worker(vault, mailbox).run_once() == 3
    assert len(mailbox.to(world.user.email)) == 3
    assert all(status(vault, i)[0] == "sent" for i in ids)


def test_stop_finishes_the_message_in_hand_and_releases_the_rest(
    vault: Vault, world: World, mailbox: MailServer
) -> None:
    ids = queue(vault, world, count=4)
    stopping = worker(vault, mailbox)
    original = stopping.connectors["email"].deliver

    def deliver_then_stop(message: Any) -> Any:
        stopping.stop()  # SIGTERM arrives while the first message is being delivered
        return original(message)

    stopping.connectors["email"].deliver = deliver_then_stop  # type: ignore[method-assign]
    assert stopping.run_once() == 1
    leases = vault.sql("SELECT count(*) FROM messages WHERE lease_until IS NOT NULL")[0][0]
    assert leases == 0  # released at once, not after the lease
    assert worker(vault, mailbox).run_once() == 3
    assert len(mailbox.to(world.user.email)) == 4
    assert all(status(vault, i)[0] == "sent" for i in ids)


def test_two_workers_in_threads_share_the_outbox(
    vault: Vault, world: World, mailbox: MailServer
) -> None:
    ids = queue(vault, world, count=60)
    workers = [worker(vault, mailbox) for _ in range(2)]
    for each in workers:
        each.batch = 5
    threads = [threading.Thread(target=each.run_once) for each in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    mails = mailbox.to(world.user.email)
    assert sorted(str(m.message["Message-ID"]) for m in mails) == sorted(
        f"<{i}@vault.example>" for i in ids
    )
    assert sum(each.delivered for each in workers) == 60


def _now() -> Any:
    from vault.models import utcnow

    return utcnow()
