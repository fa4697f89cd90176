"""One customer's consent answer: its cost at 10,000 and at 1,000,000 customers of one
vendor, and its requests/s beside a bare Flask app running the same SQL, in one run.

The database is built by the migrations, then filled by bulk inserts written straight to
the tables through the DB-API (``executemany`` on SQLite, ``COPY`` on PostgreSQL; no ORM,
no argon2, no data keys: a consent answer reads none of them). Each customer has a user
row, a grant and the pairwise ``sub`` the first grant stores, and a mix of settings (topic
consents granted, withdrawn and expiring, a channel off, the vendor blocked, caps with a
send in the history, quiet hours, closed accounts). The tables are not analysed: SQLite
never analyses by itself, and PostgreSQL only once autovacuum gets there.

1. A vendor with 10,000 customers; its single-item check and ``GET /api/v1/consents/{sub}``
   are timed for random customers of it, through Flask's test client in this process (the
   whole request: token, limits, validation, subjects, snapshot, decide, JSON; no network).
2. A second vendor with 1,000,000 customers is added to the same tables; both vendors are
   then timed in alternating rounds, so that a shared machine's load falls on both alike.
3. The vault under ``gunicorn -w 2`` beside a bare Flask app, also ``gunicorn -w 2``, that
   answers the same two requests by running the very statements the vault ran for them
   (captured from the vault, with their parameters) through the DB-API and returning the
   vault's body: bench/oauth_api.py's load generator, rounds and CPU accounting.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import pickle
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from bench.consent_check import CHANNELS, TOPICS
from bench.oauth_api import (
    _VAULT_WSGI,
    WORKERS,
    _config,
    _gunicorn,
    _interleaved,
    _request,
)
from bench.profile_store import Target, _migrate, _postgres_target, _sqlite_target
from bench.timing import Rate

SMALL = 10_000
LARGE = 1_000_000
ROUNDS = 4
SAMPLE = 2_000  # distinct random customers asked about, per vendor
SCOPES = ["openid", "consent:check", "consent:read"]

# The baseline: bare Flask that runs, through the DB-API on one connection per worker, the
# statements the vault ran for the same request (captured with their parameters), commits
# as the vault's request does, and returns the vault's body. No OAuth logic, limits,
# validation, ORM or decide().
_BARE_REPLAY_WSGI = """\
import os
import pickle

from flask import Flask, Response

from bench.dbapi import connection

with open(os.environ["VAULT_BENCH_REPLAY"], "rb") as handle:
    REPLAY = pickle.load(handle)  # name -> ([(statement, parameters)], body)

app = Flask(__name__)


def _replay(name):
    statements, body = REPLAY[name]
    raw = connection()
    cursor = raw.cursor()
    for statement, parameters in statements:
        cursor.execute(statement, parameters)
        cursor.fetchall()
    raw.commit()
    cursor.close()
    return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})


@app.get("/")
def up():
    return "up"


@app.post("/api/v1/consents/check")
def check():
    return _replay("check")


@app.get("/api/v1/consents/<sub>")
def view(sub):
    return _replay("view")
