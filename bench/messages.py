"""Businesses' messages: ``POST /api/v1/messages`` under gunicorn beside a bare Flask app
running the same SQL, and the outbox worker's deliveries into a local SMTP sink beside raw
``smtplib`` sends over one open connection. Both measured in the same run.

The API: the vault (``gunicorn -w 2``, as deployed, on a migrated database) and a bare
Flask app that runs, through the DB-API on one connection per worker, the statements the
vault runs for an accepted message (the bearer token with its client, grant and customer;
the pairwise subject; the idempotency key; the topic; the ledger head; the customer's seven
consent queries; the data key; the message and contact-log inserts; the commit) and answers
the same JSON: no OAuth logic, validation, consent engine, encryption or ORM. Every request
carries a new Idempotency-Key, so every one of them stores a message.

The worker: messages queued through the vault's own operations, then ``Worker.run_once``
delivering them (claim, decide again, decrypt, build MIME, send, record, one commit per
message) through ``SmtpConnector`` to an aiosmtpd sink on loopback; the baseline sends the
same number of ready-built messages with ``smtplib`` over one open connection, before and
after the worker (the mean of the two).
"""

from __future__ import annotations

import contextlib
import json
import smtplib
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.oauth_api import _VAULT_WSGI, CLIENT_THREADS, ROUNDS, _gunicorn, _workers_cpu
from bench.profile_store import _migrate, _postgres_target, _sqlite_target, bench_config
from bench.timing import Rate

QUEUED = 400  # messages the worker delivers
SENDER = "CMR Vault <vault@bench.example>"

# The statements the vault runs for one accepted message, as the DB-API spells them.
_BARE_SQL_WSGI = """\
import hashlib
import json
import os
import re
import secrets
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import Flask, jsonify, request

from vault.oauth.server import _BEARER_TOKEN_QUERY

with open(os.environ["VAULT_BENCH_CONFIG"]) as handle:
    CONFIG = json.load(handle)
ENGINE = sa.create_engine(
    CONFIG["SQLALCHEMY_DATABASE_URI"], **CONFIG.get("SQLALCHEMY_ENGINE_OPTIONS", {})
)
SQLITE = ENGINE.dialect.name == "sqlite"
M = "?" if SQLITE else "%s"
TOKEN_SQL = re.sub(
    r"%\\((\\w+)\\)s", "%s", str(_BEARER_TOKEN_QUERY.compile(dialect=ENGINE.dialect))
)
STATEMENTS = [
    f"SELECT user_id FROM pairwise_subjects WHERE vendor_id = {M} AND sub = {M}",
    f"SELECT id FROM messages WHERE vendor_id = {M} AND idempotency_key = {M}",
    f"SELECT id, name, purpose FROM contact_topics WHERE vendor_id = {M} AND name = {M}",
    "SELECT seq, hash FROM ledger_head WHERE id = 1",
    f"SELECT id, status FROM users WHERE id = {M}",
    f"SELECT user_id, channel FROM channel_settings WHERE user_id = {M} AND enabled = false",
    f"SELECT user_id, vendor_id, blocked, cap_per_day, cap_per_week FROM vendor_preferences "
    f"WHERE user_id = {M} AND vendor_id = {M}",
    f"SELECT t.user_id, t.vendor_id, ct.name, t.channel, t.state, t.expires_at, "
    f"t.notice_version FROM topic_consents t JOIN contact_topics ct ON ct.id = t.topic_id "
    f"WHERE t.user_id = {M} AND t.vendor_id = {M}",
    f"SELECT user_id, quiet_start, quiet_end, timezone FROM consent_preferences "
    f"WHERE user_id = {M} AND quiet_start IS NOT NULL",
    f"SELECT user_id, vendor_id FROM oauth_grants WHERE user_id = {M} AND vendor_id = {M} "
    f"AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > {M})",
    f"SELECT user_id, vendor_id, channel, sent_at FROM messages WHERE user_id = {M} "
    f"AND vendor_id = {M} AND sent_at > {M}",
    f"SELECT master_key_id, wrapped_key FROM data_keys WHERE user_id = {M}",
]
INSERT_MESSAGE = (
    "INSERT INTO messages (id, vendor_id, client_id, user_id, channel, topic, "
    "subject_ciphertext, body_ciphertext, status, not_before, attempts, decision, rule, "
    "reason, ledger_seq, ledger_hash, idempotency_key, request_hash, created_at, updated_at) "
    f"VALUES ({', '.join([M] * 20)})"
)
INSERT_LOG = (
    "INSERT INTO contact_log (at, vendor_id, user_id, message_id, channel, topic, event, "
    f"rule, ledger_seq, ledger_hash) VALUES ({', '.join([M] * 10)})"
)
app = Flask(__name__)
_connection = []


def _dbapi():
    if not _connection:  # one per worker, opened after gunicorn forked it
        raw = ENGINE.raw_connection()
        if SQLITE:
            for pragma in ("foreign_keys=ON", "busy_timeout=10000", "synchronous=NORMAL"):
                raw.cursor().execute(f"PRAGMA {pragma}")
        _connection.append(raw)
    return _connection[0]


def _time(value):
    # SQLite stores SQLAlchemy's text form; PostgreSQL takes the datetime.
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if SQLITE else value


@app.post("/api/v1/messages")
def messages():
    body = request.get_json()
    key = request.headers["Idempotency-Key"]
    digest = hashlib.sha256(request.headers["Authorization"][7:].encode()).hexdigest()
    connection = _dbapi()
    cursor = connection.cursor()
    cursor.execute(TOKEN_SQL, (digest,))
    row = cursor.fetchone()
    client_id, vendor_id = row[1], row[15]
    now = datetime.now(UTC)
    cursor.execute(STATEMENTS[0], (vendor_id, body["sub"]))
    user_id = cursor.fetchone()[0]
    parameters = [
        (vendor_id, key),
        (vendor_id, body["topic"]),
        (),
        (user_id,),
        (user_id,),
        (user_id, vendor_id),
        (user_id, vendor_id),
        (user_id,),
        (user_id, vendor_id, _time(now)),
        (user_id, vendor_id, _time(now - timedelta(days=7))),
        (user_id,),
    ]
    for statement, values in zip(STATEMENTS[1:], parameters, strict=True):
        cursor.execute(statement, values)
        cursor.fetchall()
    message_id = "msg_" + secrets.token_urlsafe(18)
    cursor.execute(
        INSERT_MESSAGE,
        (
            message_id, vendor_id, client_id, user_id, body["channel"], body["topic"],
            body["subject"].encode(), body["body"].encode(), "queued", _time(now), 0,
            "allow", "granted", "granted", 0, "0" * 64, key, "0" * 64, _time(now), _time(now),
        ),
    )
    cursor.execute(
        INSERT_LOG,
        (_time(now), vendor_id, user_id, message_id, body["channel"], body["topic"],
         "accepted", "granted", 0, "0" * 64),
    )
    connection.commit()
    cursor.close()
    response = jsonify({"id": message_id, "status": "queued"})
    response.status_code = 202
    return response
"""


