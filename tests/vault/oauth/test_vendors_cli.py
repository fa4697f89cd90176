"""`vault vendors create`: onboarding a business from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.vault.oauth.conftest import Client
from vault.extensions import db
from vault.oauth.models import OAuthClient, secret_hash
from vault.vendors.models import ContactTopic, Vendor

VAULT_BIN = Path(sys.executable).with_name("vault")


def _create(app, *args: str):
    return app.test_cli_runner().invoke(args=["vendors", "create", *args])


def _counts(app) -> tuple[int, int, int]:
    with app.app_context():
        return (
            db.session.scalar(sa.select(sa.func.count()).select_from(Vendor)),
            db.session.scalar(sa.select(sa.func.count()).select_from(OAuthClient)),
            db.session.scalar(sa.select(sa.func.count()).select_from(ContactTopic)),
        )


def test_confidential_client_prints_its_secret_once_and_stores_only_a_hash(app):
    result = _create(
        app,
        "--name",
        "Acme Shop",
        "--redirect-uri",
        "https://shop.example/oauth/cb",
        "--redirect-uri",
        "http://127.0.0.1:8080/cb",
        "--scope",
        "openid",
        "--scope",
        "email",
        "--topic",
        "orders:service",
        "--topic",
        "news:marketing",
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) == {"vendor_id", "client_id", "client_secret"}
    assert len(printed["client_secret"]) >= 32

    with app.app_context():
        vendor = db.session.get(Vendor, printed["vendor_id"])
        assert vendor.name == "Acme Shop"
        client = db.session.get(OAuthClient, printed["client_id"])
        assert client.vendor_id == vendor.id
        assert client.redirect_uris == ["https://shop.example/oauth/cb", "http://127.0.0.1:8080/cb"]
        assert client.scope.split() == ["openid", "email"]
        assert not client.is_public
        assert client.secret_hash == secret_hash(printed["client_secret"])
        assert client.check_client_secret(printed["client_secret"])
        assert printed["client_secret"] not in repr(
            db.session.execute(sa.text("SELECT * FROM oauth_clients")).all()
        )
        assert {(t.name, t.purpose) for t in vendor.topics} == {
            ("orders", "service"),
            ("news", "marketing"),
        }


def test_public_client_has_no_secret(app):
    result = _create(
        app, "--name", "Mobile", "--redirect-uri", "https://app.example/cb", "--public"
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) == {"vendor_id", "client_id"}
    with app.app_context():
        client = db.session.get(OAuthClient, printed["client_id"])
        assert client.is_public
        assert client.secret_hash is None
        assert "client_credentials" not in client.grant_types
        # Defaults when no --scope is given.
        assert client.scope.split() == ["openid", "profile", "email"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--redirect-uri", "http://shop.example/cb"], "must use https"),
        (["--redirect-uri", "http://192.168.1.10/cb"], "must use https"),
        (["--redirect-uri", "http://localhost.attacker.example/cb"], "must use https"),
        (["--redirect-uri", "https://shop.example/cb#done"], "fragment"),
        (["--redirect-uri", "https://shop.example/cb#"], "fragment"),
        (["--redirect-uri", "https://*.shop.example/cb"], "wildcard"),
        (["--redirect-uri", "/cb"], "absolute"),
        (["--redirect-uri", "javascript:alert(1)"], "absolute"),
        (
            ["--redirect-uri", "https://shop.example/cb", "--redirect-uri", "http://shop.example/"],
            "must use https",
        ),
        (
            ["--redirect-uri", "https://shop.example/cb", "--scope", "admin"],
            "unknown scopes: admin",
        ),
        (
            ["--redirect-uri", "https://shop.example/cb", "--scope", "openid", "--scope", "emial"],
            "unknown scopes: emial",
        ),
        (["--redirect-uri", "https://shop.example/cb", "--topic", "news:spam"], "purpose must be"),
        (["--redirect-uri", "https://shop.example/cb", "--topic", "news"], "NAME:CATEGORY"),
        (
            ["--redirect-uri", "https://shop.example/cb", "--topic", "ok:service", "--topic", ":x"],
            "topic name has 1 to 64 characters",
        ),
    ],
    ids=[
        "http-remote",
        "http-private-ip",
        "http-localhost-lookalike",
        "fragment",
        "empty-fragment",
        "wildcard",
        "relative",
        "javascript",
        "second-uri-bad",
        "unknown-scope",
        "typo-scope",
        "bad-category",
        "topic-without-category",
        "topic-without-name",
    ],
)
def test_bad_input_is_refused_clearly_and_creates_nothing(app, args, message):
    result = _create(app, "--name", "Acme", *args)
    assert result.exit_code != 0
    assert "Error" in result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.stdout.strip() == ""  # nothing that looks like credentials
    assert _counts(app) == (0, 0, 0)


def test_blank_name_is_refused(app):
    result = _create(app, "--name", "   ", "--redirect-uri", "https://shop.example/cb")
    assert result.exit_code != 0
    assert "name" in result.output
    assert _counts(app) == (0, 0, 0)


def test_loopback_http_is_allowed_for_development(app):
    for uri in ("http://localhost:3000/cb", "http://127.0.0.1/cb", "http://[::1]:8000/cb"):
        result = _create(app, "--name", "Dev", "--redirect-uri", uri, "--public")
        assert result.exit_code == 0, (uri, result.output)


def test_created_client_works_in_a_real_authorization(vault):
    """What the command prints is all a vendor needs for the code flow."""
    redirect_uri = vault.base + "/cb/cli"
    result = _create(
        vault.app,
        "--name",
        "Cli Co",
        "--redirect-uri",
        redirect_uri,
        "--scope",
        "openid",
        "--scope",
        "email",
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    client = Client(
        printed["vendor_id"], printed["client_id"], printed["client_secret"], redirect_uri, "Cli Co"
    )
    customer = vault.customer(given_name="Ann")
    _, tokens = vault.connect(client, vault.browser(customer), "openid email")
    profile = vault.api(tokens["access_token"])
    assert profile.status_code == 200
    assert profile.json()["email"] == customer.email


def test_the_installed_vault_command(sqlite_database, keyring_text, tmp_path):
    """The console script itself, configured only through the environment."""
    env = {
        **os.environ,
        "VAULT_ENV": "testing",
        "VAULT_DATABASE_URL": sqlite_database.url,
        "VAULT_MASTER_KEY": keyring_text,
        "VAULT_SECRET_KEY": "s" * 48,
    }
    ok = subprocess.run(
        [
            VAULT_BIN,
            "vendors",
            "create",
            "--name",
            "Shell",
            "--redirect-uri",
            "https://s.example/cb",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert set(json.loads(ok.stdout)) == {"vendor_id", "client_id", "client_secret"}
    bad = subprocess.run(
        [VAULT_BIN, "vendors", "create", "--name", "Bad", "--redirect-uri", "http://s.example/cb"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert bad.returncode != 0
    assert "must use https" in bad.stderr
    assert bad.stdout == ""
    engine = sa.create_engine(sqlite_database.url)
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT name FROM vendors")).scalars().all()
    engine.dispose()
    assert names == ["Shell"]