"""


@dataclass
class SingleResult:
    database: str
    small: int
    large: int
    fill_seconds: dict[int, float]  # customers -> seconds to bulk-insert them
    rows: dict[int, int]  # customers -> rows inserted for them
    alone: dict[str, Rate]  # the small vendor, before the large one existed
    check: dict[int, Rate]  # customers -> single-item checks, alternating rounds
    view: dict[int, Rate]  # customers -> GET /api/v1/consents/{sub}, alternating rounds
    http: dict[str, Rate]  # under gunicorn: vault and bare, check and view
    errors: dict[str, int]
    cpu_each: dict[str, float]
    statements: dict[str, int]


# --- the fill -----------------------------------------------------------------------------


def _uid(kind: int, vendor: int, i: int) -> str:
    """Deterministic 36-character ids: the bench draws customers by number."""
    return f"{kind:08x}-0000-4000-{vendor:04x}-{i:012x}"


_COLUMNS = {
    "users": "id role status session_token totp_enabled recovery_code_hashes created_at",
    "oauth_grants": "id user_id client_id vendor_id scope created_at updated_at expires_at",
    "pairwise_subjects": "vendor_id sub user_id created_at",
    "topic_consents": "user_id topic_id channel vendor_id state expires_at notice_version "
    "source updated_at",
    "channel_settings": "user_id channel enabled updated_at",
    "vendor_preferences": "user_id vendor_id blocked cap_per_day cap_per_week updated_at",
    "messages": "id vendor_id client_id user_id channel topic body_ciphertext status not_before "
    "attempts decision rule reason ledger_seq ledger_hash idempotency_key request_hash "
    "created_at updated_at sent_at",
    "consent_preferences": "user_id quiet_start quiet_end timezone updated_at",
}


def _rows(
    vendor: int,
    vendor_id: str,
    client_id: str,
    topics: dict[str, str],
    count: int,
    subs: Callable[[str], str],
    db: Callable[[str, str, Any], Any],
) -> dict[str, Iterator[tuple[Any, ...]]]:
    """Row generators per table (columns as in ``_COLUMNS``) for ``count`` customers of
    one vendor. Values are the database's already: ``db(table, column, value)`` converts the
    few that need it (dates, booleans, JSON) once, not per row."""
    now = datetime.now().astimezone()
    at = db("users", "created_at", now)
    yesterday = db("oauth_grants", "expires_at", now - timedelta(days=1))
    in_a_month = db("topic_consents", "expires_at", now + timedelta(days=30))
    hours_ago = db("messages", "sent_at", now - timedelta(hours=3))
    yes, no = db("users", "totp_enabled", True), db("users", "totp_enabled", False)
    no_codes = db("users", "recovery_code_hashes", [])

    def users() -> Iterator[tuple[Any, ...]]:
        for i in range(count):
            status = "closed" if i % 97 == 0 else "active"
            yield _uid(0, vendor, i), "customer", status, _uid(2, vendor, i), no, no_codes, at

    def grants() -> Iterator[tuple[Any, ...]]:
        for i in range(count):
            user_id, expires = _uid(0, vendor, i), yesterday if i % 50 == 0 else None
            yield _uid(1, vendor, i), user_id, client_id, vendor_id, "openid", at, at, expires

    def subjects() -> Iterator[tuple[Any, ...]]:
        for i in range(count):
            user_id = _uid(0, vendor, i)
            yield vendor_id, subs(user_id), user_id, at

    def consents() -> Iterator[tuple[Any, ...]]:
        for i in range(count):
            user_id = _uid(0, vendor, i)
            chosen = []
            if i % 3 == 0:
                chosen += [("news", "email", "granted", None), ("news", "sms", "granted", None)]
            if i % 7 == 0:
                chosen.append(("orders", "phone", "withdrawn", None))
            if i % 2 == 1:
                chosen.append(("survey", "push", "granted", in_a_month))
            for topic, channel, state, expires in chosen:
                yield user_id, topics[topic], channel, vendor_id, state, expires, 1, "bench", at

    def channels() -> Iterator[tuple[Any, ...]]:
        for i in range(0, count, 13):
            yield _uid(0, vendor, i), "sms", no, at

    def preferences() -> Iterator[tuple[Any, ...]]:
        for i in range(count):
            if i % 17 == 0 or i % 19 == 0:
                day, week = (1, 3) if i % 19 == 0 else (None, None)
                blocked = yes if i % 17 == 0 else no
                yield _uid(0, vendor, i), vendor_id, blocked, day, week, at

    def sends() -> Iterator[tuple[Any, ...]]:
        # Delivered messages (what frequency caps count); the body is opaque bytes here.
        for i in range(0, count, 19):
            yield (
                f"msg-{vendor}-{i}",
                vendor_id,
                client_id,
                _uid(0, vendor, i),
                "email",
                "news",
                b"bench",
                "sent",
                hours_ago,
                1,
                "allow",
                "granted",
                "bench",
                0,
                "0" * 64,
                f"bench-{vendor}-{i}",
                "0" * 64,
                hours_ago,
                hours_ago,
                hours_ago,
            )

    def quiet() -> Iterator[tuple[Any, ...]]:
        for i in range(0, count, 5):
            yield _uid(0, vendor, i), "22:00", "07:00", "Europe/Berlin", at

    return {
        "users": users(),
        "oauth_grants": grants(),
        "pairwise_subjects": subjects(),
        "topic_consents": consents(),
        "channel_settings": channels(),
        "vendor_preferences": preferences(),
        "messages": sends(),
        "consent_preferences": quiet(),
    }


def _bulk_insert(raw: Any, dialect: str, table: str, rows: Iterator[tuple[Any, ...]]) -> int:
    """Rows straight into ``table``: one ``executemany`` (SQLite) or ``COPY`` (PostgreSQL)."""
    columns = _COLUMNS[table].split()
    count = 0

    def counted() -> Iterator[tuple[Any, ...]]:
        nonlocal count
        for row in rows:
            count += 1
            yield row

    cursor = raw.cursor()
    if dialect == "postgresql":
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in counted():
                copy.write_row(row)
    else:
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        cursor.executemany(sql, counted())
    cursor.close()
    return count


@dataclass
class Shop:
    number: int
    vendor_id: str
    client_id: str
    secret: str
    customers: int


def _shop(app: Flask, target: Target, number: int, customers: int) -> tuple[Shop, float, int]:
    """A vendor with a client, three topics and ``customers`` customers; (shop, seconds to
    insert the customers, rows inserted)."""
    from vault.extensions import db
    from vault.models import Base
    from vault.oauth.scopes import pairwise_sub
    from vault.services import keys
    from vault.vendors.operations import create_client, create_vendor, declare_topic

    with app.app_context():
        session = db.session
        vendor = create_vendor(session, f"Bench Shop {number}")
        new = create_client(
            session, vendor, redirect_uris=["http://127.0.0.1/callback"], scopes=SCOPES
        )
        topics = {name: declare_topic(session, vendor, name, p).id for name, p in TOPICS}
        session.commit()
        shop = Shop(number, vendor.id, new.client.client_id, new.client_secret or "", customers)
        # Give the session's connection back: the app's engine cuts one left quiet during
        # minutes of bulk insert (vault.database.Watchdog).
        session.close()
        secrets = keys()
        started = time.perf_counter()
        dialect = db.engine.dialect

        def convert(table: str, column: str, value: Any) -> Any:
            kind = Base.metadata.tables[table].c[column].type.dialect_impl(dialect)
            process = kind.bind_processor(dialect)
            return value if process is None else process(value)

        # A plain engine, not the app's: the vault's PostgreSQL engine cuts a connection
        # that stays quiet for long (vault.database.Watchdog), and one COPY is minutes.
        engine = sa.create_engine(target.url, **target.engine_options)
        raw = engine.raw_connection()
        try:
            rows = 0
            for name, generator in _rows(
                number,
                shop.vendor_id,
                shop.client_id,
                topics,
                customers,
                lambda user_id: pairwise_sub(secrets, shop.vendor_id, user_id),
                convert,
            ).items():
                rows += _bulk_insert(raw, dialect.name, name, generator)
            raw.commit()
        finally:
            raw.close()
            engine.dispose()
        seconds = time.perf_counter() - started
        db.engine.dispose()
    return shop, seconds, rows


# --- timing one customer's answer ---------------------------------------------------------


class Asker:
    """Single-item checks and views of random customers of one shop, through the test
    client of an app in this process."""

    def __init__(self, app: Flask, shop: Shop, token: str) -> None:
        from vault.oauth.scopes import pairwise_sub
        from vault.services import keys

        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {token}"}
        chooser = random.Random(shop.number)
        with app.app_context():
            secrets = keys()
            self.subs = [
                pairwise_sub(secrets, shop.vendor_id, _uid(0, shop.number, i))
                for i in chooser.sample(range(shop.customers), min(SAMPLE, shop.customers))
            ]
        self.bodies = [
            json.dumps(
                {"items": [{"sub": sub, "channel": CHANNELS[n % 5], "topic": TOPICS[n % 3][0]}]}
            ).encode()
            for n, sub in enumerate(self.subs)
        ]
        self.turn = 0

    def check(self) -> None:
        self.turn += 1
        response = self.client.post(
            "/api/v1/consents/check",
            data=self.bodies[self.turn % len(self.bodies)],
            headers={**self.headers, "Content-Type": "application/json"},
        )
        result = response.get_json()["results"][0] if response.status_code == 200 else {}
        if "outcome" not in result:
            raise RuntimeError(f"check failed: {response.status_code} {result}")

    def view(self) -> None:
        self.turn += 1
        sub = self.subs[self.turn % len(self.subs)]
        response = self.client.get(f"/api/v1/consents/{sub}", headers=self.headers)
        if response.status_code != 200:
            raise RuntimeError(f"view failed: {response.status_code}")


def _rounds(operations: dict[str, Callable[[], None]], seconds: float) -> dict[str, Rate]:
    """Each operation for ``seconds`` in all, in ``ROUNDS`` turns, alternating the order."""
    from bench.timing import run_for

    totals = {name: Rate(0, 0.0) for name in operations}
    order = list(operations)
    for _ in range(ROUNDS):
        for name in order:
            rate = run_for(seconds / ROUNDS, operations[name])
            total = totals[name]
            totals[name] = Rate(total.operations + rate.operations, total.seconds + rate.seconds)
        order.reverse()
    return totals


def _token_for(app: Flask, shop: Shop) -> str:
    """A client-credentials token with both consent scopes, from the vault's own endpoint."""
    import base64

    basic = base64.b64encode(f"{shop.client_id}:{shop.secret}".encode()).decode()
    response = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "consent:check consent:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    if response.status_code != 200:
        raise RuntimeError(f"client credentials failed: {response.get_data(as_text=True)}")
    return response.get_json()["access_token"]


