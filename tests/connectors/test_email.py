"""The e-mail connectors against a real SMTP server on loopback (aiosmtpd).

Plain SMTP, STARTTLS with AUTH, implicit TLS, a refused recipient (permanent), a busy
recipient and a server that is not there (temporary), a certificate that does not verify,
and the development connector that writes files.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest

from connectors.base import Connector, Message, Outcome
from connectors.email import (
    EmailConfigError,
    FileConnector,
    Sender,
    SmtpConnector,
    SmtpSettings,
)
from tests.mailserver import MailServer, free_port, self_signed_certificate, server_tls_context

SENDER = "CMR Vault <vault@vault.example>"
MESSAGE = Message(
    recipient="ada@example.com",
    subject="Confirm your address: ünïcode too",
    text="Follow this link: https://vault.example/x\nThanks, Zoë\n",
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_plain_smtp_delivers_a_proper_mime_message():
    with MailServer() as server:
        connector = SmtpConnector.from_url(server.url, SENDER)
        assert isinstance(connector, Connector)
        delivery = connector.deliver(MESSAGE)
        assert delivery.outcome is Outcome.SENT and delivery.ok
        [mail] = server.received
    assert mail.envelope_from == "vault@vault.example"
    assert mail.recipients == ["ada@example.com"]
    message = mail.message
    assert message["From"].addresses[0].display_name == "CMR Vault"
    assert message["From"].addresses[0].addr_spec == "vault@vault.example"
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == MESSAGE.subject
    assert message["Message-ID"] == delivery.message_id
    assert message["Message-ID"].endswith("@vault.example>")
    assert message["Date"] is not None
    assert message["Auto-Submitted"] == "auto-generated"
    assert mail.text == MESSAGE.text


def test_html_alternative_and_extra_headers():
    with MailServer() as server:
        message = Message(
            recipient="ada@example.com",
            subject="Hello",
            text="plain words",
            html="<p>rich words</p>",
            headers={"List-Unsubscribe": "<https://vault.example/u/1>"},
        )
        assert SmtpConnector.from_url(server.url, SENDER).deliver(message).ok
        [mail] = server.received
    assert mail.message.get_content_type() == "multipart/alternative"
    assert mail.text.strip() == "plain words"
    assert mail.message.get_body(("html",)).get_content().strip() == "<p>rich words</p>"
    assert mail.message["List-Unsubscribe"] == "<https://vault.example/u/1>"


def test_starttls_with_authentication(certificate):
    cert, key = certificate
    with MailServer(
        tls=server_tls_context(cert, key), credentials=("mailer", "p@ss:w/rd")
    ) as server:
        url = f"smtp://mailer:p%40ss%3Aw%2Frd@127.0.0.1:{server.port}?starttls=true&cafile={cert}"
        delivery = SmtpConnector.from_url(url, SENDER).deliver(MESSAGE)
        assert delivery.ok, delivery
        assert len(server.received) == 1

        wrong = f"smtp://mailer:nope@127.0.0.1:{server.port}?starttls=true&cafile={cert}"
        refused = SmtpConnector.from_url(wrong, SENDER).deliver(MESSAGE)
        # The operator's credentials are wrong, not the message: it may go later.
        assert refused.outcome is Outcome.TEMPORARY_FAILURE
        assert "AUTH" in refused.detail
        assert len(server.received) == 1


def test_implicit_tls(certificate):
    cert, key = certificate
    with MailServer(tls=server_tls_context(cert, key), implicit_tls=True) as server:
        assert server.url.startswith("smtps://")
        delivery = SmtpConnector.from_url(f"{server.url}?cafile={cert}", SENDER).deliver(MESSAGE)
        assert delivery.ok, delivery
        assert len(server.received) == 1


def test_a_certificate_that_does_not_verify_is_not_trusted(certificate):
    cert, key = certificate
    with MailServer(tls=server_tls_context(cert, key), implicit_tls=True) as server:
        delivery = SmtpConnector.from_url(server.url, SENDER).deliver(MESSAGE)  # system CAs
        assert delivery.outcome is Outcome.TEMPORARY_FAILURE
        assert "TLS" in delivery.detail
        assert server.received == []


def test_refused_recipient_is_permanent_busy_one_temporary():
    with MailServer() as server:
        server.refuse("gone@example.com", "550 5.1.1 <gone@example.com>: no such user")
        server.refuse("busy@example.com", "451 4.3.0 <busy@example.com>: try later")
        connector = SmtpConnector.from_url(server.url, SENDER)
        gone = connector.deliver(Message("gone@example.com", "s", "t"))
        busy = connector.deliver(Message("busy@example.com", "s", "t"))
        assert server.received == []
    assert gone.outcome is Outcome.PERMANENT_FAILURE and gone.detail == "SMTP 550 at RCPT"
    assert busy.outcome is Outcome.TEMPORARY_FAILURE and busy.detail == "SMTP 451 at RCPT"
    # The details are safe to log: no address from the server's reply.
    assert "@" not in gone.detail + busy.detail


def test_no_server_is_a_temporary_failure():
    connector = SmtpConnector.from_url(f"smtp://127.0.0.1:{free_port()}?timeout=2", SENDER)
    delivery = connector.deliver(MESSAGE)
    assert delivery.outcome is Outcome.TEMPORARY_FAILURE
    assert "connection failed" in delivery.detail


def test_header_injection_is_refused_not_sent():
    with MailServer() as server:
        connector = SmtpConnector.from_url(server.url, SENDER)
        delivery = connector.deliver(
            Message("ada@example.com", "Hi\r\nBcc: victim@example.com", "t")
        )
        assert delivery.outcome is Outcome.PERMANENT_FAILURE
        assert server.received == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example", SmtpSettings("mail.example", 25, "none")),
        (
            "smtp://u:p@mail.example:587?starttls=true",
            SmtpSettings("mail.example", 587, "starttls", "u", "p"),
        ),
        ("smtps://u:p%40x@mail.example", SmtpSettings("mail.example", 465, "tls", "u", "p@x")),
        ("smtp://mail.example?timeout=2.5", SmtpSettings("mail.example", 25, "none", timeout=2.5)),
    ],
)
def test_smtp_urls(url, expected):
    assert SmtpSettings.from_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://mail.example", "smtp:// or smtps://"),
        ("smtp://", "names a host"),
        ("smtp://mail.example?starttls=maybe", "true or false"),
        ("smtps://mail.example?starttls=true", "drop ?starttls"),
        ("smtp://mail.example?tls=1", "unknown SMTP URL parameters: tls"),
        ("smtp://mail.example:port", "bad port"),
        ("smtp://u:p@mail.example", "without TLS"),
        ("smtp://mail.example?timeout=0", "positive"),
    ],
)
def test_bad_smtp_urls_say_what_is_wrong(url, message):
    with pytest.raises(EmailConfigError, match=re.escape(message)):
        SmtpSettings.from_url(url)


@pytest.mark.parametrize("text", ["", "vault", "CMR Vault <>", "@example.com"])
def test_bad_sender_is_refused(text):
    with pytest.raises(EmailConfigError):
        Sender.parse(text)


def test_file_connector_writes_one_private_eml_per_message(tmp_path):
    folder = tmp_path / "mail"
    connector = FileConnector(folder, Sender.parse(SENDER))
    assert isinstance(connector, Connector)
    first = connector.deliver(MESSAGE)
    second = connector.deliver(MESSAGE)
    assert first.ok and second.ok and first.location != second.location
    path = Path(first.location)
    assert path.parent == folder and path.suffix == ".eml"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    message = message_from_bytes(path.read_bytes(), policy=default_policy)
    assert message["Subject"] == MESSAGE.subject
    assert message["Message-ID"] == first.message_id
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == MESSAGE.text
    # Readable as text: the link is on one line, as written.
    assert "https://vault.example/x" in path.read_text(encoding="utf-8")


def test_connectors_import_nothing_of_the_vault_or_flask():
    # A fresh interpreter: deleting modules from this one would leave two copies of
    # connectors.base (and of Outcome) in the tests that run after.
    modules = ["email", "mime", "sms", "segments", "webhook", "ssrf", "httpclient"]
    code = (
        "import sys\n"
        + "".join(f"import connectors.{name}\n" for name in modules)
        + "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "connectors" in loaded
    assert not {"vault", "flask", "werkzeug"} & set(loaded)
