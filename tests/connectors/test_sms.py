"""The SMS adapter against a real local HTTP server playing Twilio's Messages resource:
the request it makes, and what each answer (201, 400, 401, 429, 500, too slow, none) means.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from connectors.base import Connector, Message, Outcome
from connectors.sms import SmsConfigError, SmsFileConnector, SmsSettings, TwilioConnector
from tests.connectors.httpserver import LocalHTTPServer, Reply, Request, json_reply
from tests.mailserver import free_port, self_signed_certificate, server_tls_context

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "auth/token:with@odd+chars"
SENDER = "+15005550006"
SID = "SM" + "f" * 32

INVALID, BUSY, BROKEN, SLOW = "+15005550001", "+15005550429", "+15005550500", "+15005550777"


def twilio(credentials: tuple[str, str] = (ACCOUNT, TOKEN)):
    """A responder answering like Twilio's Messages.json for the given credentials."""

    def respond(request: Request) -> Reply:
        expected = base64.b64encode(":".join(credentials).encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return json_reply(401, '{"code": 20003, "message": "Authenticate", "status": 401}')
        to = parse_qs(request.body.decode())["To"][0]
        if to == INVALID:
            message = f"The 'To' number {to} is not a valid phone number."
            return json_reply(400, json.dumps({"code": 21211, "message": message, "status": 400}))
        if to == BUSY:
            return json_reply(429, '{"code": 20429, "message": "Too Many Requests"}')
        if to == BROKEN:
            return 500, {"Content-Type": "text/html"}, b"<h1>Internal Server Error</h1>"
        if to == SLOW:
            time.sleep(1.5)
        return json_reply(201, json.dumps({"sid": SID, "status": "queued", "to": to}))

    return respond


def sms_url(server: LocalHTTPServer, *, user: str = ACCOUNT, query: str = "") -> str:
    token = TOKEN.replace("/", "%2F").replace(":", "%3A").replace("@", "%40").replace("+", "%2B")
    rest = server.url.partition("://")[2]
    return f"{server.scheme}://{user}:{token}@{rest}?{query or 'from=%2B15005550006'}"


def form(request: Request) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(request.body.decode()).items()}


def test_a_message_is_posted_in_twilio_s_shape():
    with LocalHTTPServer(twilio()) as server:
        connector = TwilioConnector.from_url(sms_url(server))
        assert isinstance(connector, Connector) and connector.channel == "sms"
        text = "Your code is 123456 — Zoë 😀"
        delivery = connector.deliver(Message("+447700900123", "ignored", text))
        [request] = server.requests
    assert delivery.outcome is Outcome.SENT
    assert delivery.message_id == SID and delivery.detail == "queued"
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    user, _, password = (
        base64.b64decode(request.headers["authorization"][6:]).decode().partition(":")
    )
    assert (user, password) == (ACCOUNT, TOKEN)
    assert form(request) == {"To": "+447700900123", "From": SENDER, "Body": text}


def test_an_api_key_and_a_messaging_service():
    key = "SK" + "1" * 32
    with LocalHTTPServer(twilio((key, TOKEN))) as server:
        url = sms_url(server, user=key, query=f"account={ACCOUNT}&messaging_service=MG{'2' * 32}")
        delivery = TwilioConnector.from_url(url).deliver(Message("+15551234567", "", "Hi"))
        [request] = server.requests
    assert delivery.ok, delivery
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert form(request) == {
        "To": "+15551234567",
        "MessagingServiceSid": "MG" + "2" * 32,
        "Body": "Hi",
    }


@pytest.mark.parametrize(
    ("recipient", "outcome", "detail"),
    [
        (INVALID, Outcome.PERMANENT_FAILURE, "HTTP 400, provider error 21211"),
        (BUSY, Outcome.TEMPORARY_FAILURE, "HTTP 429, provider error 20429"),
        (BROKEN, Outcome.TEMPORARY_FAILURE, "HTTP 500"),
    ],
)
def test_provider_answers_map_to_outcomes(recipient, outcome, detail):
    with LocalHTTPServer(twilio()) as server:
        delivery = TwilioConnector.from_url(sms_url(server)).deliver(Message(recipient, "", "Hi"))
        assert len(server.requests) == 1
    assert delivery.outcome is outcome
    assert delivery.detail == detail
    assert delivery.message_id is None
    assert recipient not in delivery.detail


def test_wrong_credentials_are_the_operator_s_and_temporary():
    with LocalHTTPServer(twilio((ACCOUNT, "the-right-token"))) as server:
        delivery = TwilioConnector.from_url(sms_url(server)).deliver(
            Message("+15551234567", "", "Hi")
        )
    assert delivery.outcome is Outcome.TEMPORARY_FAILURE
    assert delivery.detail == "HTTP 401, provider error 20003"


def test_a_slow_provider_times_out_as_a_temporary_failure():
    with LocalHTTPServer(twilio()) as server:
        connector = TwilioConnector.from_url(
            sms_url(server, query="from=%2B15005550006&timeout=0.4")
        )
        started = time.monotonic()
        delivery = connector.deliver(Message(SLOW, "", "Hi"))
        elapsed = time.monotonic() - started
    assert delivery.outcome is Outcome.TEMPORARY_FAILURE
    assert delivery.detail == "connection failed: TimeoutError"
    assert elapsed < 1.4


def test_no_provider_is_a_temporary_failure():
    url = f"http://{ACCOUNT}:token@127.0.0.1:{free_port()}?from=%2B15005550006"
    delivery = TwilioConnector.from_url(url).deliver(Message("+15551234567", "", "Hi"))
    assert delivery.outcome is Outcome.TEMPORARY_FAILURE
    assert delivery.detail == "connection failed: ConnectionRefusedError"