# --- the same SQL through the DB-API --------------------------------------------------------


def _capture(app: Flask, asker: Asker) -> dict[str, tuple[list[tuple[str, Any]], bytes]]:
    """The statements (with parameters) the vault runs for one check and one view, and
    the body it answers: what the bare baseline replays."""
    from vault.extensions import db

    with app.app_context():
        engine = db.engine
    captured: dict[str, tuple[list[tuple[str, Any]], bytes]] = {}
    for name, path, method, body in (
        ("check", "/api/v1/consents/check", "POST", asker.bodies[0]),
        ("view", f"/api/v1/consents/{asker.subs[0]}", "GET", None),
    ):
        statements: list[tuple[str, Any]] = []

        def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            statements.append((statement, parameters))  # noqa: B023 (used before the next)

        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            response = asker.client.open(
                path,
                method=method,
                data=body,
                headers={**asker.headers, "Content-Type": "application/json"},
            )
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
        if response.status_code != 200:
            raise RuntimeError(f"{name}: {response.status_code}")
        captured[name] = (statements, response.get_data())
    return captured


def _http(
    target: Target, directory: Path, config: dict[str, Any], app: Flask, asker: Asker,
    seconds: float,
) -> tuple[dict[str, Rate], dict[str, int], dict[str, float], dict[str, int]]:  # fmt: skip
    replay = _capture(app, asker)
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "replay.pickle").write_bytes(pickle.dumps(replay))
    (directory / "vault_bench_wsgi.py").write_text(_VAULT_WSGI)
    (directory / "bare_replay_wsgi.py").write_text(_BARE_REPLAY_WSGI)
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "VAULT_BENCH_CONFIG": str(directory / "config.json"),
        "VAULT_BENCH_REPLAY": str(directory / "replay.pickle"),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    check_body = asker.bodies[0]
    headers = {**asker.headers, "Content-Type": "application/json"}
    check = _request("/api/v1/consents/check", headers, "POST", check_body)
    view = _request(f"/api/v1/consents/{asker.subs[0]}", asker.headers)
    masters: list[int] = []
    with contextlib.ExitStack() as servers:
        vault = servers.enter_context(
            _gunicorn(directory, "vault_bench_wsgi", env, "vault", masters=masters)
        )
        bare = servers.enter_context(
            _gunicorn(directory, "bare_replay_wsgi", env, "bare", masters=masters)
        )
        for port in (vault, bare):  # both answer 200 with the same body before timing
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("POST", "/api/v1/consents/check", body=check_body, headers=headers)
            answer = connection.getresponse()
            if answer.status != 200 or answer.read() != replay["check"][1]:
                raise RuntimeError(f"port {port}: check answered {answer.status}")
            connection.close()
        rates, errors, cpu, _ = _interleaved(
            {
                "vault check": (vault, check, masters[0]),
                "bare check": (bare, check, masters[1]),
                "vault view": (vault, view, masters[0]),
                "bare view": (bare, view, masters[1]),
            },
            seconds,
        )
    cpu_each = {name: cpu[name] / rates[name].operations for name in rates}
    counts = {name: len(statements) for name, (statements, _) in replay.items()}
    return rates, errors, cpu_each, counts


