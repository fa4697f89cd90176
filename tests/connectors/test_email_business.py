"""Businesses' messages over SMTP (aiosmtpd on loopback): the headers a receiver sees, and
one connection kept across many messages, replaced when the server drops it.
"""

from __future__ import annotations

import threading
import time

import pytest

from connectors.base import Message, Outcome
from connectors.email import FileConnector, SmtpConnector
from connectors.mime import Sender, build_message, clean_display_name, sender_display_name
from tests.mailserver import MailServer, free_port

SENDER = "CMR Vault <vault@vault.example>"
UNSUBSCRIBE = "https://vault.example/unsubscribe/tok.en-1"


def business_message(recipient: str = "ada@example.com", **fields: object) -> Message:
    values: dict[str, object] = {
        "recipient": recipient,
        "subject": "Spring sale",
        "text": "Everything half price.\n",
        "sender_name": "Acme Shop",
        "reference": "0190f3c2-7b1e-7c4a-9d2e-5f1a2b3c4d5e",
        "unsubscribe_url": UNSUBSCRIBE,
    }
    values.update(fields)
    return Message(**values)  # type: ignore[arg-type]


def peers(server: MailServer) -> set[object]:
    return {mail.peer for mail in server.received}


def test_a_business_message_carries_its_name_id_and_one_click_unsubscribe():
    with MailServer() as server:
        delivery = SmtpConnector.from_url(server.url, SENDER).deliver(business_message())
        assert delivery.ok, delivery
        [mail] = server.received
    sender = mail.message["From"].addresses[0]
    assert sender.display_name == "Acme Shop via CMR Vault"
    assert sender.addr_spec == "vault@vault.example"
    assert mail.envelope_from == "vault@vault.example"
    assert mail.message["Message-ID"] == "<0190f3c2-7b1e-7c4a-9d2e-5f1a2b3c4d5e@vault.example>"
    assert delivery.message_id == mail.message["Message-ID"]
    assert mail.message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.text == "Everything half price.\n"


def test_the_same_reference_gives_the_same_message_id_on_every_attempt():
    sender = Sender.parse(SENDER)
    first = build_message(business_message(), sender)
    second = build_message(business_message(), sender)
    assert first["Message-ID"] == second["Message-ID"]
    other = build_message(business_message(reference="42"), sender)
    assert other["Message-ID"] == "<42@vault.example>"


def test_without_a_business_name_the_sender_is_the_vault_alone():
    mime = build_message(business_message(sender_name=None), Sender.parse(SENDER))
    assert mime["From"].addresses[0].display_name == "CMR Vault"
    bare = Sender.parse("vault@vault.example")
    assert sender_display_name("Acme", bare) == "Acme via vault.example"
    assert sender_display_name(" \r\n ", Sender.parse(SENDER)) == "CMR Vault"


def test_a_business_name_cannot_add_headers_or_recipients():
    with MailServer() as server:
        name = "Acme\r\nBcc: victim@example.com\r\nX-Evil: 1"
        delivery = SmtpConnector.from_url(server.url, SENDER).deliver(
            business_message(sender_name=name)
        )
        assert delivery.ok, delivery
        [mail] = server.received
    assert mail.recipients == ["ada@example.com"]
    assert mail.message["Bcc"] is None and mail.message["X-Evil"] is None
    [sender] = mail.message["From"].addresses
    assert sender.display_name == "Acme Bcc: victim@example.com X-Evil: 1 via CMR Vault"
    assert sender.addr_spec == "vault@vault.example"