def test_a_2xx_without_a_sid_is_still_sent_never_twice():
    with LocalHTTPServer(lambda request: json_reply(202, "not json")) as server:
        delivery = TwilioConnector.from_url(sms_url(server)).deliver(
            Message("+15551234567", "", "Hi")
        )
    assert delivery.outcome is Outcome.SENT
    assert delivery.message_id is None and delivery.detail == "accepted"


@pytest.mark.parametrize(
    ("recipient", "text", "detail"),
    [
        ("0044 7700 900123", "Hi", "the recipient is not an E.164 number"),
        ("ada@example.com", "Hi", "the recipient is not an E.164 number"),
        ("+15551234567\r\nX: y", "Hi", "the recipient is not an E.164 number"),
        ("+15551234567", " \n", "the text is empty"),
    ],
)
def test_what_no_provider_takes_is_refused_before_any_request(recipient, text, detail):
    with LocalHTTPServer(twilio()) as server:
        delivery = TwilioConnector.from_url(sms_url(server)).deliver(Message(recipient, "", text))
        assert server.requests == []
    assert delivery.outcome is Outcome.PERMANENT_FAILURE and delivery.detail == detail


def test_https_verifies_the_provider_s_certificate(tmp_path):
    import ssl

    cert, key = self_signed_certificate(tmp_path)
    with LocalHTTPServer(twilio(), tls=server_tls_context(cert, key)) as server:
        url = sms_url(server)
        untrusted = TwilioConnector.from_url(url).deliver(Message("+15551234567", "", "Hi"))
        assert server.requests == []
        trusting = ssl.create_default_context(cafile=str(cert))
        trusted = TwilioConnector.from_url(url, ssl_context=trusting).deliver(
            Message("+15551234567", "", "Hi")
        )
        assert len(server.requests) == 1
    assert untrusted.outcome is Outcome.TEMPORARY_FAILURE
    assert untrusted.detail.startswith("TLS failed")
    assert trusted.ok, trusted


# --- configuration -------------------------------------------------------------------------


def test_sms_urls():
    settings = SmsSettings.from_url(
        "https://AC123:s%2Fecret@api.twilio.com?from=%2B15005550006&timeout=2.5"
    )
    assert settings == SmsSettings(
        base_url="https://api.twilio.com",
        username="AC123",
        password="s/ecret",
        account="AC123",
        sender="+15005550006",
        timeout=2.5,
    )
    assert settings.endpoint == "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json"
    assert "s/ecret" not in repr(settings)
    proxied = SmsSettings.from_url("https://SK1:x@proxy.example:8443/twilio/?account=AC9&from=Acme")
    assert (
        proxied.endpoint
        == "https://proxy.example:8443/twilio/2010-04-01/Accounts/AC9/Messages.json"
    )
    assert (proxied.username, proxied.account, proxied.sender) == ("SK1", "AC9", "Acme")
    local = SmsSettings.from_url("http://AC1:x@[::1]:8080?messaging_service=MG1")
    assert local.base_url == "http://[::1]:8080" and local.messaging_service == "MG1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("twilio://AC1:x@api.twilio.com?from=%2B1555", "starts with https://"),
        ("https://AC1:x@?from=%2B1555", "names the API's host"),
        ("http://AC1:x@api.twilio.com?from=%2B1555", "without TLS"),
        ("https://api.twilio.com?from=%2B1555", "carries the credentials"),
        ("https://AC1@api.twilio.com?from=%2B1555", "carries the credentials"),
        ("https://AC1:x@api.twilio.com", "either ?from= or ?messaging_service="),
        ("https://AC1:x@api.twilio.com?from=%2B1&messaging_service=MG1", "either"),
        ("https://SK1:x@api.twilio.com?from=%2B1555", "needs the account SID"),
        ("https://AC1:x@api.twilio.com?from=%2B1&account=../x", "letters and digits"),
        ("https://AC1:x@api.twilio.com?from=%2B1&region=ie1", "unknown SMS URL parameters: region"),
        ("https://AC1:x@api.twilio.com?from=%2B1&timeout=0", "positive"),
        ("https://AC1:x@api.twilio.com:port?from=%2B1", "bad port"),
    ],
)
def test_bad_sms_urls_say_what_is_wrong_and_never_the_secret(url, message):
    with pytest.raises(SmsConfigError, match=re.escape(message)) as caught:
        SmsSettings.from_url(url)
    assert ":x@" not in str(caught.value)


# --- development ---------------------------------------------------------------------------


def test_file_connector_writes_one_private_file_per_sms(tmp_path):
    folder = tmp_path / "sms"
    connector = SmsFileConnector(folder)
    assert isinstance(connector, Connector) and connector.channel == "sms"
    first = connector.deliver(Message("+15551234567", "", "Code: 123456 ✓"))
    second = connector.deliver(Message("+15551234567", "", "Again"))
    assert first.ok and second.ok and first.location != second.location
    assert first.message_id and first.message_id != second.message_id
    path = Path(first.location)
    assert path.parent == folder and path.suffix == ".txt"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    content = path.read_text(encoding="utf-8")
    assert "To: +15551234567\n" in content
    assert "Segments: 1 (UCS-2)\n" in content
    assert content.endswith("\n\nCode: 123456 ✓\n")
    refused = connector.deliver(Message("not a number", "", "Hi"))
    assert refused.outcome is Outcome.PERMANENT_FAILURE
    assert len(list(folder.iterdir())) == 2
