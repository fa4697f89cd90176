"""Webhooks to a real local HTTP(S) server playing the business's receiver; what it
receives verifies with the ``standardwebhooks`` package, an implementation of our own.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from connectors.base import Outcome
from connectors.ssrf import check_url
from connectors.webhook import (
    Webhook,
    WebhookConnector,
    WebhookError,
    encode_payload,
    event_payload,
    generate_secret,
    secret_key,
    sign,
)
from tests.connectors.httpserver import LocalHTTPServer, Reply, Request
from tests.mailserver import free_port, self_signed_certificate, server_tls_context

SECRET = generate_secret()
PAYLOAD = event_payload(
    "consent.changed",
    {"sub": "p-3f9a", "channel": "email", "topic": "newsletter", "state": "withdrawn", "seq": 42},
    datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
)


def answer(status: int, delay: float = 0.0):
    def respond(request: Request) -> Reply:
        time.sleep(delay)
        return status, {}, b""

    return respond


def local(**options) -> WebhookConnector:
    return WebhookConnector(allow_local=True, **options)


def verify(request: Request, secret: str = SECRET):
    return Verifier(secret).verify(request.body, request.headers)


def test_a_webhook_arrives_signed_per_standard_webhooks():
    with LocalHTTPServer(answer(204)) as server:
        delivery = local().deliver(Webhook(f"{server.url}/hooks/cmr", SECRET, "msg_42", PAYLOAD))
        [request] = server.requests
    assert delivery.outcome is Outcome.SENT
    assert delivery.message_id == "msg_42" and delivery.detail == "HTTP 204"
    assert request.path == "/hooks/cmr"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == "msg_42"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5
    assert request.headers["webhook-signature"].startswith("v1,")
    assert verify(request) == PAYLOAD
    assert json.loads(request.body) == {
        "type": "consent.changed",
        "timestamp": "2025-03-01T12:00:00Z",
        "data": {
            "sub": "p-3f9a",
            "channel": "email",
            "topic": "newsletter",
            "state": "withdrawn",
            "seq": 42,
        },
    }


def test_a_signature_made_with_another_secret_or_body_does_not_verify():
    with LocalHTTPServer(answer(200)) as server:
        assert local().deliver(Webhook(server.url, SECRET, "msg_1", PAYLOAD)).ok
        [request] = server.requests
    with pytest.raises(WebhookVerificationError):
        verify(request, generate_secret())
    altered = Request(request.method, request.path, request.headers, request.body + b" ")
    with pytest.raises(WebhookVerificationError):
        verify(altered)


def test_every_attempt_keeps_the_id_and_signs_its_own_time():
    now = time.time()
    with LocalHTTPServer(answer(200)) as server:
        url = f"{server.url}/hook"
        assert local(clock=lambda: now).deliver(Webhook(url, SECRET, "msg_7", PAYLOAD)).ok
        assert local(clock=lambda: now + 30).deliver(Webhook(url, SECRET, "msg_7", PAYLOAD)).ok
        first, second = server.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "msg_7"
    assert int(second.headers["webhook-timestamp"]) == int(first.headers["webhook-timestamp"]) + 30
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert verify(first) == verify(second) == PAYLOAD


@pytest.mark.parametrize("status", [301, 302, 400, 401, 404, 410, 429, 500, 503])
def test_every_answer_but_a_2xx_is_retried_and_no_redirect_is_followed(status):
    def respond(request: Request) -> Reply:
        return status, {"Location": "http://127.0.0.1:1/elsewhere"}, b'{"error": "nope"}'

    with LocalHTTPServer(respond) as server:
        delivery = local().deliver(Webhook(server.url, SECRET, "msg_1", PAYLOAD))
        assert len(server.requests) == 1
    assert delivery.outcome is Outcome.TEMPORARY_FAILURE
    assert delivery.detail == f"HTTP {status}"


def test_a_slow_receiver_times_out_and_an_absent_one_refuses():
    with LocalHTTPServer(answer(200, delay=1.5)) as server:
        started = time.monotonic()
        slow = local(timeout=0.4).deliver(Webhook(server.url, SECRET, "msg_1", PAYLOAD))
        assert time.monotonic() - started < 1.4
    assert slow.outcome is Outcome.TEMPORARY_FAILURE
    assert slow.detail == "connection failed: TimeoutError"
    url = f"http://127.0.0.1:{free_port()}/hook"
    absent = local().deliver(Webhook(url, SECRET, "msg_1", PAYLOAD))
    assert absent.outcome is Outcome.TEMPORARY_FAILURE
    assert absent.detail == "connection failed: ConnectionRefusedError"


def test_production_posts_nothing_to_loopback():
    with LocalHTTPServer(answer(200)) as server:
        connector = WebhookConnector()
        plain = connector.deliver(Webhook(server.url, SECRET, "msg_1", PAYLOAD))
        tls = connector.deliver(
            Webhook(server.url.replace("http:", "https:"), SECRET, "msg_1", PAYLOAD)
        )
        named = connector.deliver(
            Webhook(f"https://localhost:{server.port}/", SECRET, "msg_1", PAYLOAD)
        )
        assert server.requests == []
    assert plain.outcome is Outcome.PERMANENT_FAILURE
    assert plain.detail == "refused: the URL must start with https://"
    assert tls.outcome is named.outcome is Outcome.PERMANENT_FAILURE
    assert tls.detail == "refused: the URL's host is a private or loopback address"


def test_a_name_that_turns_private_after_the_check_gets_nothing():
    """DNS rebinding: public when the portal saved the URL, loopback at delivery."""
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    with LocalHTTPServer(answer(200)) as server:
        url = f"https://hooks.shop.example:{server.port}/"
        assert check_url(url, resolve=rebinding).addresses == ("93.184.215.14",)
        delivery = WebhookConnector(resolve=rebinding).deliver(Webhook(url, SECRET, "m", PAYLOAD))
        assert server.requests == []
    assert delivery.outcome is Outcome.TEMPORARY_FAILURE
    assert delivery.detail == (
        "refused: the URL's host name resolves to a private or loopback address"
    )


def test_the_request_goes_to_the_checked_address_under_the_url_s_name():
    # receiver.test resolves nowhere but in this resolver: a connection made by name
    # (resolving again) would fail; the one made to the checked address arrives.
    resolve = {"receiver.test": ["127.0.0.1"]}.__getitem__
    with LocalHTTPServer(answer(200)) as server:
        url = f"http://receiver.test:{server.port}/hook"
        connector = local(resolve=lambda host, port: resolve(host))
        delivery = connector.deliver(Webhook(url, SECRET, "msg_1", PAYLOAD))
        [request] = server.requests
    assert delivery.ok, delivery
    assert request.headers["host"] == f"receiver.test:{server.port}"


def test_an_address_that_refuses_passes_the_request_to_the_next():
    with LocalHTTPServer(answer(200)) as server:
        connector = local(resolve=lambda host, port: ["127.0.0.2", "127.0.0.1"])
        delivery = connector.deliver(
            Webhook(f"http://two.test:{server.port}/", SECRET, "m", PAYLOAD)
        )
        assert len(server.requests) == 1
    assert delivery.ok, delivery


def test_ipv6_loopback_in_development():
    with LocalHTTPServer(answer(200), host="::1") as server:
        delivery = local().deliver(Webhook(f"{server.url}/hook", SECRET, "msg_1", PAYLOAD))
        [request] = server.requests
    assert delivery.ok, delivery
    assert verify(request) == PAYLOAD


def test_https_checks_the_certificate_against_the_url_s_name(tmp_path):
    cert, key = self_signed_certificate(tmp_path)  # names localhost and 127.0.0.1
    trusting = ssl.create_default_context(cafile=str(cert))
    resolve = {"localhost": ["127.0.0.1"], "receiver.test": ["127.0.0.1"]}
    with LocalHTTPServer(answer(200), tls=server_tls_context(cert, key)) as server:
        connector = local(ssl_context=trusting, resolve=lambda host, port: resolve[host])
        good = connector.deliver(
            Webhook(f"https://localhost:{server.port}/hook", SECRET, "msg_1", PAYLOAD)
        )
        assert len(server.requests) == 1
        # Same address, another name: the certificate does not name it.
        wrong = connector.deliver(
            Webhook(f"https://receiver.test:{server.port}/hook", SECRET, "msg_2", PAYLOAD)
        )
        # The system's CAs do not know this certificate.
        untrusted = local(resolve=lambda host, port: resolve[host]).deliver(
            Webhook(f"https://localhost:{server.port}/hook", SECRET, "msg_3", PAYLOAD)
        )
        assert len(server.requests) == 1
    assert good.ok, good
    assert verify(server.requests[0]) == PAYLOAD
    for delivery in (wrong, untrusted):
        assert delivery.outcome is Outcome.TEMPORARY_FAILURE
        assert delivery.detail.startswith("TLS failed"), delivery.detail


@pytest.mark.parametrize(
    ("webhook", "detail"),
    [
        (Webhook("http://127.0.0.1:1/", "secret", "m", PAYLOAD), "must start with whsec_"),
        (Webhook("http://127.0.0.1:1/", "whsec_!!", "m", PAYLOAD), "base64"),
        (Webhook("http://127.0.0.1:1/", "whsec_c2hvcnQ=", "m", PAYLOAD), "24 to 64 bytes"),
        (Webhook("http://127.0.0.1:1/", SECRET, "a.b", PAYLOAD), "webhook id"),
        (Webhook("http://127.0.0.1:1/", SECRET, "", PAYLOAD), "webhook id"),
        (Webhook("http://127.0.0.1:1/", SECRET, "m", {"x": float("nan")}), "not JSON"),
        (Webhook("http://127.0.0.1:1/", SECRET, "m", {"x": object()}), "not JSON"),
        (Webhook("http://127.0.0.1:1/", SECRET, "m", [1, 2]), "JSON object"),  # type: ignore[arg-type]
    ],
)
def test_what_cannot_be_signed_is_permanent(webhook, detail):
    delivery = local().deliver(webhook)
    assert delivery.outcome is Outcome.PERMANENT_FAILURE
    assert detail in delivery.detail


def test_secrets_are_standard_and_unique():
    secrets = {generate_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_") and len(secret_key(secret)) == 32
    with pytest.raises(WebhookError):
        secret_key("whsec_" + base64.b64encode(b"x" * 65).decode())


def test_sign_matches_the_standardwebhooks_package():
    body = encode_payload(PAYLOAD)
    at = datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)
    expected = Verifier(SECRET).sign("msg_9", at, body.decode())
    assert sign(SECRET, "msg_9", int(at.timestamp()), body) == expected
    assert body == json.dumps(PAYLOAD, sort_keys=True, separators=(",", ":")).encode()
