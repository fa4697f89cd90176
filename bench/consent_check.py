"""``POST /api/v1/consents/check`` with 10,000 items, end to end, beside a raw SQL fetch of
the same rows, measured in the same run.

The database is built by the migrations, then filled with bulk inserts (no argon2, no data
keys: a consent check reads neither): 10,000 customers of one vendor, each with a grant,
and a mix of settings (topic consents granted, withdrawn and expired, channels off, the
vendor blocked, frequency caps with send history, quiet hours, closed accounts). The vault
runs under gunicorn (one sync worker) and gets a client-credentials token from its own
token endpoint. One check is: encode the JSON batch, send it over loopback, the vault
validates, maps pairwise subjects, loads the snapshot, decides 10,000 times and answers, the
client reads and parses the JSON. The baseline fetches exactly the rows the check reads
with hand-written SQL (no ORM, no decisions, no HTTP) on the same database.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa

from bench.oauth_api import _config, _gunicorn
from bench.profile_store import Target, _migrate, _postgres_target, _sqlite_target

ITEMS = 10_000
CUSTOMERS = 10_000
RUNS = 5
TOPICS = (("orders", "service"), ("news", "marketing"), ("survey", "research"))
CHANNELS = ("email", "sms", "phone", "post", "push")
SCOPES = ["openid", "consent:check", "consent:read"]


@dataclass
class CheckTimes:
    http: list[float]  # seconds per end-to-end check
    raw_sql: list[float]  # seconds per raw fetch of the same rows
    items: int
    customers: int
    request_bytes: int
    response_bytes: int
    outcomes: dict[str, int]
    raw_rows: int
    database: str

    @property
    def http_median(self) -> float:
        return statistics.median(self.http)

    @property
    def raw_median(self) -> float:
        return statistics.median(self.raw_sql)


def _fill(config: dict[str, Any]) -> tuple[str, str, str, list[str]]:
    """Migrate and bulk-insert the vendor world; (vendor id, client id, secret, subs)."""
    from vault import create_app
    from vault.accounts.models import User
    from vault.consents.models import (
        ChannelSetting,
        ConsentPreferences,
        TopicConsent,
        VendorPreference,
    )
    from vault.extensions import db
    from vault.messages.models import Message
    from vault.models import new_id, utcnow
    from vault.oauth.models import Grant, PairwiseSubject
    from vault.oauth.scopes import pairwise_sub
    from vault.services import keys
    from vault.vendors.models import ContactTopic
    from vault.vendors.operations import create_client, create_vendor, declare_topic

    app = create_app(config)
    _migrate(app)
    with app.app_context():
        session = db.session
        vendor = create_vendor(session, "Bench Consent Ltd")
        new = create_client(
            session, vendor, redirect_uris=["http://127.0.0.1/callback"], scopes=SCOPES
        )
        topics: dict[str, ContactTopic] = {
            name: declare_topic(session, vendor, name, purpose) for name, purpose in TOPICS
        }
        other = create_vendor(session, "Someone Else")  # rows the check must not read
        other_client = create_client(
            session, other, redirect_uris=["http://127.0.0.1/callback"], scopes=SCOPES
        )
        other_topic = declare_topic(session, other, "news", "marketing")
        now = utcnow()
        ids = [new_id() for _ in range(CUSTOMERS)]
        users, grants, consents, channels, prefs, quiet, sent = [], [], [], [], [], [], []
        for i, user_id in enumerate(ids):
            users.append(
                {
                    "id": user_id,
                    "role": "customer",
                    "status": "closed" if i % 97 == 0 else "active",
                    "email_index": None,
                    "password_hash": None,
                    "session_token": new_id(),
                    "totp_enabled": False,
                    "recovery_code_hashes": [],
                    "created_at": now,
                    # Half the customers confirmed their phone number (sms and phone allowed).
                    "phone_confirmed_index": bytes(32) if i % 2 == 0 else None,
                }
            )
            grant = {
                "id": new_id(),
                "user_id": user_id,
                "client_id": new.client.client_id,
                "vendor_id": vendor.id,
                "scope": "openid",
                "created_at": now,
                "updated_at": now,
                "expires_at": now - timedelta(days=1) if i % 50 == 0 else None,
            }
            grants.append(grant)
            if i % 4 == 0:  # a customer of the other vendor too
                grants.append(
                    {
                        **grant,
                        "id": new_id(),
                        "client_id": other_client.client.client_id,
                        "vendor_id": other.id,
                    }
                )
                consents.append(
                    _consent(user_id, other_topic.id, other.id, "email", "granted", now)
                )

            def add(
                topic: str, channel: str, state: str, expires: Any = None, user_id: str = user_id
            ) -> None:
                consents.append(
                    _consent(user_id, topics[topic].id, vendor.id, channel, state, now, expires)
                )

            if i % 3 == 0:
                add("news", "email", "granted")
                add("news", "sms", "granted")
            if i % 7 == 0:
                add("news", "post", "withdrawn")
                add("orders", "phone", "withdrawn")
            if i % 11 == 0:
                add("survey", "email", "granted", now - timedelta(days=2))
            if i % 2 == 1:
                add("survey", "push", "granted", now + timedelta(days=30))
            if i % 13 == 0:
                channels.append(
                    {"user_id": user_id, "channel": "sms", "enabled": False, "updated_at": now}
                )
            if i % 17 == 0 or i % 19 == 0:
                prefs.append(
                    {
                        "user_id": user_id,
                        "vendor_id": vendor.id,
                        "blocked": i % 17 == 0,
                        "cap_per_day": 1 if i % 19 == 0 else None,
                        "cap_per_week": 3 if i % 19 == 0 else None,
                        "updated_at": now,
                    }
                )
            if i % 19 == 0:
                for channel in ("email", "sms"):
                    # A delivered message: what frequency caps count.
                    sent.append(
                        {
                            "id": f"msg_bench{i}{channel}",
                            "user_id": user_id,
                            "vendor_id": vendor.id,
                            "client_id": "bench",
                            "channel": channel,
                            "topic": "news",
                            "body_ciphertext": b"",
                            "status": "sent",
                            "not_before": now - timedelta(hours=3),
                            "attempts": 1,
                            "decision": "allow",
                            "rule": "granted",
                            "reason": "",
                            "ledger_seq": 0,
                            "ledger_hash": "0" * 64,
                            "idempotency_key": f"bench-{i}-{channel}",
                            "request_hash": "0" * 64,
                            "created_at": now - timedelta(hours=3),
                            "updated_at": now - timedelta(hours=3),
                            "sent_at": now - timedelta(hours=3),
                        }
                    )
            if i % 5 == 0:
                quiet.append(
                    {
                        "user_id": user_id,
                        "quiet_start": "22:00",
                        "quiet_end": "07:00",
                        "timezone": "Europe/Berlin",
                        "updated_at": now,
                    }
                )
        for model, rows in (
            (User, users),
            (Grant, grants),
            (TopicConsent, consents),
            (ChannelSetting, channels),
            (VendorPreference, prefs),
            (ConsentPreferences, quiet),
            (Message, sent),
        ):
            for start in range(0, len(rows), 5_000):
                session.execute(sa.insert(model), rows[start : start + 5_000])
        subs = [pairwise_sub(keys(), vendor.id, user_id) for user_id in ids]
        # What approve() keeps beside each first grant.
        subjects = [
            {"vendor_id": vendor.id, "sub": sub, "user_id": user_id, "created_at": now}
            for sub, user_id in zip(subs, ids, strict=True)
        ]
        for start in range(0, len(subjects), 5_000):
            session.execute(sa.insert(PairwiseSubject), subjects[start : start + 5_000])
        session.commit()
        vendor_id, client_id, secret = vendor.id, new.client.client_id, new.client_secret
        db.engine.dispose()
    assert secret is not None
    return vendor_id, client_id, secret, subs


def _consent(
    user_id: str,
    topic_id: str,
    vendor_id: str,
    channel: str,
    state: str,
    now: Any,
    expires: Any = None,
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "topic_id": topic_id,
        "channel": channel,
        "vendor_id": vendor_id,
        "state": state,
        "expires_at": expires,
        "notice_version": 1,
        "source": "bench",
        "updated_at": now,
    }


def _items(subs: list[str]) -> list[dict[str, str]]:
    items = []
    for i in range(ITEMS):
        sub = subs[i % len(subs)] if i % 100 != 99 else secrets.token_hex(32)  # 1% unknown
        topic = TOPICS[i % len(TOPICS)][0]
        items.append({"sub": sub, "channel": CHANNELS[(i // 3) % len(CHANNELS)], "topic": topic})
    return items


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _token(port: int, client_id: str, secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    status, body = _post(
        port,
        "/oauth/token",
        urlencode({"grant_type": "client_credentials", "scope": "consent:check"}).encode(),
        {
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    if status != 200:
        raise RuntimeError(f"client credentials failed: {status} {body[:300]!r}")
    return json.loads(body)["access_token"]


RAW_QUERIES = (
    # What the check reads, written by hand: subjects, then the snapshot of those customers.
    "SELECT DISTINCT user_id FROM oauth_grants WHERE vendor_id = :v",
    "SELECT id, name, purpose FROM contact_topics WHERE vendor_id = :v",
    "SELECT u.id, u.status, u.phone_confirmed_index IS NOT NULL FROM users u WHERE u.id IN "
    "(SELECT user_id FROM oauth_grants WHERE vendor_id = :v)",
    "SELECT c.user_id, c.channel FROM channel_settings c WHERE c.enabled = false AND c.user_id IN "
    "(SELECT user_id FROM oauth_grants WHERE vendor_id = :v)",
    "SELECT user_id, blocked, cap_per_day, cap_per_week FROM vendor_preferences "
    "WHERE vendor_id = :v",
    "SELECT t.user_id, ct.name, t.channel, t.state, t.expires_at, t.notice_version "
    "FROM topic_consents t JOIN contact_topics ct ON ct.id = t.topic_id WHERE t.vendor_id = :v",
    "SELECT p.user_id, p.quiet_start, p.quiet_end, p.timezone FROM consent_preferences p "
    "WHERE p.quiet_start IS NOT NULL AND p.user_id IN "
    "(SELECT user_id FROM oauth_grants WHERE vendor_id = :v)",
    "SELECT user_id, vendor_id FROM oauth_grants WHERE vendor_id = :v AND revoked_at IS NULL "
    "AND (expires_at IS NULL OR expires_at > :now)",
    "SELECT user_id, vendor_id, channel, sent_at FROM messages WHERE vendor_id = :v "
    "AND sent_at > :week",
)


def _raw_fetch(engine: sa.Engine, vendor_id: str) -> Callable[[], int]:
    from vault.models import utcnow

    def fetch() -> int:
        now = utcnow()
        params = {"v": vendor_id, "now": now, "week": now - timedelta(days=7)}
        rows = 0
        with engine.connect() as connection:
            for query in RAW_QUERIES:
                rows += len(connection.execute(sa.text(query), params).fetchall())
        return rows

    return fetch


def _timed(operation: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = operation()
    return time.perf_counter() - start, result


def measure(database_url: str | None = None, runs: int = RUNS) -> CheckTimes:
    from vault.crypto.keyring import Keyring

    target_context = _postgres_target(database_url) if database_url else _sqlite_target()
    with target_context as target, tempfile.TemporaryDirectory(prefix="vault-consent-") as tmp:
        return _measure(target, Path(tmp), runs, Keyring.generate().dumps())


def _measure(target: Target, directory: Path, runs: int, keyring_text: str) -> CheckTimes:
    from bench.oauth_api import _VAULT_WSGI

    config = _config(target, keyring_text)
    vendor_id, client_id, secret, subs = _fill(config)
    items = _items(subs)
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "vault_bench_wsgi.py").write_text(_VAULT_WSGI)
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "VAULT_BENCH_CONFIG": str(directory / "config.json"),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    engine = sa.create_engine(target.url, **target.engine_options)
    raw = _raw_fetch(engine, vendor_id)
    try:
        with _gunicorn(directory, "vault_bench_wsgi", env, "consent", workers=1) as port:
            headers = {
                "Authorization": f"Bearer {_token(port, client_id, secret)}",
                "Content-Type": "application/json",
            }
            sizes = {"request": 0, "response": 0}

            def check() -> list[dict[str, Any]]:
                body = json.dumps({"items": items}).encode()
                status, answer = _post(port, "/api/v1/consents/check", body, headers)
                if status != 200:
                    raise RuntimeError(f"check failed: {status} {answer[:300]!r}")
                sizes["request"], sizes["response"] = len(body), len(answer)
                return json.loads(answer)["results"]

            check()  # warm-up: imports, connections, caches
            raw()
            http_times, raw_times = [], []
            results: list[dict[str, Any]] = []
            raw_rows = 0
            for _ in range(runs):  # interleaved, so both see the same machine state
                seconds, results = _timed(check)
                http_times.append(seconds)
                seconds, raw_rows = _timed(raw)
                raw_times.append(seconds)
    finally:
        engine.dispose()
    if len(results) != ITEMS:
        raise RuntimeError(f"{len(results)} results for {ITEMS} items")
    outcomes: dict[str, int] = {}
    for result in results:
        key = result.get("rule") or result["error"]
        outcomes[key] = outcomes.get(key, 0) + 1
    return CheckTimes(
        http_times,
        raw_times,
        ITEMS,
        CUSTOMERS,
        sizes["request"],
        sizes["response"],
        dict(sorted(outcomes.items(), key=lambda kv: -kv[1])),
        raw_rows,
        target.description,
    )
