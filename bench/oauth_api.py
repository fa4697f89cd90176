"""``GET /api/v1/profile`` and the token endpoint under gunicorn, beside a bare Flask app.

The vault runs the way it is deployed: ``gunicorn -w 2`` on a migrated database (SQLite in a
temporary directory, or a schema of its own on PostgreSQL), with a vendor, a confidential
client and a customer with a complete profile. The access and refresh tokens come from the
real authorization code flow with PKCE, driven through Flask's test client. The baseline is
a bare Flask app with one JSON endpoint that returns the very same body, served by gunicorn
with the same options, measured in the same run by the same load generator.

The load generator is a few client threads on loopback; gunicorn's sync workers close the
connection after each response, so every request is a fresh TCP connection for both apps.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import http.client
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from bench.profile_store import (
    FULL_PROFILE_INPUT,
    Target,
    _migrate,
    _postgres_target,
    _sqlite_target,
    bench_config,
)
from bench.timing import Rate

WORKERS = 2
CLIENT_THREADS = 4
ROUNDS = 4
SCOPE = "openid profile email phone address interests"
REDIRECT_URI = "http://127.0.0.1/callback"

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
_FORM_ACTION = re.compile(r'action="(/oauth/authorize[^"]*)"')

_VAULT_WSGI = """\
import json
import os

from vault import create_app

with open(os.environ["VAULT_BENCH_CONFIG"]) as handle:
    app = create_app(json.load(handle))
"""

_BARE_WSGI = """\
import json
import os

from flask import Flask, jsonify

with open(os.environ["VAULT_BENCH_BODY"]) as handle:
    BODY = json.load(handle)

app = Flask(__name__)


@app.get("/api/v1/profile")
def profile():
    return jsonify(BODY)
"""


# The baseline of the goal: bare Flask that also runs the vault's three statements for a read
# (the token with its client, grant and customer by the token's hash, the customer's key and
# encrypted fields, one access-log row and its commit), compiled from the vault's own
# statements, through the DB-API on one connection per worker, with the vault's SQLite
# settings, and returns the same body: no OAuth logic, limits, crypto or ORM. What the vault
# costs beyond it is its own code, not the database work every read must do.
_BARE_SQL_WSGI = (
    _BARE_WSGI
    + """
import hashlib
import re
from datetime import UTC, datetime

from flask import request

from vault.oauth.server import _BEARER_TOKEN_QUERY
from vault.profile.operations import _PROFILE_QUERY

from bench.dbapi import ENGINE
from bench.dbapi import connection as _dbapi

MARK = "?" if ENGINE.dialect.name == "sqlite" else "%s"


def _sql(statement):
    # psycopg takes positional %s as well as named %(name)s; each statement has one value.
    return re.sub(r"%\\((\\w+)\\)s", "%s", str(statement.compile(dialect=ENGINE.dialect)))


TOKEN_SQL = _sql(_BEARER_TOKEN_QUERY)
PROFILE_SQL = _sql(_PROFILE_QUERY)
INSERT_SQL = (
    "INSERT INTO access_events (user_id, grant_id, vendor_id, client_id, claims, endpoint, at) "
    f"VALUES ({', '.join([MARK] * 7)})"
)
CLAIMS = json.dumps(sorted(name for name in BODY if name != "sub"))


@app.get("/api/v1/profile-sql")
def profile_sql():
    digest = hashlib.sha256(request.headers["Authorization"][7:].encode()).hexdigest()
    connection = _dbapi()
    cursor = connection.cursor()
    cursor.execute(TOKEN_SQL, (digest,))
    row = cursor.fetchone()
    client_id, user_id, grant_id, vendor_id = row[1], row[2], row[3], row[15]
    cursor.execute(PROFILE_SQL, (user_id,))
    cursor.fetchall()
    # SQLite stores the time as text; PostgreSQL takes the datetime.
    at = datetime.now(UTC)
    at = at.isoformat() if ENGINE.dialect.name == "sqlite" else at
    cursor.execute(
        INSERT_SQL, (user_id, grant_id, vendor_id, client_id, CLAIMS, "bench", at)
    )
    connection.commit()
    cursor.close()
    return jsonify(BODY)
