"""Field encryption, data-key wrapping, keyrings and the blind index.

The unit tests exercise ``vault.crypto`` directly; the database tests copy ciphertexts
between real rows (SQLite and PostgreSQL) and show the vault refuses to read them.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests import factories
from vault.crypto import aead
from vault.crypto.aead import DecryptionError, FieldCipher
from vault.crypto.keyed_hash import blind_index, normalise_email
from vault.crypto.keyring import (
    KEYRING_FORMAT,
    Keyring,
    KeyringError,
    LocalKeyProvider,
    WrappedKey,
    provider_from_config,
    write_keyring_file,
)
from vault.extensions import db
from vault.keys.models import DataKey
from vault.keys.operations import cipher_for
from vault.profile.models import ProfileField
from vault.profile.operations import load_profile
from vault.services import keys

ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"


# --- field ciphertexts -----------------------------------------------------------------------


def test_field_round_trip_and_fresh_nonce_each_time():
    cipher = FieldCipher(aead.new_key(), ALICE)
    first = cipher.encrypt("given_name", b'"Zebulon"')
    second = cipher.encrypt("given_name", b'"Zebulon"')
    assert first != second  # random nonce: equal plaintexts do not show as equal ciphertexts
    assert b"Zebulon" not in first
    assert cipher.decrypt("given_name", first) == b'"Zebulon"'
    assert cipher.decrypt("given_name", second) == b'"Zebulon"'


def test_ciphertext_copied_to_another_customer_fails_even_under_the_same_key():
    # Same key bytes on purpose: only the associated data (the owner) differs, so this
    # proves the binding to the customer, not merely that another key fails.
    data_key = aead.new_key()
    blob = FieldCipher(data_key, ALICE).encrypt("email", b'"alice@example.com"')
    with pytest.raises(DecryptionError) as caught:
        FieldCipher(data_key, BOB).decrypt("email", blob)
    message = str(caught.value)
    assert "'email'" in message
    assert BOB in message
    assert "belongs to another customer or field" in message


def test_ciphertext_copied_to_another_field_fails():
    cipher = FieldCipher(aead.new_key(), ALICE)
    blob = cipher.encrypt("given_name", b'"Alice"')
    with pytest.raises(DecryptionError) as caught:
        cipher.decrypt("family_name", blob)
    assert "'family_name'" in str(caught.value)
    assert "belongs to another customer or field" in str(caught.value)


def test_other_data_key_fails():
    blob = FieldCipher(aead.new_key(), ALICE).encrypt("email", b"x")
    with pytest.raises(DecryptionError):
        FieldCipher(aead.new_key(), ALICE).decrypt("email", blob)


def test_every_tampered_byte_fails():
    cipher = FieldCipher(aead.new_key(), ALICE)
    blob = cipher.encrypt("phone_number", b'"+14155550123"')
    for position in range(len(blob)):  # version byte, nonce, body and tag alike
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionError, match="'phone_number'"):
            cipher.decrypt("phone_number", bytes(tampered))


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x01" + b"\x00" * 27, b"plaintext value"])
def test_truncated_or_foreign_blob_fails(blob):
    with pytest.raises(DecryptionError, match="'locale'"):
        FieldCipher(aead.new_key(), ALICE).decrypt("locale", blob)


def test_data_keys_must_be_256_bit():
    with pytest.raises(ValueError, match="256-bit"):
        FieldCipher(b"\x00" * 16, ALICE)


# --- wrapped data keys -----------------------------------------------------------------------


@pytest.fixture
def provider(keyring_text: str) -> LocalKeyProvider:
    return LocalKeyProvider.from_text(keyring_text)


def test_wrap_unwrap_round_trip(provider):
    data_key = aead.new_key()
    wrapped = provider.wrap(ALICE, data_key)
    assert wrapped.master_key_id == provider.current_key_id
    assert data_key not in wrapped.blob
    assert provider.unwrap(ALICE, wrapped) == data_key


def test_wrapped_key_copied_to_another_customer_fails(provider):
    wrapped = provider.wrap(ALICE, aead.new_key())
    with pytest.raises(DecryptionError) as caught:
        provider.unwrap(BOB, wrapped)
    assert BOB in str(caught.value)
    assert wrapped.master_key_id in str(caught.value)


def test_wrapped_key_relabelled_with_another_master_key_id_fails():
    keyring = Keyring.generate()
    other_id = "mk-other"
    keyring.master_keys[other_id] = keyring.master_keys[keyring.current]  # same bytes
    provider = LocalKeyProvider(keyring)
    wrapped = provider.wrap(ALICE, aead.new_key())
    with pytest.raises(DecryptionError):
        provider.unwrap(ALICE, WrappedKey(other_id, wrapped.blob))


def test_tampered_wrapped_key_fails(provider):
    wrapped = provider.wrap(ALICE, aead.new_key())
    blob = bytearray(wrapped.blob)
    blob[-1] ^= 0x80
    with pytest.raises(DecryptionError, match=ALICE):
        provider.unwrap(ALICE, WrappedKey(wrapped.master_key_id, bytes(blob)))


def test_unknown_master_key_id_is_a_clear_keyring_error(provider):
    wrapped = provider.wrap(ALICE, aead.new_key())
    with pytest.raises(KeyringError, match="'mk-gone' is not in the keyring"):
        provider.unwrap(ALICE, WrappedKey("mk-gone", wrapped.blob))


def test_another_keyring_cannot_unwrap(provider):
    wrapped = provider.wrap(ALICE, aead.new_key())
    stranger = LocalKeyProvider(Keyring.generate())
    with pytest.raises(KeyringError, match="not in the keyring"):
        stranger.unwrap(ALICE, wrapped)
    # And with the id faked to match, the other key's bytes still do not authenticate.
    with pytest.raises(DecryptionError):
        aead.unwrap_data_key(
            stranger._keyring.master_keys[stranger.current_key_id],
            wrapped.master_key_id,
            ALICE,
            wrapped.blob,
        )


# --- keyring documents -----------------------------------------------------------------------


def _b64(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode()


def _document(**changes: object) -> str:
    document: dict[str, object] = {
        "format": KEYRING_FORMAT,
        "current": "mk-a",
        "master_keys": {"mk-a": _b64(32)},
        "secrets": {"blind_index": _b64(32), "pseudonym": _b64(32)},
    }
    for name, value in changes.items():
        if value is _DROP:
            del document[name]
        else:
            document[name] = value
    return json.dumps(document)


_DROP = object()


def test_keyring_round_trip():
    keyring = Keyring.generate()
    parsed = Keyring.parse(keyring.dumps())
    assert parsed == keyring
    assert set(parsed.secrets) == {"blind_index", "pseudonym"}
    assert Keyring.parse(_document()).current == "mk-a"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "keyring is not JSON"),
        ("", "keyring is not JSON"),
        ("[1, 2]", f"JSON object with format {KEYRING_FORMAT!r}"),
        (_document(format="cmr-vault-keyring/0"), "with format"),
        (_document(format=_DROP), "with format"),
        (_document(master_keys={}), "no master_keys"),
        (_document(master_keys=_DROP), "no master_keys"),
        (_document(master_keys=["mk-a"]), "no master_keys"),
        (_document(master_keys={"mk-a": _b64(16)}), "master key 'mk-a' must be 32 bytes, not 16"),
        (_document(master_keys={"mk-a": _b64(33)}), "must be 32 bytes, not 33"),
        (_document(master_keys={"mk-a": "not base64!"}), "master key 'mk-a' is not valid base64"),
        (_document(master_keys={"mk-a": "clé"}), "master key 'mk-a' is not valid base64"),
        (_document(master_keys={"mk-a": 42}), "master key 'mk-a' must be a base64 string"),
        (_document(master_keys={"": _b64(32)}, current=""), "master key id '' must be 1 to 64"),
        (
            _document(master_keys={"k" * 65: _b64(32)}, current="k" * 65),
            "must be 1 to 64 characters",
        ),
        (_document(current="mk-b"), "current key is not among its master_keys"),
        (_document(current=_DROP), "current key is not among its master_keys"),
        (_document(current=["mk-a"]), "current key is not among its master_keys"),
        (_document(current={"mk-a": 1}), "current key is not among its master_keys"),
        (_document(secrets=_DROP), "keyring lacks secrets: blind_index, pseudonym"),
        (_document(secrets={"blind_index": _b64(32)}), "keyring lacks secrets: pseudonym"),
        (_document(secrets=["blind_index"]), "secrets must be an object"),
        (
            _document(secrets={"blind_index": _b64(8), "pseudonym": _b64(32)}),
            "secret 'blind_index' must be 32 bytes, not 8",
        ),
    ],
)
def test_keyring_parse_errors_are_clear(text, message):
    with pytest.raises(KeyringError) as caught:
        Keyring.parse(text)
    assert message in str(caught.value)


def test_keyring_error_never_echoes_key_material():
    secret = _b64(16)
    with pytest.raises(KeyringError) as caught:
        Keyring.parse(_document(master_keys={"mk-a": secret}))
    assert secret not in str(caught.value)


# --- key files -------------------------------------------------------------------------------


def test_written_key_file_is_private_and_loads(tmp_path: Path):
    path = tmp_path / "keys" / "master.key"
    keyring = Keyring.generate()
    write_keyring_file(path, keyring)
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temp file left
    provider = LocalKeyProvider.from_file(path)
    assert provider.current_key_id == keyring.current
    assert provider.path == path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int):
    path = tmp_path / "master.key"
    write_keyring_file(path, Keyring.generate())
    path.chmod(mode)
    with pytest.raises(KeyringError, match=r"readable by others \(chmod 600 it\)"):
        LocalKeyProvider.from_file(path)
    with pytest.raises(KeyringError, match="readable by others"):
        provider_from_config({"VAULT_MASTER_KEY": None, "VAULT_MASTER_KEY_FILE": str(path)})


def test_missing_key_file_says_how_to_create_one(tmp_path: Path):
    path = tmp_path / "absent.key"
    with pytest.raises(KeyringError, match=f"vault keys generate --file {path}"):
        LocalKeyProvider.from_file(path)


def test_no_master_key_configured():
    with pytest.raises(KeyringError, match="VAULT_MASTER_KEY or VAULT_MASTER_KEY_FILE"):
        provider_from_config({"VAULT_MASTER_KEY": None, "VAULT_MASTER_KEY_FILE": None})


def test_unknown_secret_name(provider):
    with pytest.raises(KeyringError, match="no secret 'nope'"):
        provider.secret("nope")


# --- blind index -----------------------------------------------------------------------------


def test_blind_index_ignores_case_and_surrounding_whitespace():
    key = aead.new_key()
    expected = blind_index(key, "alice.smith@example.com")
    for variant in (
        "Alice.Smith@Example.com",
        "ALICE.SMITH@EXAMPLE.COM",
        "  alice.smith@example.com\n",
        "\tAlice.Smith@example.COM ",
    ):
        assert blind_index(key, variant) == expected, variant
    assert len(expected) == 32
    assert normalise_email(" Alice@Example.COM ") == "alice@example.com"


def test_blind_index_differs_per_key_and_per_address():
    key, other_key = aead.new_key(), aead.new_key()
    email = "alice.smith@example.com"
    assert blind_index(key, email) != blind_index(other_key, email)
    assert blind_index(key, email) != blind_index(key, "alice.smith@example.org")
    assert email.encode() not in blind_index(key, email)


# --- at the database: rows copied between customers and fields ----------------------------


def _two_customers(app):
    alice = factories.customer(
        app, profile={"given_name": "Alice", "family_name": "Liddell", "locale": "en-GB"}
    )
    bob = factories.customer(app, profile={"given_name": "Bob", "family_name": "Builder"})
    return alice, bob


def _ciphertext(user_id: str, name: str) -> bytes:
    return db.session.scalars(
        select(ProfileField.ciphertext).where(
            ProfileField.user_id == user_id, ProfileField.name == name
        )
    ).one()


def _set_ciphertext(user_id: str, name: str, blob: bytes) -> None:
    db.session.execute(
        update(ProfileField)
        .where(ProfileField.user_id == user_id, ProfileField.name == name)
        .values(ciphertext=blob)
    )
    db.session.commit()


def test_row_copied_to_another_customer_does_not_decrypt(app):
    alice, bob = _two_customers(app)
    with app.app_context():
        assert load_profile(db.session, keys(), bob.id)["given_name"] == "Bob"
        _set_ciphertext(bob.id, "given_name", _ciphertext(alice.id, "given_name"))
    with app.app_context():
        with pytest.raises(DecryptionError) as caught:
            load_profile(db.session, keys(), bob.id)
        message = str(caught.value)
        assert "'given_name'" in message
        assert bob.id in message
        assert "belongs to another customer or field" in message
        # Alice's own row is untouched and still reads.
        assert load_profile(db.session, keys(), alice.id)["given_name"] == "Alice"


def test_row_copied_to_another_field_does_not_decrypt(app):
    alice, _ = _two_customers(app)
    with app.app_context():
        _set_ciphertext(alice.id, "given_name", _ciphertext(alice.id, "family_name"))
    with app.app_context():
        with pytest.raises(DecryptionError) as caught:
            load_profile(db.session, keys(), alice.id)
        assert "'given_name'" in str(caught.value)
        assert "belongs to another customer or field" in str(caught.value)


def test_row_moved_under_another_field_name_does_not_decrypt(app):
    # Renaming the row itself (its primary key) instead of copying the bytes.
    alice = factories.customer(app, profile={"given_name": "Alice"})
    with app.app_context():
        db.session.execute(
            update(ProfileField)
            .where(ProfileField.user_id == alice.id, ProfileField.name == "given_name")
            .values(name="nickname")
        )
        db.session.commit()
    with app.app_context(), pytest.raises(DecryptionError, match="'nickname'"):
        load_profile(db.session, keys(), alice.id)


def test_tampered_row_does_not_decrypt(app):
    alice = factories.customer(app, profile={"given_name": "Alice"})
    with app.app_context():
        blob = bytearray(_ciphertext(alice.id, "given_name"))
        blob[20] ^= 0x01
        _set_ciphertext(alice.id, "given_name", bytes(blob))
    with app.app_context(), pytest.raises(DecryptionError, match="'given_name'"):
        load_profile(db.session, keys(), alice.id)


def test_wrapped_key_copied_to_another_customer_row_does_not_unwrap(app):
    alice, bob = _two_customers(app)
    with app.app_context():
        alice_key = db.session.get(DataKey, alice.id)
        db.session.execute(
            update(DataKey)
            .where(DataKey.user_id == bob.id)
            .values(wrapped_key=alice_key.wrapped_key, master_key_id=alice_key.master_key_id)
        )
        db.session.commit()
    with app.app_context():
        with pytest.raises(DecryptionError) as caught:
            cipher_for(db.session, keys(), bob.id)
        assert f"data key of customer {bob.id} does not unwrap" in str(caught.value)
        with pytest.raises(DecryptionError):
            load_profile(db.session, keys(), bob.id)
        assert load_profile(db.session, keys(), alice.id)["family_name"] == "Liddell"
