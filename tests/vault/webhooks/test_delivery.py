"""Consent-change webhooks end to end, on SQLite and on PostgreSQL: a real local HTTP
server is the business's receiver, the ``standardwebhooks`` package verifies every
signature, the outbox worker delivers, retries and re-authorises."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from tests.connectors.httpserver import LocalHTTPServer, Reply, Request
from tests.vault.consents.test_vendor_api import _save
from tests.vault.messages.helpers import World, grant, withdraw
from tests.vault.oauth.conftest import Vault
from vault.consents.operations import ConsentChanges, VendorSettings, end_relationship
from vault.extensions import db
from vault.messages.worker import Worker
from vault.oauth.models import Grant
from vault.services import keys
from vault.unsubscribe.tokens import UnsubscribeTarget, make_token
from vault.webhooks import operations
from vault.webhooks.models import WebhookDelivery, WebhookEndpoint


@pytest.fixture
def live_config_overrides() -> dict[str, Any]:
    # A failed attempt comes back at once (within the same worker pass); three at most.
    return {
        "VAULT_OUTBOX_BACKOFF": 0,
        "VAULT_OUTBOX_MAX_BACKOFF": 0,
        "VAULT_WEBHOOK_MAX_ATTEMPTS": 3,
    }


def answers(*statuses: int):
    """A receiver answering these statuses in turn, then the last one for ever."""
    remaining = list(statuses)

    def respond(request: Request) -> Reply:
        status = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return status, {}, b""

    return respond


def set_endpoint(vault: Vault, world: World, url: str) -> str:
    """The shop's endpoint, as its portal saves it; the signing secret."""
    with vault.app.app_context():
        endpoint = operations.set_endpoint(
            db.session, keys(), world.shop.client.vendor_id, url, allow_local=True
        )
        secret = operations.reveal_secret(keys(), endpoint)
        db.session.commit()
    return secret


def deliveries(vault: Vault) -> list[tuple]:
    return [
        tuple(row)
        for row in vault.sql(
            "SELECT id, status, attempts, event_type, last_error FROM webhook_deliveries "
            "ORDER BY created_at, ledger_seq"
        )
    ]


def run_worker(vault: Vault) -> int:
    return Worker(vault.app).run_once()


def verified(request: Request, secret: str) -> dict[str, Any]:
    """The payload, once ``standardwebhooks`` accepted its signature."""
    return Verifier(secret).verify(request.body, request.headers)


def test_a_withdrawal_becomes_one_signed_webhook_without_personal_data(
    vault: Vault, world: World
) -> None:
    with LocalHTTPServer(answers(204)) as receiver:
        secret = set_endpoint(vault, world, receiver.url + "/hooks")
        withdraw(vault, world.user.id, world.shop, "news", "email")
        # Queued with the ledger event, in its transaction.
        [(delivery_id, status, *_)] = deliveries(vault)
        assert status == "queued"
        [(seq,)] = vault.sql("SELECT max(seq) FROM ledger_events")
        assert run_worker(vault) >= 1
        [request] = receiver.requests
    assert request.path == "/hooks"
    assert request.headers["webhook-id"] == delivery_id
    assert request.headers["webhook-signature"].startswith("v1,")
    payload = verified(request, secret)
    assert payload["type"] == "consent.topic_withdrawn"
    assert payload["data"] == {
        "sub": world.sub,
        "event": "topic_withdrawn",
        "channel": "email",
        "topic": "news",
        "state": payload["data"]["state"],
        "seq": seq,
    }
    assert payload["data"]["state"]["state"] == "withdrawn"
    body = request.body.decode()
    for personal in (world.user.email, "+15005550006", world.user.id):
        assert personal not in body
    assert deliveries(vault)[0][1:3] == ("sent", 1)