@pytest.mark.parametrize(
    ("name", "cleaned"),
    [
        ("Acme Shop", "Acme Shop"),
        ("  Acme\t\tShop\u2028Ltd  ", "Acme Shop Ltd"),
        ('Bank "Security" <security@bank.example>', "Bank Security security@bank.example"),
        ("\u202egnp.exe", "gnp.exe"),  # a right-to-left override would show "exe.png"
        ("Zoë's Café", "Zoë's Café"),
        ("x" * 100, "x" * 64),
        ("\x00\x1b", ""),
    ],
)
def test_clean_display_name(name, cleaned):
    assert clean_display_name(name) == cleaned


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"reference": "two words"}, "reference"),
        ({"reference": "a@b"}, "reference"),
        ({"reference": ".leading-dot"}, "reference"),
        ({"reference": "x" * 129}, "reference"),
        ({"unsubscribe_url": "http://vault.example/u/1"}, "https"),
        ({"unsubscribe_url": "javascript:alert(1)"}, "https"),
        ({"unsubscribe_url": "https://vault.example/u/1>, <https://evil.example"}, "printable"),
        ({"unsubscribe_url": "https://vault.example/u/1\r\nBcc: x@example.com"}, "printable"),
        ({"headers": {"List-Unsubscribe": "<https://evil.example>"}}, "List-Unsubscribe"),
        ({"headers": {"From": "someone@example.com"}}, "From"),
        ({"headers": {"message-id": "<x@example.com>"}}, "message-id"),
    ],
)
def test_a_message_that_cannot_be_built_is_permanent_and_not_sent(fields, reason):
    with MailServer() as server:
        delivery = SmtpConnector.from_url(server.url, SENDER).deliver(business_message(**fields))
        assert server.received == []
    assert delivery.outcome is Outcome.PERMANENT_FAILURE
    assert delivery.detail.startswith("the message could not be built: ")
    assert reason in delivery.detail and "@" not in delivery.detail


def test_loopback_http_unsubscribe_links_work_in_development(tmp_path):
    link = "http://127.0.0.1:5000/unsubscribe/tok"
    delivery = FileConnector(tmp_path, Sender.parse(SENDER)).deliver(
        business_message(unsubscribe_url=link)
    )
    assert delivery.ok
    assert f"List-Unsubscribe: <{link}>" in (tmp_path / delivery.location).read_text()


def test_extra_headers_still_pass_when_no_unsubscribe_url_is_given():
    mime = build_message(
        business_message(unsubscribe_url=None, headers={"Reply-To": "help@acme.example"}),
        Sender.parse(SENDER),
    )
    assert mime["Reply-To"] == "help@acme.example"
    assert mime["List-Unsubscribe"] is None and mime["List-Unsubscribe-Post"] is None


# --- one connection for many messages ------------------------------------------------------


def test_an_open_connector_sends_many_messages_over_one_connection():
    with MailServer() as server:
        with SmtpConnector.from_url(server.url, SENDER) as connector:
            deliveries = [connector.deliver(business_message(reference=str(n))) for n in range(5)]
        assert all(delivery.ok for delivery in deliveries), deliveries
        assert len(server.received) == 5
        assert len(peers(server)) == 1
        # After close(), and without open(), each message has a connection of its own.
        connector.deliver(business_message())
        connector.deliver(business_message())
        assert len(peers(server)) == 3


