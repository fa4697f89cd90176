"""Profile writes and reads through the vault's own operations, on a migrated database.

The database is built by the migrations (``flask_migrate.upgrade()``), like the test
suite's: a SQLite file in a temporary directory, or a schema of its own on a PostgreSQL
server that is dropped again afterwards.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from bench.timing import Rate, run_for
from vault import create_app
from vault.crypto.keyring import Keyring
from vault.profile.operations import PROFILE_CLAIMS, load_profile, save_profile
from vault.profile.schemas import ProfileSchema

CUSTOMERS = 50

# A complete profile: every claim filled in, validated by the same schema as the web form.
FULL_PROFILE_INPUT: dict[str, Any] = {
    "given_name": "Ada",
    "middle_name": "Augusta",
    "family_name": "Lovelace",
    "nickname": "Ada",
    "phone_number": "+14155550123",
    "address": {
        "street_address": "12 St James's Square",
        "locality": "London",
        "region": "Greater London",
        "postal_code": "SW1Y 4JH",
        "country": "United Kingdom",
    },
    "birthdate": "1985-12-10",
    "gender": "female",
    "locale": "en-GB",
    "zoneinfo": "Europe/London",
    "website": "https://example.com/ada",
    "interests": ["mathematics", "poetry", "engines", "horses"],
}


def _encode(value: Any) -> bytes:
    """The plaintext the vault seals for one claim (as vault.profile.operations does)."""
    if hasattr(value, "isoformat"):
        value = value.isoformat()
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class Target:
    """Where the benchmark database lives, in words for the report."""

    description: str
    url: str
    engine_options: dict[str, Any]


@contextlib.contextmanager
def _sqlite_target() -> Iterator[Target]:
    with tempfile.TemporaryDirectory(prefix="vault-bench-") as directory:
        path = Path(directory) / "vault.db"
        yield Target(
            f"SQLite {sqlite3.sqlite_version}, file in {directory}",
            f"sqlite:///{path}",
            {},
        )


@contextlib.contextmanager
def _postgres_target(url: str) -> Iterator[Target]:
    schema = f"vault_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            version = conn.execute(sa.text("SHOW server_version")).scalar()
        try:
            yield Target(
                f"PostgreSQL {version} at {admin.url.host or 'local socket'}, schema {schema}",
                url,
                {"connect_args": {"options": f"-csearch_path={schema}"}},
            )
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


def bench_config(target: Target, keyring_text: str) -> dict[str, Any]:
    """The test profile's settings (tests/conftest.py), with cheap argon2 for creating the
    customers: the production password cost is measured on its own."""
    return {
        "VAULT_ENV": "testing",
        "SECRET_KEY": "bench-secret-" + secrets.token_hex(24),
        "SQLALCHEMY_DATABASE_URI": target.url,
        "SQLALCHEMY_ENGINE_OPTIONS": dict(target.engine_options),
        "VAULT_MASTER_KEY": keyring_text,
        "VAULT_MASTER_KEY_FILE": None,
        "VAULT_ARGON2_TIME_COST": 1,
        "VAULT_ARGON2_MEMORY_COST": 1024,
        "VAULT_ARGON2_PARALLELISM": 1,
        "RATELIMIT_STORAGE_URI": "vault-memory://",
    }


def _app(target: Target, keyring_text: str) -> Flask:
    return create_app(bench_config(target, keyring_text))


def _migrate(app: Flask) -> None:
    import flask_migrate

    # Alembic's logging setup prints every migration step; keep it for errors only.
    log = io.StringIO()
    try:
        with contextlib.redirect_stderr(log), app.app_context():
            flask_migrate.upgrade()
    except BaseException:
        print(log.getvalue(), end="")
        raise


class ProfileStore:
    """A migrated database with ``CUSTOMERS`` customers whose profiles are complete."""

    def __init__(self, app: Flask, target: Target) -> None:
        self.app = app
        self.target = target
        self.values = ProfileSchema().load({**FULL_PROFILE_INPUT, "email": "x@example.com"})
        self.user_ids: list[str] = []

    def _setup(self) -> None:
        from vault.accounts.operations import create_account
        from vault.extensions import db
        from vault.services import keys, passwords

        with self.app.app_context():
            for number in range(CUSTOMERS):
                email = f"bench{number}@example.com"
                user = create_account(
                    db.session,
                    keys(),
                    passwords(),
                    email=email,
                    password="correct horse battery staple",
                    profile={**self.values, "email": email},
                )
                self.user_ids.append(user.id)
            db.session.commit()
            db.session.remove()

    def payloads(self) -> list[tuple[bytes, bytes]]:
        """(plaintext, associated data) of one full profile, byte for byte the sizes the
        vault seals: the baseline encrypts exactly these."""
        owner = self.user_ids[0]
        values = {**self.values, "email": "bench0@example.com"}
        return [
            (
                _encode(values[claim]),
                b"cmr-vault/field/v1\x00" + owner.encode() + b"\x00" + claim.encode(),
            )
            for claim in PROFILE_CLAIMS
            if values.get(claim)
        ]

    def measure_writes(self, seconds: float) -> Rate:
        """One write: fetch the customer, ``save_profile`` the full profile, commit; one
        session per write, like one web request."""
        from vault.accounts.models import User
        from vault.extensions import db
        from vault.services import keys

        customers = itertools.cycle(enumerate(self.user_ids))
        counter = itertools.count()

        def write() -> None:
            number, user_id = next(customers)
            user = db.session.get(User, user_id)
            assert user is not None
            values = {
                **self.values,
                "email": f"bench{number}@example.com",
                "nickname": f"Ada {next(counter)}",
            }
            save_profile(db.session, keys(), user, values)
            db.session.commit()
            db.session.remove()

        with self.app.app_context():
            return run_for(seconds, write)

    def measure_reads(self, seconds: float) -> Rate:
        """One read: ``load_profile`` (unwrap the data key, select, decrypt every field),
        one session per read."""
        from vault.extensions import db
        from vault.services import keys

        customers = itertools.cycle(self.user_ids)

        def read() -> None:
            profile = load_profile(db.session, keys(), next(customers))
            assert len(profile) == len(PROFILE_CLAIMS)
            db.session.remove()

        with self.app.app_context():
            return run_for(seconds, read)


@contextlib.contextmanager
def profile_store(database_url: str | None = None) -> Iterator[ProfileStore]:
    """A freshly migrated database (SQLite in a temporary directory by default) with its
    customers, removed again afterwards."""
    target_context = _postgres_target(database_url) if database_url else _sqlite_target()
    with target_context as target:
        app = _app(target, Keyring.generate().dumps())
        try:
            _migrate(app)
            store = ProfileStore(app, target)
            store._setup()
            yield store
        finally:
            from vault.extensions import db

            with app.app_context():
                db.session.remove()
                db.engine.dispose()