# --- the run ----------------------------------------------------------------------------------


def measure(
    seconds: float,
    database_url: str | None = None,
    small: int = SMALL,
    large: int = LARGE,
    progress: Callable[[str], None] = lambda message: None,
) -> SingleResult:
    from vault import create_app
    from vault.crypto.keyring import Keyring

    target_context = _postgres_target(database_url) if database_url else _sqlite_target()
    with target_context as target, tempfile.TemporaryDirectory(prefix="vault-single-") as tmp:
        config = _config(target, Keyring.generate().dumps())
        app = create_app(config)
        _migrate(app)
        progress(f"bulk insert: {small:,} customers of one vendor")
        little, small_seconds, small_rows = _shop(app, target, 1, small)
        small_asker = Asker(app, little, _token_for(app, little))
        progress(f"single check and view, {small:,} customers ({2 * seconds:g} s)")
        alone = _rounds({"check": small_asker.check, "view": small_asker.view}, seconds)
        progress(f"bulk insert: {large:,} customers of a second vendor")
        big, large_seconds, large_rows = _shop(app, target, 2, large)
        large_asker = Asker(app, big, _token_for(app, big))
        progress(f"single check and view at both sizes, alternating ({4 * seconds:g} s)")
        both = _rounds(
            {
                "check small": small_asker.check,
                "check large": large_asker.check,
                "view small": small_asker.view,
                "view large": large_asker.view,
            },
            2 * seconds,
        )
        progress(
            f"under gunicorn -w {WORKERS}: vault beside bare Flask + the same SQL, "
            f"{large:,}-customer vendor ({4 * seconds:g} s plus start-up)"
        )
        rates, errors, cpu_each, counts = _http(
            target, Path(tmp), config, app, large_asker, 4 * seconds
        )
        with app.app_context():
            from vault.extensions import db

            db.engine.dispose()
        return SingleResult(
            target.description,
            small,
            large,
            {small: small_seconds, large: large_seconds},
            {small: small_rows, large: large_rows},
            alone,
            {small: both["check small"], large: both["check large"]},
            {small: both["view small"], large: both["view large"]},
            rates,
            errors,
            cpu_each,
            counts,
        )