@dataclass
class MessageRates:
    api: Rate
    bare_sql: Rate
    errors: dict[str, int]
    cpu_each: dict[str, float]
    round_ratios: list[float]
    worker: Rate
    smtplib: Rate
    database: str


@dataclass
class _World:
    app: Any
    client_id: str
    secret: str
    sub: str
    user_id: str
    vendor: Any


def _world(config: dict[str, Any]) -> _World:
    """Migrate; a vendor with a client (messages:send), a topic, a customer who agreed."""
    from consent.engine import State
    from vault import create_app
    from vault.accounts.operations import create_account
    from vault.consents.operations import ConsentChanges, TopicChoice, save_consents
    from vault.extensions import db
    from vault.oauth.models import Grant
    from vault.oauth.operations import remember_subject
    from vault.services import keys, passwords
    from vault.vendors.operations import create_client, create_vendor, declare_topic

    app = create_app(config)
    _migrate(app)
    with app.app_context():
        vendor = create_vendor(db.session, "Bench Shop")
        topic = declare_topic(db.session, vendor, "news", "marketing")
        new = create_client(
            db.session,
            vendor,
            redirect_uris=["http://127.0.0.1/cb"],
            scopes=["openid", "messages:send"],
        )
        user = create_account(
            db.session,
            keys(),
            passwords(),
            email="ada@bench.example",
            password="correct horse battery staple",
        )
        db.session.add(
            Grant(
                user_id=user.id,
                client_id=new.client.client_id,
                vendor_id=vendor.id,
                scope="openid",
            )
        )
        sub = remember_subject(db.session, keys(), vendor.id, user.id)
        save_consents(
            db.session,
            keys(),
            user.id,
            ConsentChanges(topics={(topic.id, "email"): TopicChoice(State.GRANTED)}),
        )
        db.session.commit()
        assert new.client_secret is not None
        world = _World(app, new.client.client_id, new.client_secret, sub, user.id, vendor.id)
    return world


