"""POST and GET /api/v1/messages over HTTP with Authlib's OAuth2Session as the vendor's
client against a live vault, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import time

import requests

from tests.factories import confirm_phone
from tests.vault.consents.test_vendor_api import _save
from tests.vault.messages.helpers import (
    World,
    connect,
    email,
    grant,
    make_shop,
    send,
    token,
)
from tests.vault.oauth.conftest import Vault
from vault.consents.operations import ConsentChanges

PROBLEM = "application/problem+json"


def _rows(vault: Vault, sql: str, **params: object) -> list:
    return vault.sql(sql, **params)


def test_allowed_message_is_queued_with_its_decision(vault: Vault, world: World) -> None:
    session = token(vault, world.shop)
    response = send(vault, session, email(world.sub))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["id"].startswith("msg_")
    assert set(body) == {"id", "status"}
    assert response.headers["Location"].endswith(f"/api/v1/messages/{body['id']}")
    [row] = _rows(
        vault,
        "SELECT status, decision, rule, ledger_seq, ledger_hash, body_ciphertext, channel "
        "FROM messages WHERE id = :id",
        id=body["id"],
    )
    head = _rows(vault, "SELECT seq, hash FROM ledger_head")[0]
    assert row[:5] == ("queued", "allow", "granted", head[0], head[1])
    assert b"Hi!" not in bytes(row[5])  # the body is encrypted at rest
    log = _rows(
        vault,
        "SELECT event, rule, ledger_seq FROM contact_log WHERE message_id = :id",
        id=body["id"],
    )
    assert log == [("accepted", "granted", head[0])]

    shown = session.get(vault.base + f"/api/v1/messages/{body['id']}", timeout=10)
    assert shown.status_code == 200, shown.text
    view = shown.json()
    assert view["status"] == "queued" and view["attempts"] == 0 and view["last_error"] is None
    assert view["sub"] == world.sub and view["sent_at"] is None
    assert view["decision"]["rule"] == "granted"
    assert view["decision"]["ledger"] == {"seq": head[0], "hash": head[1]}
    assert shown.headers["Cache-Control"] == "no-store"


def test_quiet_hours_defer_with_not_before(vault: Vault, world: World) -> None:
    _save(vault, world.user.id, ConsentChanges(quiet_hours=(time(0, 0), time(23, 59), "UTC")))
    response = send(vault, token(vault, world.shop), email(world.sub))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "deferred" and body["not_before"].endswith("23:59:00+00:00")
    assert _rows(vault, "SELECT status FROM messages")[0][0] == "deferred"


def test_deny_is_a_403_problem_naming_rule_and_reason_and_is_recorded(
    vault: Vault, world: World
) -> None:
    session = token(vault, world.shop)
    response = send(vault, session, email(world.sub, topic="orders", subject="x"))
    # orders is a service topic with a live grant: allowed; news on post is not a channel
    # the vault delivers. Withdrawn news on e-mail is the deny:
    assert response.status_code == 202
    _save(
        vault,
        world.user.id,
        ConsentChanges(channels={"email": False}),
    )
    denied = send(vault, session, email(world.sub))
    assert denied.status_code == 403, denied.text
    assert denied.headers["Content-Type"] == PROBLEM
    problem = denied.json()
    assert problem["type"].endswith("/contact-denied")
    assert problem["rule"] == "channel_off"
    assert "switched off" in problem["reason"] and problem["detail"] == problem["reason"]
    # The refusal is on record: a blocked row and a contact-log line.
    [row] = _rows(vault, "SELECT status, rule FROM messages WHERE id = :id", id=problem["id"])
    assert row == ("blocked", "channel_off")
    assert _rows(
        vault, "SELECT event FROM contact_log WHERE message_id = :id", id=problem["id"]
    ) == [("denied",)]
    shown = session.get(vault.base + f"/api/v1/messages/{problem['id']}", timeout=10).json()
    assert shown["status"] == "blocked"


def test_same_key_same_answer_never_a_second_row(vault: Vault, world: World) -> None:
    session = token(vault, world.shop)
    key = str(uuid.uuid4())
    first = send(vault, session, email(world.sub), key=key)
    again = send(vault, session, email(world.sub), key=key)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _rows(vault, "SELECT count(*) FROM messages")[0][0] == 1
    # The same key with another body is refused.
    other = send(vault, session, email(world.sub, body="Something else"), key=key)
    assert other.status_code == 422 and other.headers["Content-Type"] == PROBLEM
    assert other.json()["type"].endswith("/idempotency-key-reused")
    # A deny repeats as the same 403.
    _save(vault, world.user.id, ConsentChanges(channels={"email": False}))
    key2 = str(uuid.uuid4())
    denied = send(vault, session, email(world.sub), key=key2)
    denied_again = send(vault, session, email(world.sub), key=key2)
    assert denied.status_code == denied_again.status_code == 403
    assert denied.json() == denied_again.json()
    assert _rows(vault, "SELECT count(*) FROM messages")[0][0] == 2


def test_concurrent_requests_with_one_key_store_one_message(vault: Vault, world: World) -> None:
    access = token(vault, world.shop).token["access_token"]
    key = str(uuid.uuid4())
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: send(vault, access, email(world.sub), key=key), range(8)))
    assert [a.status_code for a in answers] == [202] * 8, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert _rows(vault, "SELECT count(*) FROM messages")[0][0] == 1
    assert _rows(vault, "SELECT count(*) FROM contact_log")[0][0] == 1


def test_keys_are_per_vendor(vault: Vault, world: World) -> None:
    other_sub = connect(vault, world.user.id, world.other)
    grant(vault, world.user.id, world.other, "news", "email")
    key = str(uuid.uuid4())
    a = send(vault, token(vault, world.shop), email(world.sub), key=key)
    b = send(vault, token(vault, world.other), email(other_sub), key=key)
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]


def test_validation_errors_are_problems(vault: Vault, world: World) -> None:
    session = token(vault, world.shop)

    def problem(body: object, key: str | None = "k", status: int = 422) -> dict:
        headers = {"Idempotency-Key": key} if key is not None else {}
        response = session.post(
            vault.base + "/api/v1/messages", json=body, headers=headers, timeout=10
        )
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"] == PROBLEM
        return response.json()

    assert problem(email(world.sub), key=None, status=400)["type"].endswith(
        "/idempotency-key-required"
    )
    assert "subject" in problem({**email(world.sub), "subject": None})["errors"]
    no_subject = {k: v for k, v in email(world.sub).items() if k != "subject"}
    assert problem(no_subject)["errors"] == {"subject": ["an e-mail needs a subject"]}
    assert "subject" in problem(email(world.sub, subject="two\nlines"))["errors"]
    assert "body" in problem(email(world.sub, body="bell\x07"))["errors"]
    assert "channel" in problem(email(world.sub, channel="post"))["errors"]
    sms = {"sub": world.sub, "channel": "sms", "topic": "news", "body": "x" * 1531}
    errors = problem(sms)["errors"]
    assert "11 SMS segments" in errors["body"][0]
    assert "subject" in problem({**sms, "body": "ok", "subject": "no"})["errors"]
    assert "unknown" in json.dumps(problem({**email(world.sub), "extra": 1})["errors"]).lower()
    assert problem(["not", "an", "object"])["errors"]
    unknown_topic = problem(email(world.sub, topic="nope"))
    assert unknown_topic["type"].endswith("/unknown-topic")
    assert problem(email("not-a-sub"), status=404)["type"].endswith("/unknown-subject")
    # A full SMS of 10 segments is fine.
    ok = send(vault, session, {**sms, "body": "x" * 1530})
    assert ok.status_code == 202, ok.text
    assert _rows(vault, "SELECT count(*) FROM messages")[0][0] == 1


def test_scope_is_required(vault: Vault, world: World) -> None:
    session = token(vault, world.shop, "messages:permit")
    response = send(vault, session, email(world.sub))
    assert response.status_code == 403
    assert response.headers["Content-Type"] == PROBLEM


def test_vendors_see_only_their_own_messages(vault: Vault, world: World) -> None:
    sent = send(vault, token(vault, world.shop), email(world.sub)).json()
    other_session = token(vault, world.other)
    response = other_session.get(vault.base + f"/api/v1/messages/{sent['id']}", timeout=10)
    assert response.status_code == 404 and response.headers["Content-Type"] == PROBLEM
    # Another vendor's customer is unknown to it, whatever it knows of the sub.
    assert send(vault, other_session, email(world.sub)).status_code == 404
    assert (
        other_session.get(vault.base + "/api/v1/messages/msg_nope", timeout=10).status_code == 404
    )


def test_no_answer_contains_the_address(vault: Vault) -> None:
    shop = make_shop(vault, "Acme", {"news": "marketing"})
    user = vault.customer(phone_number="+15005550006")
    confirm_phone(vault.app, user.id)  # texts go only to a confirmed number
    sub = connect(vault, user.id, shop)
    grant(vault, user.id, shop, "news", "email", "sms")
    session = token(vault, shop, "messages:send messages:permit")
    answers = []
    for body in (
        email(sub),
        {"sub": sub, "channel": "sms", "topic": "news", "body": "Hi"},
        email(sub, topic="nope"),
        email(sub, subject=None),
    ):
        answers.append(send(vault, session, body))
    ids = [a.json()["id"] for a in answers[:2]]
    for message_id in ids:
        answers.append(session.get(vault.base + f"/api/v1/messages/{message_id}", timeout=10))
    answers.append(
        session.post(
            vault.base + "/api/v1/permits",
            json={"sub": sub, "channel": "email", "topic": "news"},
            timeout=10,
        )
    )
    local = user.email.split("@")[0]
    for answer in answers:
        text = answer.text + json.dumps(dict(answer.headers))
        assert user.email not in text and local not in text
        assert "5550006" not in text
        # Nor the content.
        assert "Hi!" not in text


def test_answers_are_not_what_requests_with_other_keys_got(vault: Vault, world: World) -> None:
    session = token(vault, world.shop)
    a = send(vault, session, email(world.sub)).json()["id"]
    b = send(vault, session, email(world.sub)).json()["id"]
    assert a != b
    assert _rows(vault, "SELECT count(*) FROM messages")[0][0] == 2


def test_openapi_lists_the_operations(vault: Vault) -> None:
    spec = requests.get(vault.base + "/api/openapi.json", timeout=10).json()
    assert "post" in spec["paths"]["/api/v1/messages"]
    assert "get" in spec["paths"]["/api/v1/messages/{id}"]
    assert "post" in spec["paths"]["/api/v1/permits"]
    scopes = spec["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["scopes"]
    assert {"messages:send", "messages:permit"} <= set(scopes)
