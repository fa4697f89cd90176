"""`vault keys rotate` with a key file: re-wraps every data key, retires the old master key,
survives interruption, and running servers follow the rewritten file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from tests import factories
from vault import create_app
from vault.crypto import aead
from vault.crypto.aead import DecryptionError
from vault.crypto.keyring import (
    Keyring,
    KeyringError,
    LocalKeyProvider,
    write_keyring_file,
)
from vault.extensions import db
from vault.keys.models import DataKey
from vault.keys.operations import DataKeyShredded, cipher_for, rewrap_all
from vault.profile.models import ProfileField
from vault.profile.operations import load_profile
from vault.services import keys

VAULT = Path(sys.executable).with_name("vault")


@pytest.fixture
def keyring_path(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "master.key"
    write_keyring_file(path, Keyring.generate())
    return path


@pytest.fixture
def app_config(app_config: dict[str, Any], keyring_path: Path) -> dict[str, Any]:
    return {**app_config, "VAULT_MASTER_KEY": None, "VAULT_MASTER_KEY_FILE": str(keyring_path)}


def _profile(n: int) -> dict[str, Any]:
    return {"given_name": f"Person{n}", "family_name": f"Rotated{n}", "interests": [f"tag{n}"]}


def _customers(app: Flask, count: int) -> dict[str, dict[str, Any]]:
    """user id -> the profile it should decrypt to."""
    made = {}
    for n in range(count):
        user = factories.customer(app, profile=_profile(n))
        made[user.id] = {**_profile(n), "email": user.email}
    return made


def _key_ids_in_db(app: Flask) -> dict[str, int]:
    with app.app_context():
        return dict(
            db.session.execute(
                select(DataKey.master_key_id, func.count()).group_by(DataKey.master_key_id)
            ).all()
        )


def _field_ciphertexts(app: Flask) -> dict[tuple[str, str], bytes]:
    with app.app_context():
        return {
            (row.user_id, row.name): row.ciphertext
            for row in db.session.scalars(select(ProfileField))
        }


def _assert_reads(app: Flask, provider: LocalKeyProvider, expected: dict[str, dict]) -> None:
    with app.app_context():
        for user_id, profile in expected.items():
            assert load_profile(db.session, provider, user_id) == profile


def _run_vault_cli(database, keyring_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed `vault` command in its own process, configured by environment only."""
    url = make_url(database.url)
    if database.schema:
        url = url.update_query_dict({"options": f"-csearch_path={database.schema}"})
    env = {
        **os.environ,
        "VAULT_ENV": "testing",
        "VAULT_SECRET_KEY": "s" * 48,
        "VAULT_DATABASE_URL": url.render_as_string(hide_password=False),
        "VAULT_MASTER_KEY_FILE": str(keyring_path),
    }
    env.pop("VAULT_MASTER_KEY", None)
    return subprocess.run(
        [str(VAULT), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_rotate_rewraps_every_data_key_and_retires_the_old_master_key(app, database, keyring_path):
    expected = _customers(app, 3)
    old = Keyring.parse(keyring_path.read_text())
    assert _key_ids_in_db(app) == {old.current: 3}
    ciphertexts_before = _field_ciphertexts(app)
    # A "running server": this app's provider loaded the file before the rotation.
    server = LocalKeyProvider.from_file(keyring_path)
    _assert_reads(app, server, expected)

    result = _run_vault_cli(database, keyring_path, "keys", "rotate")
    assert result.returncode == 0, result.stderr

    report = json.loads(result.stdout)
    new = Keyring.parse(keyring_path.read_text())
    assert report == {"current": new.current, "retired": [old.current], "rewrapped": 3}
    assert "re-wrapping data keys" in result.stderr  # the progress bar, on stderr
    assert "re-wrapping" not in result.stdout  # stdout stays parseable JSON

    # The file holds the new key alone; the blind-index/pseudonym secrets did not change.
    assert new.current != old.current
    assert set(new.master_keys) == {new.current}
    assert new.master_keys[new.current] != old.master_keys[old.current]
    assert new.secrets == old.secrets
    assert keyring_path.stat().st_mode & 0o777 == 0o600

    # Every data key is under the new master key; field ciphertexts were not touched.
    assert _key_ids_in_db(app) == {new.current: 3}
    assert _field_ciphertexts(app) == ciphertexts_before

    # The data reads with the new file alone...
    _assert_reads(app, LocalKeyProvider.from_file(keyring_path), expected)
    _assert_reads(app, LocalKeyProvider(new), expected)
    # ...and the old keyring alone no longer can: not by id, and not by forcing its bytes.
    stale = LocalKeyProvider(old)
    with app.app_context():
        for user_id in expected:
            with pytest.raises(KeyringError, match="not in the keyring"):
                cipher_for(db.session, stale, user_id)
            row = db.session.get(DataKey, user_id)
            with pytest.raises(DecryptionError):
                aead.unwrap_data_key(
                    old.master_keys[old.current], row.master_key_id, user_id, row.wrapped_key
                )
    # The running server's provider followed the rewritten file by itself.
    assert server.current_key_id == new.current
    assert server.key_ids() == {new.current}
    _assert_reads(app, server, expected)
    # So does the app's own provider: it still reads, logs in and wraps new keys under the new key.
    _assert_reads(app, app.extensions["vault.keys"], expected)
    newcomer = factories.customer(app, profile={"given_name": "After"})
    factories.log_in(app.test_client(), newcomer.email, newcomer.password)
    assert _key_ids_in_db(app) == {new.current: 4}


def test_rotate_through_flask_cli_runner(app, keyring_path):
    expected = _customers(app, 2)
    old_id = Keyring.parse(keyring_path.read_text()).current
    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["retired"] == [old_id]
    assert report["rewrapped"] == 2
    assert "re-wrapping data keys" in result.stderr
    assert _key_ids_in_db(app) == {report["current"]: 2}
    _assert_reads(app, LocalKeyProvider.from_file(keyring_path), expected)

    status = app.test_cli_runner().invoke(args=["keys", "status"])
    assert json.loads(status.stdout) == {
        "current": report["current"],
        "master_keys": [report["current"]],
        "data_keys_by_master_key": {report["current"]: 2},
    }


class Interrupted(Exception):
    pass


def test_interrupted_rotation_finishes_when_run_again(app, database, keyring_path):
    expected = _customers(app, 5)
    old_id = Keyring.parse(keyring_path.read_text()).current

    def stop(done: int) -> None:
        raise Interrupted(done)

    with app.app_context():
        provider = keys()
        new_id = provider.begin_rotation()
        with pytest.raises(Interrupted):
            rewrap_all(db.session, provider, batch_size=2, on_progress=stop)
        db.session.rollback()

    # Half-way: both keys in the file, the first batch committed under the new key.
    halfway = Keyring.parse(keyring_path.read_text())
    assert halfway.current == new_id
    assert set(halfway.master_keys) == {old_id, new_id}
    assert _key_ids_in_db(app) == {new_id: 2, old_id: 3}
    _assert_reads(app, LocalKeyProvider.from_file(keyring_path), expected)

    # The operator simply runs the command again, in a new process.
    result = _run_vault_cli(database, keyring_path, "keys", "rotate")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"current": new_id, "retired": [old_id], "rewrapped": 3}

    final = Keyring.parse(keyring_path.read_text())
    assert final.current == new_id
    assert set(final.master_keys) == {new_id}
    assert _key_ids_in_db(app) == {new_id: 5}
    _assert_reads(app, LocalKeyProvider(final), expected)
    # The old key alone (as it was in the half-way file) no longer opens anything.
    old_only = LocalKeyProvider(
        Keyring(old_id, {old_id: halfway.master_keys[old_id]}, dict(halfway.secrets))
    )
    with app.app_context():
        for user_id in expected:
            with pytest.raises(KeyringError, match="not in the keyring"):
                cipher_for(db.session, old_only, user_id)


def test_rotation_with_nothing_to_rewrap(app, keyring_path):
    old_id = Keyring.parse(keyring_path.read_text()).current
    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["retired"] == [old_id]
    assert report["rewrapped"] == 0
    assert set(Keyring.parse(keyring_path.read_text()).master_keys) == {report["current"]}


def test_rotating_twice_keeps_everything_readable(app, keyring_path):
    expected = _customers(app, 2)
    runner = app.test_cli_runner()
    first = json.loads(runner.invoke(args=["keys", "rotate"]).stdout)
    second = json.loads(runner.invoke(args=["keys", "rotate"]).stdout)
    assert second["retired"] == [first["current"]]
    assert second["rewrapped"] == 2
    assert _key_ids_in_db(app) == {second["current"]: 2}
    _assert_reads(app, LocalKeyProvider.from_file(keyring_path), expected)


def test_env_var_provider_cannot_rotate_and_says_why(database, app_config, keyring_text):
    app = create_app(
        {**app_config, "VAULT_MASTER_KEY": keyring_text, "VAULT_MASTER_KEY_FILE": None}
    )
    try:
        expected = _customers(app, 1)
        before = _key_ids_in_db(app)
        result = app.test_cli_runner().invoke(args=["keys", "rotate"])
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        assert "Error: the master key comes from VAULT_MASTER_KEY" in result.stderr
        assert "VAULT_MASTER_KEY_FILE" in result.stderr
        assert "--add-to" not in result.stderr  # no advice to use an option that does not exist
        assert _key_ids_in_db(app) == before
        _assert_reads(app, LocalKeyProvider.from_text(keyring_text), expected)
    finally:
        with app.app_context():
            db.engine.dispose()


def test_a_second_rotation_at_the_same_time_is_refused(app, keyring_path):
    expected = _customers(app, 2)
    holder = LocalKeyProvider.from_file(keyring_path)
    before = keyring_path.read_text()
    with holder.rotation_lock():
        result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 1
    assert "another key rotation" in result.stderr
    assert keyring_path.read_text() == before  # no key was added
    assert set(_key_ids_in_db(app)) == {Keyring.parse(before).current}
    # Once the lock is released, rotation proceeds.
    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    _assert_reads(app, LocalKeyProvider.from_file(keyring_path), expected)


# --- running servers and the rewritten file ---------------------------------------------------


def test_server_loaded_before_rotation_reloads_the_file(app, keyring_path):
    expected = _customers(app, 3)
    server = LocalKeyProvider.from_file(keyring_path)  # started before the rotation
    old_id = server.current_key_id

    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    new_id = json.loads(result.stdout)["current"]

    assert server.current_key_id == new_id
    assert old_id not in server.key_ids()
    _assert_reads(app, server, expected)
    wrapped = server.wrap("someone", aead.new_key())
    assert wrapped.master_key_id == new_id


def test_reload_notices_a_rewrite_even_with_an_unchanged_timestamp(tmp_path: Path):
    # Coarse file-system clocks can give two writes the same mtime; the atomic replace
    # still gives the file a new identity, and the provider must notice.
    path = tmp_path / "master.key"
    write_keyring_file(path, Keyring.generate())
    server = LocalKeyProvider.from_file(path)
    first = server.current_key_id
    stat = path.stat()

    replacement = Keyring.generate()
    write_keyring_file(path, replacement)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns

    assert server.current_key_id == replacement.current != first


def test_server_mid_rotation_unwraps_both_old_and_new(app, keyring_path):
    expected = _customers(app, 4)
    server = LocalKeyProvider.from_file(keyring_path)

    def stop(done: int) -> None:
        raise Interrupted(done)

    with app.app_context():
        rotating = keys()
        new_id = rotating.begin_rotation()
        with pytest.raises(Interrupted):
            rewrap_all(db.session, rotating, batch_size=2, on_progress=stop)
    # Mixed state: a server must read keys under both master keys and wrap new ones under
    # the new key, or the rotation's final check would find a key left behind.
    assert len(_key_ids_in_db(app)) == 2
    _assert_reads(app, server, expected)
    assert server.wrap("someone", aead.new_key()).master_key_id == new_id


def test_shredded_key_is_reported_not_unwrapped(app):
    user = factories.customer(app)
    with app.app_context():
        db.session.delete(db.session.get(DataKey, user.id))
        db.session.commit()
        with pytest.raises(DataKeyShredded, match=user.id):
            cipher_for(db.session, keys(), user.id)


def test_rotation_stops_at_a_key_that_does_not_unwrap_and_retires_nothing(app, keyring_path):
    # A wrapped key copied onto another customer's row must stop the rotation, not be
    # silently re-wrapped, and the old master key must stay to investigate with.
    alice, bob = _customers(app, 2)
    with app.app_context():
        db.session.get(DataKey, bob).wrapped_key = db.session.get(DataKey, alice).wrapped_key
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code != 0
    assert isinstance(result.exception, DecryptionError)
    assert bob in str(result.exception)
    keyring = Keyring.parse(keyring_path.read_text())
    assert len(keyring.master_keys) == 2
    assert load_profile_with(app, keyring_path, alice)["given_name"] == _profile(0)["given_name"]


def load_profile_with(app: Flask, keyring_path: Path, user_id: str) -> dict[str, Any]:
    with app.app_context():
        return load_profile(db.session, LocalKeyProvider.from_file(keyring_path), user_id)