def test_threads_share_one_open_connection():
    with MailServer() as server:
        connector = SmtpConnector.from_url(server.url, SENDER).open()
        results: list[Outcome] = []

        def send(worker: int) -> None:
            for n in range(5):
                reference = f"{worker}.{n}"
                results.append(connector.deliver(business_message(reference=reference)).outcome)

        threads = [threading.Thread(target=send, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        connector.close()
        assert results == [Outcome.SENT] * 20
        assert len({mail.message["Message-ID"] for mail in server.received}) == 20
        assert len(peers(server)) == 1


def test_a_connection_the_server_closed_is_replaced_before_the_next_message():
    with MailServer(idle_timeout=0.3) as server:
        with SmtpConnector.from_url(server.url, SENDER) as connector:
            assert connector.deliver(business_message(reference="1")).ok
            time.sleep(0.8)  # the server hangs up on the idle connection
            second = connector.deliver(business_message(reference="2"))
        assert second.ok, second
        assert len(server.received) == 2
        assert len(peers(server)) == 2


def test_a_connection_idle_too_long_is_replaced():
    with MailServer() as server:
        connector = SmtpConnector(
            SmtpConnector.from_url(server.url, SENDER).settings,
            Sender.parse(SENDER),
            max_idle=0.2,
        )
        with connector:
            assert connector.deliver(business_message()).ok
            assert connector.deliver(business_message()).ok
            time.sleep(0.4)
            assert connector.deliver(business_message()).ok
        assert len(peers(server)) == 2


def test_a_refused_recipient_keeps_the_connection_a_closing_server_does_not():
    with MailServer() as server:
        server.refuse("gone@example.com", "550 5.1.1 no such user")
        server.refuse("busy@example.com", "421 4.3.2 closing")
        with SmtpConnector.from_url(server.url, SENDER) as connector:
            assert connector.deliver(business_message()).ok
            gone = connector.deliver(business_message("gone@example.com"))
            assert connector.deliver(business_message()).ok
            busy = connector.deliver(business_message("busy@example.com"))
            assert connector.deliver(business_message()).ok
        first, second, third = (mail.peer for mail in server.received)
    assert gone.outcome is Outcome.PERMANENT_FAILURE and gone.detail == "SMTP 550 at RCPT"
    assert busy.outcome is Outcome.TEMPORARY_FAILURE and busy.detail == "SMTP 421 at RCPT"
    assert first == second != third


def test_a_server_gone_mid_session_is_temporary_and_its_return_is_used():
    port = free_port()
    url = f"smtp://127.0.0.1:{port}?timeout=2"
    with SmtpConnector.from_url(url, SENDER) as connector:
        with MailServer(port=port) as first:
            assert connector.deliver(business_message(reference="1")).ok
        down = connector.deliver(business_message(reference="2"))
        assert down.outcome is Outcome.TEMPORARY_FAILURE, down
        with MailServer(port=port) as second:
            again = connector.deliver(business_message(reference="2"))
            assert again.ok, again
            assert [m.message["Message-ID"] for m in second.received] == [again.message_id]
    assert len(first.received) == 1


def test_an_open_connector_reports_a_server_that_is_not_there():
    url = f"smtp://127.0.0.1:{free_port()}?timeout=2"
    with SmtpConnector.from_url(url, SENDER) as connector:
        delivery = connector.deliver(business_message())
    assert delivery.outcome is Outcome.TEMPORARY_FAILURE
    assert delivery.detail == "connection failed: ConnectionRefusedError"


@pytest.mark.parametrize(
    ("stage", "reply", "outcome"),
    [
        ("MAIL", "553 5.7.1 sender not allowed to relay", Outcome.TEMPORARY_FAILURE),
        ("MAIL", "530 5.7.0 Authentication required", Outcome.TEMPORARY_FAILURE),
        ("MAIL", "552 5.3.4 message size exceeds fixed limit", Outcome.PERMANENT_FAILURE),
        ("MAIL", "452 4.3.1 insufficient system storage", Outcome.TEMPORARY_FAILURE),
        ("RCPT", "530 5.7.0 Authentication required", Outcome.TEMPORARY_FAILURE),
        ("RCPT", "554 5.7.1 relay access denied", Outcome.PERMANENT_FAILURE),
    ],
)
def test_refusals_of_the_vault_s_own_sender_or_of_its_set_up_wait_for_the_operator(
    stage, reply, outcome
):
    """The sender is the same for every message: refusing it is the set-up's problem, and
    failing every queued message for good while an operator fixes it would lose them."""
    with MailServer() as server:
        if stage == "MAIL":
            server.refuse_sender("vault@vault.example", reply)
        else:
            server.refuse("ada@example.com", reply)
        delivery = SmtpConnector.from_url(server.url, SENDER).deliver(business_message())
        assert server.received == []
    code = reply.split()[0]
    assert delivery.outcome is outcome
    assert delivery.detail == f"SMTP {code} at {'MAIL FROM' if stage == 'MAIL' else 'RCPT'}"
