"""POST /api/v1/permits: a JWS signed by the vault, verified here with PyJWT (not the
joserfc that signs it) against the published JWKS; refusals as for messages. On SQLite and
on PostgreSQL."""

from __future__ import annotations

import json
from datetime import time

import jwt
import requests

from tests.vault.consents.test_vendor_api import _save
from tests.vault.messages.helpers import World, token
from tests.vault.oauth.conftest import Vault
from vault.consents.operations import ConsentChanges


def _permit(vault: Vault, world: World, **body: str) -> requests.Response:
    session = token(vault, world.shop, "messages:permit")
    return session.post(
        vault.base + "/api/v1/permits",
        json={"sub": world.sub, "channel": "email", "topic": "news", **body},
        timeout=10,
    )


def _verify(vault: Vault, permit: str, audience: str) -> dict:
    jwks = requests.get(vault.meta["jwks_uri"], timeout=10).json()
    header = jwt.get_unverified_header(permit)
    [jwk] = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    key = jwt.PyJWK(jwk).key
    return jwt.decode(
        permit, key, algorithms=["ES256"], audience=audience, issuer=vault.meta["issuer"]
    )


def test_a_permit_is_a_jws_verifiable_with_the_jwks_and_is_logged(
    vault: Vault, world: World
) -> None:
    response = _permit(vault, world)
    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert jwt.get_unverified_header(body["permit"])["typ"] == "contact-permit+jwt"
    claims = _verify(vault, body["permit"], world.shop.client.client_id)
    head = vault.sql("SELECT seq, hash FROM ledger_head")[0]
    assert claims["sub"] == world.sub
    assert claims["vendor_id"] == world.shop.client.vendor_id
    assert claims["client_id"] == world.shop.client.client_id
    assert (claims["channel"], claims["topic"], claims["rule"]) == ("email", "news", "granted")
    assert claims["ledger"] == {"seq": head[0], "hash": head[1]}
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"] == body["id"]
    # Nothing in it names the customer but the pairwise sub.
    assert world.user.email not in json.dumps(claims) and world.user.id not in json.dumps(claims)
    log = vault.sql(
        "SELECT event, permit_id, rule, ledger_seq, ledger_hash, message_id, channel, topic "
        "FROM contact_log"
    )
    assert [tuple(row) for row in log] == [
        ("permit", body["id"], "granted", head[0], head[1], None, "email", "news")
    ]


def test_a_permit_for_another_channel_the_vendor_delivers_itself(
    vault: Vault, world: World
) -> None:
    _save(vault, world.user.id, ConsentChanges())
    response = _permit(vault, world, channel="post", topic="orders")
    # orders is a service topic and the customer has a live connection with the shop.
    assert response.status_code == 201, response.text
    claims = _verify(vault, response.json()["permit"], world.shop.client.client_id)
    assert (claims["channel"], claims["rule"]) == ("post", "service_relationship")


def test_deny_and_quiet_hours_are_403_problems_and_issue_nothing(
    vault: Vault, world: World
) -> None:
    denied = _permit(vault, world, channel="phone")
    assert denied.status_code == 403
    assert denied.headers["Content-Type"] == "application/problem+json"
    problem = denied.json()
    assert problem["type"].endswith("/contact-denied") and problem["rule"] == "no_consent"
    assert problem["reason"] and "permit" not in problem
    _save(vault, world.user.id, ConsentChanges(quiet_hours=(time(0, 0), time(23, 59), "UTC")))
    deferred = _permit(vault, world)
    assert deferred.status_code == 403
    assert deferred.json()["type"].endswith("/contact-deferred")
    assert deferred.json()["rule"] == "quiet_hours" and deferred.json()["not_before"]
    assert vault.sql("SELECT count(*) FROM contact_log")[0][0] == 0


def test_permits_need_their_own_scope_and_a_known_subject(vault: Vault, world: World) -> None:
    session = token(vault, world.shop, "messages:send")
    response = session.post(
        vault.base + "/api/v1/permits",
        json={"sub": world.sub, "channel": "email", "topic": "news"},
        timeout=10,
    )
    assert response.status_code == 403
    assert _permit(vault, world, sub="unknown").status_code == 404
    unknown_topic = _permit(vault, world, topic="nope")
    assert unknown_topic.status_code == 422
    assert unknown_topic.json()["type"].endswith("/unknown-topic")
    assert _permit(vault, world, channel="pigeon").status_code == 422
