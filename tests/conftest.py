"""Shared fixtures: real databases built by the migrations, apps, clients and a live server.

Every test that takes ``app`` runs twice: on SQLite and on the PostgreSQL server named by
``VAULT_TEST_DATABASE_URL``. Outside CI a missing PostgreSQL (or browser) skips with a
message that says what to install or set; in CI (``CI=true``) it fails the run instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from tests import factories
from tests.mailserver import MailServer
from vault import create_app
from vault.crypto.keyring import Keyring
from vault.models import Base

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = os.environ.get("VAULT_TEST_DATABASE_URL")
CHROMIUM = os.environ.get("VAULT_TEST_CHROMIUM", "/usr/bin/chromium")


def unavailable(reason: str) -> None:
    """Skip on a developer's machine, fail in CI: CI must never silently skip a backend."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this must not be skipped)", pytrace=False)
    pytest.skip(reason)


@dataclass
class TestDatabase:
    __test__ = False  # a fixture's value, not a test class, wherever it is imported

    backend: str
    url: str
    engine_options: dict[str, Any] = field(default_factory=dict)
    schema: str | None = None

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.url, **self.engine_options)


# --- the databases -------------------------------------------------------------------------


def _app_config(database: TestDatabase, keyring_text: str, **overrides: Any) -> dict[str, Any]:
    # Where no mail server is given (migrations), mail would go into instance/mail: only
    # apps built by the fixtures below send mail, to the loopback SMTP server.
    return {
        "VAULT_ENV": "testing",
        "SECRET_KEY": "test-secret-" + "x" * 40,
        "SQLALCHEMY_DATABASE_URI": database.url,
        "SQLALCHEMY_ENGINE_OPTIONS": dict(database.engine_options),
        "VAULT_MASTER_KEY": keyring_text,
        "VAULT_MASTER_KEY_FILE": None,
        # Cheap argon2 in tests; tests/vault/accounts/test_passwords.py checks the production
        # costs.
        "VAULT_ARGON2_TIME_COST": 1,
        "VAULT_ARGON2_MEMORY_COST": 1024,
        "VAULT_ARGON2_PARALLELISM": 1,
        "RATELIMIT_STORAGE_URI": "vault-memory://",
        **overrides,
    }


def _migrate(database: TestDatabase, keyring_text: str) -> None:
    import flask_migrate

    app = create_app(_app_config(database, keyring_text))
    with app.app_context():
        flask_migrate.upgrade()
        from vault.extensions import db

        db.engine.dispose()


@pytest.fixture(scope="session")
def keyring_text() -> str:
    return Keyring.generate().dumps()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory, keyring_text: str) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "vault.db"
    _migrate(TestDatabase("sqlite", f"sqlite:///{path}"), keyring_text)
    return path


@pytest.fixture(scope="session")
def postgres_schema(keyring_text: str) -> Iterator[TestDatabase]:
    if not PG_URL:
        unavailable(
            "PostgreSQL tests skipped: set VAULT_TEST_DATABASE_URL, e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
    # A schema of its own per test run, so parallel runs on one server never collide.
    schema = f"vault_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        unavailable(f"PostgreSQL at VAULT_TEST_DATABASE_URL is unreachable: {exc.orig}")
    database = TestDatabase(
        "postgresql",
        PG_URL,
        {"connect_args": {"options": f"-csearch_path={schema}"}},
        schema,
    )
    try:
        _migrate(database, keyring_text)
        yield database
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path: Path, keyring_text: str
) -> Iterator[TestDatabase]:
    """A freshly migrated, empty database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "vault.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield TestDatabase("sqlite", f"sqlite:///{path}")
        return
    database = request.getfixturevalue("postgres_schema")
    yield database
    # Empty every table but the ledger head, which the migration seeds and tests reset.
    tables = ", ".join(
        f'"{t.name}"' for t in Base.metadata.sorted_tables if t.name != "ledger_head"
    )
    engine = database.engine()
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} CASCADE"))
        conn.execute(sa.text(f"UPDATE ledger_head SET seq = 0, hash = '{'0' * 64}'"))
    engine.dispose()


@pytest.fixture
def sqlite_database(tmp_path: Path, sqlite_template: Path) -> TestDatabase:
    """SQLite only, for tests about one backend (browser walks, file-level checks)."""
    path = tmp_path / "vault.db"
    shutil.copyfile(sqlite_template, path)
    return TestDatabase("sqlite", f"sqlite:///{path}")


# --- apps and clients ----------------------------------------------------------------------


# --- mail ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[MailServer]:
    """A real SMTP server (aiosmtpd) on loopback for the whole run; see ``mailbox``."""
    with MailServer() as server:
        yield server


@pytest.fixture
def mailbox(smtp_server: MailServer) -> MailServer:
    """The loopback SMTP server, emptied for this test: every app the fixtures build sends
    its mail there (``VAULT_SMTP_URL``), and ``mailbox.only_to(address)`` reads it."""
    smtp_server.clear()
    return smtp_server


@pytest.fixture
def app_config(database: TestDatabase, keyring_text: str, mailbox: MailServer) -> dict[str, Any]:
    """Override in a test module to change settings (e.g. a tight rate limit)."""
    return _app_config(database, keyring_text, VAULT_SMTP_URL=mailbox.url)


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    """The app, with no context pushed: a pushed app context would share ``g`` (and so the
    CSRF token cache) across test-client requests. Use ``with app.app_context():``."""
    application = create_app(app_config)
    yield application
    with application.app_context():
        from vault.extensions import db

        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def customer(app: Flask) -> factories.CreatedUser:
    return factories.customer(app)


@pytest.fixture
def logged_in(client: FlaskClient, customer: factories.CreatedUser) -> FlaskClient:
    factories.log_in(client, customer.email, customer.password)
    return client


# --- a live server and a browser -------------------------------------------------------------


@pytest.fixture
def live_app(sqlite_database: TestDatabase, keyring_text: str, mailbox: MailServer) -> Flask:
    return create_app(_app_config(sqlite_database, keyring_text, VAULT_SMTP_URL=mailbox.url))


@pytest.fixture
def live_server(live_app: Flask) -> Iterator[str]:
    """The app on a real HTTP server on loopback, for browsers and OAuth client libraries."""
    server = make_server("127.0.0.1", 0, live_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        unavailable(
            f"browser tests skipped: no chromium at {CHROMIUM} "
            "(install Debian's chromium: apt-get install chromium chromium-driver)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()