def _access_token(world: _World) -> str:
    import base64

    basic = base64.b64encode(f"{world.client_id}:{world.secret}".encode()).decode()
    response = world.app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "messages:send"},
        headers={"Authorization": f"Basic {basic}"},
    )
    if response.status_code != 200:
        raise RuntimeError(f"client credentials failed: {response.get_data(as_text=True)}")
    return response.get_json()["access_token"]


def _post_request(token: str, sub: str) -> Callable[[], bytes]:
    body = json.dumps(
        {"sub": sub, "channel": "email", "topic": "news", "subject": "Hello", "body": "Hi!"}
    ).encode()

    def build() -> bytes:
        head = (
            "POST /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: {uuid.uuid4()}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    return build


def _post(port: int, request: bytes) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).startswith(b"HTTP/1.1 202")


def _load(port: int, build: Callable[[], bytes], seconds: float) -> tuple[Rate, int]:
    ok = [0] * CLIENT_THREADS
    errors = [0] * CLIENT_THREADS
    start = time.perf_counter()
    deadline = start + seconds

    def run(number: int) -> None:
        while time.perf_counter() < deadline:
            try:
                good = _post(port, build())
            except OSError:
                good = False
            if good:
                ok[number] += 1
            else:
                errors[number] += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Rate(max(sum(ok), 1), time.perf_counter() - start), sum(errors)


def _api(
    seconds: float, database_url: str | None
) -> tuple[dict[str, Rate], dict[str, int], dict[str, float], list[float], str]:
    from vault.crypto.keyring import Keyring

    target_context = _postgres_target(database_url) if database_url else _sqlite_target()
    with target_context as target, tempfile.TemporaryDirectory(prefix="vault-msg-") as tmp:
        directory = Path(tmp)
        config = {
            **bench_config(target, Keyring.generate().dumps()),
            "VAULT_API_RATE_LIMIT": "1000000 per minute",
            "VAULT_TOKEN_RATE_LIMIT": "1000000 per minute",
        }
        world = _world(config)
        build = _post_request(_access_token(world), world.sub)
        with world.app.app_context():
            from vault.extensions import db

            db.engine.dispose()
        (directory / "config.json").write_text(json.dumps(config))
        (directory / "vault_msg_wsgi.py").write_text(_VAULT_WSGI)
        (directory / "bare_msg_wsgi.py").write_text(_BARE_SQL_WSGI)
        env = {
            "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
            "VAULT_BENCH_CONFIG": str(directory / "config.json"),
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        }
        masters: list[int] = []
        with contextlib.ExitStack() as servers:
            ports = {
                "vault": servers.enter_context(
                    _gunicorn(directory, "vault_msg_wsgi", env, "vault", masters=masters)
                ),
                "bare + SQL": servers.enter_context(
                    _gunicorn(directory, "bare_msg_wsgi", env, "bare-sql", masters=masters)
                ),
            }
            master = dict(zip(ports, masters, strict=True))
            for name, port in ports.items():
                for _ in range(5):  # warm-up: every worker imports and connects
                    if not _post(port, build()):
                        raise RuntimeError(f"{name}: POST /api/v1/messages was not a 202")
            rounds: list[dict[str, Rate]] = []
            errors = dict.fromkeys(ports, 0)
            cpu = dict.fromkeys(ports, 0.0)
            order = list(ports)
            for _ in range(ROUNDS):
                this_round = {}
                for name in order:
                    before = _workers_cpu(master[name])
                    this_round[name], failed = _load(ports[name], build, seconds / ROUNDS)
                    cpu[name] += _workers_cpu(master[name]) - before
                    errors[name] += failed
                rounds.append(this_round)
                order.reverse()
        totals = {
            name: Rate(
                sum(r[name].operations for r in rounds), sum(r[name].seconds for r in rounds)
            )
            for name in ports
        }
        ratios = [r["vault"].per_second / r["bare + SQL"].per_second for r in rounds]
        cpu_each = {name: cpu[name] / totals[name].operations for name in ports}
        return totals, errors, cpu_each, ratios, target.description