def test_a_one_click_unsubscribe_becomes_a_webhook(vault: Vault, world: World) -> None:
    with LocalHTTPServer(answers(200)) as receiver:
        secret = set_endpoint(vault, world, receiver.url)
        with vault.app.app_context():
            token = make_token(
                UnsubscribeTarget("m-1", world.user.id, world.shop.client.vendor_id, "sms", "news")
            )
        response = requests.post(
            f"{vault.base}/unsubscribe/{token}",
            data={"List-Unsubscribe": "One-Click"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        run_worker(vault)
        [request] = receiver.requests
    data = verified(request, secret)["data"]
    assert (data["sub"], data["channel"], data["topic"]) == (world.sub, "sms", "news")
    assert data["state"]["state"] == "withdrawn"


def test_no_endpoint_no_webhook(vault: Vault, world: World) -> None:
    withdraw(vault, world.user.id, world.shop, "news", "email")
    assert deliveries(vault) == []


def test_500_then_200_is_retried_and_delivered_once_under_one_id(
    vault: Vault, world: World
) -> None:
    with LocalHTTPServer(answers(500, 200)) as receiver:
        secret = set_endpoint(vault, world, receiver.url)
        withdraw(vault, world.user.id, world.shop, "news", "email")
        run_worker(vault)
        first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert verified(first, secret) == verified(second, secret)
    [(delivery_id, status, attempts, _, error)] = deliveries(vault)
    assert (delivery_id, status, attempts, error) == (first.headers["webhook-id"], "sent", 2, None)


def test_a_receiver_that_never_answers_2xx_is_given_up_after_the_attempts(
    vault: Vault, world: World
) -> None:
    with LocalHTTPServer(answers(503)) as receiver:
        set_endpoint(vault, world, receiver.url)
        withdraw(vault, world.user.id, world.shop, "news", "email")
        run_worker(vault)
        assert len(receiver.requests) == 3
    [(_, status, attempts, _, error)] = deliveries(vault)
    assert (status, attempts, error) == ("failed", 3, "HTTP 503")


def _revoke(vault: Vault, world: World) -> None:
    with vault.app.app_context():
        grant_row = db.session.scalar(
            db.select(Grant).where(
                Grant.user_id == world.user.id, Grant.vendor_id == world.shop.client.vendor_id
            )
        )
        end_relationship(db.session, keys(), world.user.id, grant_row, stop_contact=False)
        db.session.commit()


def _block(vault: Vault, world: World) -> None:
    _save(
        vault,
        world.user.id,
        ConsentChanges(vendors={world.shop.client.vendor_id: VendorSettings(blocked=True)}),
    )


def _close(vault: Vault, world: World) -> None:
    vault.sql("UPDATE users SET status = 'closed' WHERE id = :id", id=world.user.id)


@pytest.mark.parametrize("end", [_revoke, _block, _close], ids=["revoked", "blocked", "closed"])
def test_a_relationship_ended_before_delivery_gets_nothing(
    vault: Vault, world: World, end: Any
) -> None:
    with LocalHTTPServer(answers(200)) as receiver:
        set_endpoint(vault, world, receiver.url)
        withdraw(vault, world.user.id, world.shop, "news", "email")
        end(vault, world)
        run_worker(vault)
        assert receiver.requests == []
    rows = deliveries(vault)
    assert rows, "the withdrawal was queued"
    assert {row[1] for row in rows} == {"dropped"}


def test_rotating_the_secret_changes_the_signatures(vault: Vault, world: World) -> None:
    with LocalHTTPServer(answers(200)) as receiver:
        old = set_endpoint(vault, world, receiver.url)
        with vault.app.app_context():
            endpoint = operations.rotate_secret(db.session, keys(), world.shop.client.vendor_id)
            new = operations.reveal_secret(keys(), endpoint)
            db.session.commit()
        assert new != old
        withdraw(vault, world.user.id, world.shop, "news", "email")
        run_worker(vault)
        [request] = receiver.requests
    assert verified(request, new)["data"]["sub"] == world.sub
    with pytest.raises(WebhookVerificationError):
        verified(request, old)


def test_the_secret_is_not_stored_in_plaintext(vault: Vault, world: World) -> None:
    secret = set_endpoint(vault, world, "http://127.0.0.1:9/hooks")
    raw = __import__("base64").b64decode(secret.removeprefix("whsec_"))
    with vault.app.app_context():
        row = db.session.get(WebhookEndpoint, world.shop.client.vendor_id)
        stored = json.dumps({"url": row.url, "key": row.master_key_id}).encode() + row.wrapped_key
    assert raw not in stored and secret.encode() not in stored


def test_other_vendors_hear_nothing_of_this_customer(vault: Vault, world: World) -> None:
    with LocalHTTPServer(answers(200)) as receiver:
        with vault.app.app_context():
            operations.set_endpoint(
                db.session, keys(), world.other.client.vendor_id, receiver.url, allow_local=True
            )
            db.session.commit()
        grant(vault, world.user.id, world.shop, "orders", "email")
        withdraw(vault, world.user.id, world.shop, "news", "email")
        run_worker(vault)
        assert receiver.requests == []


def test_a_change_that_rolls_back_queues_nothing(vault: Vault, world: World) -> None:
    from consent.engine import State
    from vault.consents.operations import TopicChoice, save_consents

    set_endpoint(vault, world, "http://127.0.0.1:9/hooks")
    with vault.app.app_context():
        save_consents(
            db.session,
            keys(),
            world.user.id,
            ConsentChanges(
                topics={(world.shop.topics["news"], "email"): TopicChoice(State.WITHDRAWN)}
            ),
        )
        # Queued inside the change's transaction...
        assert db.session.scalar(db.select(db.func.count()).select_from(WebhookDelivery)) == 1
        db.session.rollback()
    assert deliveries(vault) == []  # ...and gone with it
    withdraw(vault, world.user.id, world.shop, "news", "email")
    assert [row[3] for row in deliveries(vault)] == ["topic_withdrawn"]


def test_vault_worker_once_delivers_webhooks(vault: Vault, world: World) -> None:
    with LocalHTTPServer(answers(200)) as receiver:
        set_endpoint(vault, world, receiver.url)
        withdraw(vault, world.user.id, world.shop, "news", "email")
        result = vault.app.test_cli_runner().invoke(args=["worker", "--once"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["webhooks_sent"] == 1
        assert len(receiver.requests) == 1
