"""Start-up and configuration errors are clear messages, not tracebacks; the `vault`
command works before there is any configuration; README's commands work as pasted
(issue 9, item 13)."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
from pathlib import Path

from werkzeug.serving import make_server

from tests import factories
from tests.vault.oauth.conftest import Client, Vault, query_of
from vault import create_app
from vault.crypto.keyring import Keyring
from vault.extensions import db

VAULT = Path(sys.executable).with_name("vault")
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the source checkout


def _bare_environment(**extra: str) -> dict[str, str]:
    """A shell with nothing of the vault configured, as on a fresh machine."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        **extra,
    }


def _vault(*args: str, cwd: Path, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VAULT), *args],
        env=_bare_environment(**environment),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_works_without_any_configuration(tmp_path):
    for profile in ({}, {"VAULT_ENV": "production"}):
        result = _vault("--help", cwd=tmp_path, **profile)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and "Error" not in result.stderr
        for command in ("users", "keys", "vendors", "ledger", "db"):
            assert re.search(rf"^\s+{command}\s", result.stdout, re.M), result.stdout
    assert _vault("keys", "--help", cwd=tmp_path).returncode == 0


def test_keys_generate_works_in_production_before_any_key_exists(tmp_path):
    path = tmp_path / "secrets" / "master.key"
    result = _vault("keys", "generate", "--file", str(path), cwd=tmp_path, VAULT_ENV="production")
    assert result.returncode == 0, result.stderr
    assert path.stat().st_mode & 0o077 == 0
    Keyring.parse(path.read_text())


def test_a_command_in_an_unconfigured_production_says_what_to_set(tmp_path):
    result = _vault("keys", "status", cwd=tmp_path, VAULT_ENV="production")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot start" in result.stderr
    for setting in ("VAULT_SECRET_KEY", "VAULT_MASTER_KEY_FILE", "VAULT_ISSUER"):
        assert setting in result.stderr


def test_a_key_file_that_is_no_keyring_is_a_message(tmp_path):
    path = tmp_path / "master.key"
    path.write_text("not json")
    path.chmod(0o600)
    result = _vault(
        "keys",
        "status",
        cwd=tmp_path,
        VAULT_ENV="testing",
        VAULT_SECRET_KEY=secrets.token_urlsafe(48),
        VAULT_DATABASE_URL=f"sqlite:///{tmp_path / 'vault.db'}",
        VAULT_MASTER_KEY_FILE=str(path),
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "keyring is not JSON" in result.stderr


def _readme_block(heading: str) -> str:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split(heading, 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_readme_try_the_oauth_flow_works_as_pasted(tmp_path):
    """After `make run` (which migrates with VAULT_ENV=development), the README's command,
    pasted into a second shell that has no VAULT_ENV, prints a client that a real OAuth
    client library can use against discovery."""
    # What `make run` leaves behind, with its files redirected into tmp_path so the test
    # does not touch the checkout's instance folder.
    files = {
        "VAULT_DATABASE_URL": f"sqlite:///{tmp_path / 'vault.db'}",
        "VAULT_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "VAULT_SECRET_KEY": secrets.token_urlsafe(48),
    }
    upgrade = _vault("db", "upgrade", cwd=PROJECT_ROOT, VAULT_ENV="development", **files)
    assert upgrade.returncode == 0, upgrade.stderr

    command = _readme_block("### Try the OAuth flow locally")
    pasted = subprocess.run(
        ["bash", "-e", "-c", command],
        env=_bare_environment(**files),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert pasted.returncode == 0, pasted.stderr
    printed = json.loads(pasted.stdout)
    redirect_uri = re.search(r"--redirect-uri (\S+)", command).group(1)

    app = create_app(
        {
            "VAULT_ENV": "development",
            "SQLALCHEMY_DATABASE_URI": files["VAULT_DATABASE_URL"],
            "VAULT_MASTER_KEY_FILE": files["VAULT_MASTER_KEY_FILE"],
            "SECRET_KEY": files["VAULT_SECRET_KEY"],
            "SESSION_COOKIE_SECURE": False,  # python-requests over http://127.0.0.1
            "VAULT_ARGON2_TIME_COST": 1,
            "VAULT_ARGON2_MEMORY_COST": 1024,
            "VAULT_ARGON2_PARALLELISM": 1,
        }
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        vault = Vault(app, f"http://127.0.0.1:{server.server_port}")
        client = Client(
            printed["vendor_id"],
            printed["client_id"],
            printed["client_secret"],
            redirect_uri,
            "Demo Shop",
        )
        person = factories.customer(app, profile={"given_name": "Demo"})
        auth = vault.authorization(client, "openid profile email")
        browser = vault.browser(person)
        page = vault.consent_page(browser, auth.url)
        assert "Demo Shop" in page.text
        response = vault.decide(browser, page)
        assert response.status_code == 302, response.text
        location = response.headers["Location"]
        assert location.startswith(redirect_uri) and "code" in query_of(location)
        tokens = vault.exchange(auth, location)
        claims = vault.api(tokens["access_token"]).json()
        assert claims["given_name"] == "Demo" and claims["email"] == person.email
    finally:
        server.shutdown()
        thread.join(timeout=5)
        with app.app_context():
            db.engine.dispose()


def test_gunicorn_prints_the_refusal_and_stops(tmp_path):
    gunicorn = Path(sys.executable).with_name("gunicorn")
    result = subprocess.run(
        [str(gunicorn), "--chdir", str(PROJECT_ROOT), "-w", "1", "-b", "127.0.0.1:0", "wsgi:app"],
        env=_bare_environment(VAULT_ENV="production"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "CMR Vault cannot start." in result.stderr
    assert "VAULT_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
