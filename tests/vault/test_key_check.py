"""A wrong key is found at start (issue 9, item 12): the vault refuses to start with a
keyring that does not open it, and says why, instead of telling customers their password
is wrong or answering 500s. On SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import json
import shutil
from typing import Any

import pytest
import sqlalchemy as sa

from tests import factories
from tests.conftest import _app_config
from vault import create_app
from vault.crypto.keyring import Keyring, KeyringError, write_keyring_file
from vault.extensions import db
from vault.keys.check import KeyMismatch
from vault.keys.models import KeyCheck


def _start(app_config: dict[str, Any], keyring: Keyring | str) -> Any:
    text = keyring if isinstance(keyring, str) else keyring.dumps()
    app = create_app({**app_config, "VAULT_MASTER_KEY": text, "VAULT_MASTER_KEY_FILE": None})
    with app.app_context():
        db.engine.dispose()
    return app


def _flip_a_bit(key: bytes) -> bytes:
    return bytes([key[0] ^ 0x01]) + key[1:]


@pytest.fixture
def vault_with_data(app, keyring_text) -> Keyring:
    """A vault that has customers and a signing key, made with ``keyring_text``."""
    factories.customer(app, profile={"given_name": "Ada"})
    app.test_client().get("/oauth/jwks.json")  # creates the signing keys
    return Keyring.parse(keyring_text)


def test_the_first_start_records_the_check_and_the_next_starts_verify_it(app_config, keyring_text):
    app = _start(app_config, keyring_text)
    with app.app_context():
        row = db.session.get(KeyCheck, 1)
        assert row is not None and row.master_key_id == Keyring.parse(keyring_text).current
        # Neither the key nor a secret is in it.
        keyring = Keyring.parse(keyring_text)
        stored = row.wrapped_key + json.dumps(row.secret_checks).encode()
        for secret in [*keyring.master_keys.values(), *keyring.secrets.values()]:
            assert secret not in stored and base64.b64encode(secret) not in stored
        db.engine.dispose()
    _start(app_config, keyring_text)  # verified, no error


def test_another_vaults_keyring_is_refused_at_start(app, app_config, vault_with_data):
    other = Keyring.generate()
    with pytest.raises(KeyMismatch) as refused:
        _start(app_config, other)
    message = str(refused.value)
    assert vault_with_data.current in message  # the key the vault needs
    assert other.current in message  # the key it was given
    assert "VAULT_MASTER_KEY" in message


def test_a_damaged_master_key_is_refused_at_start(app, app_config, vault_with_data):
    damaged = vault_with_data.copy()
    damaged.master_keys[damaged.current] = _flip_a_bit(damaged.master_keys[damaged.current])
    with pytest.raises(KeyMismatch, match="damaged or belongs to another vault"):
        _start(app_config, damaged)


@pytest.mark.parametrize(
    ("secret", "consequence"), [("blind_index", "log in"), ("pseudonym", "subject")]
)
def test_another_keyed_hash_secret_is_refused_at_start(
    app, app_config, vault_with_data, secret, consequence
):
    wrong = vault_with_data.copy()
    wrong.secrets[secret] = _flip_a_bit(wrong.secrets[secret])
    with pytest.raises(KeyMismatch, match=secret) as refused:
        _start(app_config, wrong)
    assert consequence in str(refused.value)


def test_a_key_file_that_is_not_a_keyring_is_refused_with_a_message(app_config, tmp_path):
    path = tmp_path / "master.key"
    path.write_text(
        '{"format": "cmr-vault-keyring/1", "current": "mk-1", "master_keys": {"mk-1": "AAAA"}}'
    )
    path.chmod(0o600)
    with pytest.raises(KeyringError, match="must be 32 bytes"):
        create_app({**app_config, "VAULT_MASTER_KEY": None, "VAULT_MASTER_KEY_FILE": str(path)})


def test_a_vault_from_before_the_check_is_proved_on_its_data_keys(
    app, app_config, database, vault_with_data
):
    engine = database.engine()
    with engine.begin() as conn:
        conn.execute(sa.delete(KeyCheck.__table__))
    engine.dispose()
    with pytest.raises(KeyMismatch, match="data key"):
        _start(app_config, Keyring.generate())
    app = _start(app_config, vault_with_data)  # the right keyring records the check
    with app.app_context():
        assert db.session.get(KeyCheck, 1).master_key_id == vault_with_data.current
        db.engine.dispose()


def test_rotation_keeps_the_check_under_the_current_key(app_config, tmp_path):
    path = tmp_path / "master.key"
    write_keyring_file(path, Keyring.generate())
    before = Keyring.parse(path.read_text())
    config = {**app_config, "VAULT_MASTER_KEY": None, "VAULT_MASTER_KEY_FILE": str(path)}
    app = create_app(config)
    factories.customer(app)
    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    after = Keyring.parse(path.read_text())
    with app.app_context():
        assert db.session.get(KeyCheck, 1).master_key_id == after.current != before.current
        db.engine.dispose()
    create_app(config)  # the rotated file opens the vault
    with pytest.raises(KeyMismatch, match=before.current):
        _start(app_config, before)  # the old one no longer does


def test_a_database_unreachable_at_start_is_checked_before_the_first_request(
    sqlite_database, keyring_text, tmp_path
):
    """The app starts (it must serve once the database is back), and refuses to serve with
    a keyring that turns out not to be this vault's."""
    made_by_other_keys = _start(_app_config(sqlite_database, keyring_text), Keyring.generate())
    del made_by_other_keys
    later = tmp_path / "not-yet" / "vault.db"
    config = _app_config(
        sqlite_database, keyring_text, SQLALCHEMY_DATABASE_URI=f"sqlite:///{later}"
    )
    app = create_app(config)  # "unable to open database file": starts, check pending
    later.parent.mkdir()
    shutil.copyfile(sqlite_database.url.removeprefix("sqlite:///"), later)
    for path in ("/api/v1/profile", "/login", "/oauth/token"):
        response = app.test_client().get(path)
        assert response.status_code == 503, path
        assert "configur" in response.get_data(as_text=True)
    with app.app_context():
        db.engine.dispose()


def test_the_cli_refuses_a_wrong_key_with_a_message_not_a_traceback(
    app, database, vault_with_data, tmp_path
):
    from tests.vault.test_keys_rotation import _run_vault_cli

    path = tmp_path / "other.key"
    write_keyring_file(path, Keyring.generate())
    result = _run_vault_cli(database, path, "keys", "status")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "does not open this vault" in result.stderr
    assert str(path) in result.stderr
