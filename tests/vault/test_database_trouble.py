"""Database trouble is a 503, never a 500 or a hang, and the vault recovers by itself
(issue 9, item 11).

Real trouble, no mocks: a PostgreSQL that is down (nothing listens), one that accepts TCP
connections and never answers (a socket server on loopback that holds them), a statement
blocked behind a lock, and a SQLite file that cannot be written. Each is asked through the
API (problem+json), a page (the styled error page) and the token endpoint (RFC 6749 JSON),
and must answer 503 with Retry-After within a few seconds; then the same app, unchanged,
answers normally once the database is back.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from tests.conftest import IN_CI, TestDatabase, _app_config
from tests.vault.oauth.conftest import Vault
from vault import create_app
from vault.extensions import db

CONSENT_SCOPES = "consent:read consent:check consent:request"
TIMEOUT = 2  # seconds: connect and statement timeouts of the app under trouble
PROMPT = TIMEOUT + 3  # an answer must come within this, never after gunicorn's 30 s
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


# --- live servers and the world they serve ------------------------------------------------------


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        with app.app_context():
            db.engine.dispose()


def _config(database: TestDatabase, keyring_text: str, **overrides: Any) -> dict[str, Any]:
    return _app_config(
        database,
        keyring_text,
        SESSION_COOKIE_SECURE=False,  # python-requests over http://127.0.0.1
        VAULT_LOGIN_RATE_LIMIT="1000 per minute",
        VAULT_DB_CONNECT_TIMEOUT=TIMEOUT,
        VAULT_DB_STATEMENT_TIMEOUT=TIMEOUT,
        VAULT_DB_POOL_TIMEOUT=TIMEOUT,
        **overrides,
    )


@dataclass
class World:
    """A business and a customer, with everything each holds to call the vault."""

    customer_token: str  # an access token from the authorization code flow
    browser: requests.Session  # the customer's logged-in browser
    client_id: str
    client_secret: str

    def api(self, base: str) -> requests.Response:
        return requests.get(
            base + "/api/v1/profile",
            headers={"Authorization": f"Bearer {self.customer_token}"},
            timeout=30,
        )

    def page(self, base: str) -> requests.Response:
        return self.browser.get(base + "/profile", timeout=30, allow_redirects=False)

    def token(self, base: str) -> requests.Response:
        return requests.post(
            base + "/oauth/token",
            data={"grant_type": "client_credentials", "scope": CONSENT_SCOPES},
            auth=(self.client_id, self.client_secret),
            timeout=30,
        )


def _build_world(app: Flask) -> World:
    with serving(app) as base:
        vault = Vault(app, base)
        shop = vault.vendor("Shop", scopes=("openid", "profile", *CONSENT_SCOPES.split()))
        person = vault.customer(given_name="Grace")
        browser = vault.browser(person)
        _, tokens = vault.connect(shop, browser, "openid profile")
    return World(tokens["access_token"], browser, shop.client_id, shop.client_secret)


# --- what a 503 must look like ------------------------------------------------------------------


def _timed(call: Any, base: str) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call(base)
    return response, time.monotonic() - started


def assert_unavailable(
    world: World, base: str, *, page: bool = True, prompt: float = PROMPT
) -> None:
    api, seconds = _timed(world.api, base)
    assert api.status_code == 503, api.text
    assert seconds < prompt, seconds
    assert api.headers["Content-Type"] == "application/problem+json"
    assert api.json()["type"].endswith("/database-unavailable")
    assert int(api.headers["Retry-After"]) > 0

    if page:
        html, seconds = _timed(world.page, base)
        assert html.status_code == 503, html.text
        assert seconds < prompt, seconds
        assert html.headers["Content-Type"].startswith("text/html")
        assert "Temporarily unavailable" in html.text
        assert "vault.css" in html.text  # the styled page, not werkzeug's bare one
        assert "Traceback" not in html.text
        assert "Retry-After" in html.headers

    oauth, seconds = _timed(world.token, base)
    assert oauth.status_code == 503, oauth.text
    assert seconds < prompt, seconds
    assert oauth.headers["Content-Type"] == "application/json"
    assert oauth.json()["error"] == "temporarily_unavailable"
    assert oauth.json()["error_description"]


def assert_serving(world: World, base: str) -> None:
    api = world.api(base)
    assert api.status_code == 200, api.text
    assert api.json()["given_name"] == "Grace"
    assert world.page(base).status_code == 200
    token = world.token(base)
    assert token.status_code == 200, token.text


# --- PostgreSQL down, PostgreSQL that never answers ----------------------------------------------


class Switchboard:
    """A TCP endpoint on loopback in front of the real PostgreSQL: ``proxy`` forwards,
    ``hold`` accepts connections and never answers, ``down()`` stops listening (connection
    refused) and ``up()`` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode = "proxy"
        self.frozen = False
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self.up()

    def up(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Like a server that stopped: nothing listens, every connection is dropped."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.drop_connections()

    def freeze(self) -> None:
        """Like a server that stopped answering: open connections stay open, but nothing
        comes back on them (the kernel still acknowledges), new ones are held."""
        self.mode = "hold"
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False
        self.mode = "proxy"
        self.drop_connections()  # what was swallowed while frozen cannot be replayed

    def drop_connections(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self._sockets.append(conn)
            if self.mode == "hold":
                continue  # accepted, never answered
            upstream = socket.create_connection(self.target)
            self._sockets.append(upstream)
            for source, sink in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not self.frozen:
                    sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def switchboard(database: TestDatabase) -> Iterator[Switchboard]:
    url = make_url(database.url)
    board = Switchboard((url.host or "127.0.0.1", url.port or 5432))
    yield board
    board.down()


def _through(database: TestDatabase, port: int) -> str:
    return make_url(database.url).set(port=port).render_as_string(hide_password=False)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_postgresql_that_never_answers_is_a_prompt_503_and_the_app_recovers(
    database, keyring_text, switchboard
):
    world = _build_world(create_app(_config(database, keyring_text)))
    switchboard.mode = "hold"
    app = create_app(
        _config(
            database, keyring_text, SQLALCHEMY_DATABASE_URI=_through(database, switchboard.port)
        )
    )
    with serving(app) as base:
        assert_unavailable(world, base)
        # Several at once: none waits for another, none hangs (this used to stall the site).
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda _: world.api(base), range(4)))
        assert [answer.status_code for answer in answers] == [503] * 4
        assert time.monotonic() - started < PROMPT + TIMEOUT

        switchboard.mode = "proxy"
        switchboard.drop_connections()
        assert_serving(world, base)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_postgresql_that_stops_answering_on_open_connections_is_a_503_and_recovers(
    database, keyring_text, switchboard
):
    """The pooled connections are open when the server freezes: no timeout of the server
    can end the wait, the vault's own watchdog (vault.database) does."""
    world = _build_world(create_app(_config(database, keyring_text)))
    app = create_app(
        _config(
            database, keyring_text, SQLALCHEMY_DATABASE_URI=_through(database, switchboard.port)
        )
    )
    with serving(app) as base:
        assert_serving(world, base)
        switchboard.freeze()
        # The ping on the open connection is cut, the new connection times out: both bounded.
        assert_unavailable(world, base, prompt=2 * TIMEOUT + 3)
        switchboard.thaw()
        assert_serving(world, base)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_postgresql_down_is_a_503_and_the_app_recovers_when_it_is_back(
    database, keyring_text, switchboard
):
    world = _build_world(create_app(_config(database, keyring_text)))
    app = create_app(
        _config(
            database, keyring_text, SQLALCHEMY_DATABASE_URI=_through(database, switchboard.port)
        )
    )
    with serving(app) as base:
        assert_serving(world, base)  # pooled connections exist, then the server goes away
        switchboard.down()
        assert_unavailable(world, base)
        switchboard.up()
        assert_serving(world, base)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_postgresql_on_a_closed_port_is_a_503_at_once(database, keyring_text):
    world = _build_world(create_app(_config(database, keyring_text)))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    app = create_app(  # starts although its database is unreachable
        _config(database, keyring_text, SQLALCHEMY_DATABASE_URI=_through(database, closed_port))
    )
    with serving(app) as base:
        assert_unavailable(world, base)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_statement_blocked_behind_a_lock_times_out_as_a_503(database, keyring_text):
    world = _build_world(create_app(_config(database, keyring_text)))
    app = create_app(_config(database, keyring_text))
    locker = database.engine()  # the suite's own connection: no timeouts
    with serving(app) as base:
        assert_serving(world, base)
        with locker.connect() as conn:
            conn.execute(sa.text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
            assert_unavailable(world, base)
            conn.rollback()  # the lock is released
        assert_serving(world, base)
    locker.dispose()


# --- SQLite that cannot be written ---------------------------------------------------------


def _set_read_only(path: Path, read_only: bool) -> None:
    """The file refuses writes; as root, for whom mode bits mean nothing, through the
    immutable attribute (ext4, xfs, btrfs)."""
    import os

    if os.geteuid() != 0:
        path.chmod(0o444 if read_only else 0o644)
        return
    result = subprocess.run(
        ["chattr", "+i" if read_only else "-i", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        message = f"cannot make {path} read-only as root: {result.stderr.strip()}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def test_a_read_only_sqlite_file_is_a_503_and_the_app_recovers_when_writable(
    sqlite_database, keyring_text
):
    world = _build_world(create_app(_config(sqlite_database, keyring_text)))
    path = Path(sqlite_database.url.removeprefix("sqlite:///"))
    app_config = _config(sqlite_database, keyring_text)
    # Everything the earlier app wrote is in the file itself, not only in its WAL.
    engine = sa.create_engine(sqlite_database.url)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    _set_read_only(path, True)
    try:
        app = create_app(app_config)  # reads work: it starts and checks its keys
        with serving(app) as base:
            # Reading pages still works; anything that writes cannot.
            assert world.page(base).status_code == 200
            assert_unavailable(world, base, page=False)
            token = CSRF.search(world.page(base).text).group(1)
            save = world.browser.post(
                base + "/profile",
                data={"csrf_token": token, "email": "grace@example.com", "given_name": "G"},
                timeout=30,
                allow_redirects=False,
            )
            assert save.status_code == 503, save.text
            assert "Temporarily unavailable" in save.text and "vault.css" in save.text

            _set_read_only(path, False)
            assert_serving(world, base)
    finally:
        _set_read_only(path, False)