class _Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def _raw_smtp(port: int, messages: list[bytes], recipient: str) -> Rate:
    start = time.perf_counter()
    connection = smtplib.SMTP("127.0.0.1", port, timeout=10)
    try:
        for message in messages:
            connection.sendmail("vault@bench.example", [recipient], message)
    finally:
        connection.quit()
    return Rate(len(messages), time.perf_counter() - start)


def _worker(database_url: str | None) -> tuple[Rate, Rate]:
    from aiosmtpd.controller import Controller

    from connectors.base import Message
    from connectors.email import SmtpConnector
    from connectors.mime import Sender, build_message
    from vault.crypto.keyring import Keyring
    from vault.extensions import db
    from vault.messages.operations import accept_message
    from vault.messages.worker import Worker
    from vault.models import utcnow
    from vault.services import keys
    from vault.vendors.models import Vendor

    target_context = _postgres_target(database_url) if database_url else _sqlite_target()
    with target_context as target:
        config = {**bench_config(target, Keyring.generate().dumps()), "VAULT_OUTBOX_BATCH": 50}
        world = _world(config)
        with world.app.app_context():
            vendor = db.session.get(Vendor, world.vendor)
            for number in range(QUEUED):
                accept_message(
                    db.session,
                    keys(),
                    vendor,
                    world.client_id,
                    world.user_id,
                    {
                        "sub": world.sub,
                        "channel": "email",
                        "topic": "news",
                        "subject": "Hello",
                        "body": f"Message {number} from the bench.",
                    },
                    str(uuid.uuid4()),
                    utcnow(),
                )
            db.session.commit()
        sender = Sender.parse(SENDER)
        ready = [
            build_message(
                Message(
                    "ada@bench.example",
                    "Hello",
                    f"Message {number} from the bench.\n",
                    sender_name="Bench Shop",
                    reference=f"msg_bench{number}",
                    unsubscribe_url="http://127.0.0.1:5000/unsubscribe/x",
                ),
                sender,
            ).as_bytes()
            for number in range(QUEUED)
        ]
        controller = Controller(_Sink(), hostname="127.0.0.1", port=_free_port())
        controller.start()
        try:
            port = controller.port
            before = _raw_smtp(port, ready, "ada@bench.example")
            worker = Worker(
                world.app, email=SmtpConnector.from_url(f"smtp://127.0.0.1:{port}", SENDER)
            )
            start = time.perf_counter()
            handled = worker.run_once()
            elapsed = time.perf_counter() - start
            after = _raw_smtp(port, ready, "ada@bench.example")
        finally:
            controller.stop()
        if worker.delivered != QUEUED or handled != QUEUED:
            raise RuntimeError(f"the worker delivered {worker.delivered} of {QUEUED}")
        with world.app.app_context():
            db.engine.dispose()
        raw = Rate(before.operations + after.operations, before.seconds + after.seconds)
        return Rate(QUEUED, elapsed), raw


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(seconds: float, database_url: str | None = None) -> MessageRates:
    rates, errors, cpu_each, ratios, description = _api(seconds, database_url)
    worker, raw = _worker(database_url)
    return MessageRates(
        rates["vault"],
        rates["bare + SQL"],
        errors,
        cpu_each,
        ratios,
        worker,
        raw,
        description,
    )


def report(result: MessageRates) -> list[str]:
    api_ratio = result.api.per_second / result.bare_sql.per_second
    worker_ratio = result.worker.per_second / result.smtplib.per_second
    spread = ", ".join(f"{r:.2f}" for r in result.round_ratios)
    return [
        f"messages ({result.database})",
        f"  POST /api/v1/messages accepted/s: vault {result.api.per_second:8.1f}   "
        f"bare Flask + same SQL {result.bare_sql.per_second:8.1f}   "
        f"ratio {api_ratio:.2f}x (goal >= 0.5x; rounds {spread})",
        f"    server CPU per request: vault {1000 * result.cpu_each['vault']:.2f} ms, "
        f"bare + SQL {1000 * result.cpu_each['bare + SQL']:.2f} ms; errors {result.errors}",
        f"  worker deliveries/s into an SMTP sink: vault worker "
        f"{result.worker.per_second:8.1f}   raw smtplib, one connection "
        f"{result.smtplib.per_second:8.1f}   ratio {worker_ratio:.2f}x (goal >= 0.5x)",
    ]