"""
)


@dataclass
class ApiRates:
    api: Rate
    bare: Rate
    bare_sql: Rate
    errors: dict[str, int]
    cpu_each: dict[str, float]  # the server's CPU seconds per request (workers' user + system)
    # vault/baseline of each round, for the spread under a shared machine's changing load
    round_ratios: list[tuple[float, float]]
    token: Rate
    token_grant: str
    body_bytes: int
    database: str


def _config(target: Target, keyring_text: str) -> dict[str, Any]:
    # Rate limits far above what a benchmark reaches: the limiter still runs, it just never
    # says no.
    return {
        **bench_config(target, keyring_text),
        "VAULT_API_RATE_LIMIT": "1000000 per minute",
        "VAULT_TOKEN_RATE_LIMIT": "1000000 per minute",
    }


def _csrf(text: str) -> str:
    match = _CSRF.search(text)
    if not match:
        raise RuntimeError("no CSRF token in the page")
    return match.group(1)


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _tokens(config: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """Migrate, create vendor, client and customer, and run the code flow with PKCE.

    Returns the client's Basic authorization header and the first token response."""
    from vault import create_app
    from vault.accounts.operations import create_account
    from vault.extensions import db
    from vault.profile.schemas import ProfileSchema
    from vault.services import keys, passwords
    from vault.vendors.operations import create_client, create_vendor

    app = create_app(config)
    _migrate(app)
    email, password = "ada@example.com", "correct horse battery staple"
    with app.app_context():
        vendor = create_vendor(db.session, "Bench Ltd")
        new = create_client(db.session, vendor, redirect_uris=[REDIRECT_URI], scopes=SCOPE.split())
        profile = ProfileSchema().load({**FULL_PROFILE_INPUT, "email": email})
        create_account(
            db.session, keys(), passwords(), email=email, password=password, profile=profile
        )
        db.session.commit()
        client_id, secret = new.client.client_id, new.client_secret
        assert secret is not None

    browser = app.test_client()
    page = browser.get("/login")
    response = browser.post(
        "/login",
        data={
            "csrf_token": _csrf(page.get_data(as_text=True)),
            "email": email,
            "password": password,
        },
    )
    if response.status_code != 302:
        raise RuntimeError(f"login failed: {response.status_code}")
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    page = browser.get(f"/oauth/authorize?{query}")
    text = page.get_data(as_text=True)
    action = _FORM_ACTION.search(text)
    if page.status_code != 200 or not action:
        raise RuntimeError(f"no consent page: {page.status_code}")
    response = browser.post(
        html.unescape(action.group(1)),
        data={
            "csrf_token": _csrf(text),
            "decision": "approve",
            "approve_scope": re.findall(r'name="approve_scope" value="([^"]+)"', text),
            "duration": "1y",
        },
    )
    location = response.headers.get("Location", "")
    code = parse_qs(urlsplit(location).query).get("code")
    if response.status_code != 302 or not code:
        raise RuntimeError(f"consent did not redirect with a code: {response.status_code}")
    authorization = _basic(client_id, secret)
    response = app.test_client().post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code[0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        headers={"Authorization": authorization},
    )
    if response.status_code != 200:
        raise RuntimeError(f"code exchange failed: {response.get_data(as_text=True)}")
    with app.app_context():
        db.engine.dispose()
    return client_id, authorization, response.get_json()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _gunicorn(
    directory: Path,
    module: str,
    env: dict[str, str],
    name: str,
    workers: int = WORKERS,
    masters: list[int] | None = None,
) -> Iterator[int]:
    """``gunicorn -w 2`` (or ``workers``) serving ``module:app`` from ``directory``; yields
    its port (and appends the master's process id to ``masters``)."""
    port = _free_port()
    log = (directory / f"{name}.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(directory),
            f"{module}:app",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    if masters is not None:
        masters.append(process.pid)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn ({name}) exited: {(directory / f'{name}.log').read_text()}"
                )
            with contextlib.suppress(OSError):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/")
                connection.getresponse().read()
                connection.close()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn ({name}) did not start in 30 s")
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _get(port: int, request: bytes) -> bool:
    """One request on a fresh connection; True if the answer was 200."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).startswith(b"HTTP/1.1 200")


def _request(path: str, headers: dict[str, str], method: str = "GET", body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _load(port: int, request: bytes, seconds: float) -> tuple[Rate, int]:
    """``CLIENT_THREADS`` threads sending ``request`` for ``seconds``; (rate of 200s,
    errors)."""
    ok = [0] * CLIENT_THREADS
    errors = [0] * CLIENT_THREADS
    start = time.perf_counter()
    deadline = start + seconds

    def run(number: int) -> None:
        while time.perf_counter() < deadline:
            try:
                good = _get(port, request)
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


def _workers_cpu(master: int) -> float:
    """CPU seconds (user + system) the worker processes of a gunicorn master have used, from
    /proc (Linux): what the requests cost the server, whatever else the machine runs."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == master:  # ppid; utime and stime are fields 14 and 15
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _interleaved(
    targets: dict[str, tuple[int, bytes, int]], seconds: float
) -> tuple[dict[str, Rate], dict[str, int], dict[str, float], list[dict[str, Rate]]]:
    """Load each target for ``seconds`` in all, in ``ROUNDS`` turns one after the other
    (first to last, then last to first), so that a change of load on a shared machine falls
    on all of them alike. Returns the total rate and errors of each target, and the rates
    of each round; ``targets`` name (port, request, gunicorn master), and the workers' CPU
    seconds of each target are returned too."""
    for port, request, _ in targets.values():
        for _ in range(5):  # warm-up: every worker imports and connects
            _get(port, request)
    rounds: list[dict[str, Rate]] = []
    errors = dict.fromkeys(targets, 0)
    cpu = dict.fromkeys(targets, 0.0)
    order = list(targets)
    for _ in range(ROUNDS):
        this_round = {}
        for name in order:
            port, request, master = targets[name]
            before = _workers_cpu(master)
            this_round[name], failed = _load(port, request, seconds / ROUNDS)
            cpu[name] += _workers_cpu(master) - before
            errors[name] += failed
        rounds.append(this_round)
        order.reverse()  # whichever goes first in a round is slower: take turns
    totals = {
        name: Rate(sum(r[name].operations for r in rounds), sum(r[name].seconds for r in rounds))
        for name in targets
    }
    return totals, errors, cpu, rounds


def _refreshes(port: int, authorization: str, refresh_token: str, seconds: float) -> Rate:
    """Sequential refresh_token grants, each with the token the previous one returned
    (rotation: a refresh token is good once, so these cannot run in parallel)."""
    token = refresh_token

    def refresh() -> None:
        nonlocal token
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request(
                "POST",
                "/oauth/token",
                body=urlencode({"grant_type": "refresh_token", "refresh_token": token}),
                headers={
                    "Authorization": authorization,
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"refresh failed: {response.status} {body[:300]!r}")
        token = json.loads(body)["refresh_token"]

    from bench.timing import run_for

    return run_for(seconds, refresh)


def _check_logged(config: dict[str, Any], answered: int) -> None:
    """The SQL baseline really wrote its access-log rows (at least one per 200 counted)."""
    import sqlalchemy as sa

    engine = sa.create_engine(
        config["SQLALCHEMY_DATABASE_URI"], **config.get("SQLALCHEMY_ENGINE_OPTIONS", {})
    )
    try:
        with engine.connect() as connection:
            logged = connection.scalar(
                sa.text("SELECT count(*) FROM access_events WHERE endpoint = 'bench'")
            )
    finally:
        engine.dispose()
    if (logged or 0) < answered:
        raise RuntimeError(f"SQL baseline logged {logged} reads for {answered} answers")


def measure(seconds: float, database_url: str | None = None) -> ApiRates:
    from vault.crypto.keyring import Keyring

    target_context = _postgres_target(database_url) if database_url else _sqlite_target()
    with target_context as target, tempfile.TemporaryDirectory(prefix="vault-api-") as tmp:
        directory = Path(tmp)
        config = _config(target, Keyring.generate().dumps())
        _client_id, authorization, tokens = _tokens(config)
        (directory / "config.json").write_text(json.dumps(config))
        (directory / "vault_bench_wsgi.py").write_text(_VAULT_WSGI)
        (directory / "bare_bench_wsgi.py").write_text(_BARE_WSGI)
        (directory / "bare_sql_bench_wsgi.py").write_text(_BARE_SQL_WSGI)
        env = {
            "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
            "VAULT_BENCH_CONFIG": str(directory / "config.json"),
            "VAULT_BENCH_BODY": str(directory / "body.json"),
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        }
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        masters: list[int] = []
        with contextlib.ExitStack() as servers:
            port = servers.enter_context(
                _gunicorn(directory, "vault_bench_wsgi", env, "vault", masters=masters)
            )
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/api/v1/profile", headers=bearer)
            response = connection.getresponse()
            body = response.read()
            connection.close()
            if response.status != 200:
                raise RuntimeError(f"GET /api/v1/profile: {response.status} {body[:300]!r}")
            # The baselines answer with this very body: written before they start.
            (directory / "body.json").write_text(body.decode())
            bare_port = servers.enter_context(
                _gunicorn(directory, "bare_bench_wsgi", env, "bare", masters=masters)
            )
            bare_sql_port = servers.enter_context(
                _gunicorn(directory, "bare_sql_bench_wsgi", env, "bare-sql", masters=masters)
            )
            sql_request = _request("/api/v1/profile-sql", bearer)
            rates, errors, cpu, rounds = _interleaved(
                {
                    "vault": (port, _request("/api/v1/profile", bearer), masters[0]),
                    "bare": (bare_port, _request("/api/v1/profile", bearer), masters[1]),
                    "bare + SQL": (bare_sql_port, sql_request, masters[2]),
                },
                seconds,
            )
            token = _refreshes(port, authorization, tokens["refresh_token"], seconds)
        _check_logged(config, rates["bare + SQL"].operations)
        return ApiRates(
            rates["vault"],
            rates["bare"],
            rates["bare + SQL"],
            errors,
            {name: cpu[name] / rates[name].operations for name in rates},
            [
                (
                    r["vault"].per_second / r["bare + SQL"].per_second,
                    r["vault"].per_second / r["bare"].per_second,
                )
                for r in rounds
            ],
            token,
            "refresh_token",
            len(body),
            target.description,
        )
