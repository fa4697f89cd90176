"""Account deletion through the web form is crypto-shredding: the wrapped data key goes.

What this proves, and what it does not: once the vault deletes the wrapped data key, no key
the vault still holds opens the customer's field ciphertexts (a "backup" of the profile
rows taken before deletion included). A backup that also kept the *wrapped data key* is
still openable with the master key until the master key is rotated; the last test shows
that rotation is what completes the shredding of such backups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests import factories
from vault.accounts.models import AccountStatus, User
from vault.crypto.aead import DecryptionError, FieldCipher
from vault.crypto.keyring import (
    Keyring,
    KeyringError,
    LocalKeyProvider,
    WrappedKey,
    write_keyring_file,
)
from vault.extensions import db
from vault.keys.models import DataKey
from vault.keys.operations import DataKeyShredded, cipher_for, rotate_master_key
from vault.profile.models import ProfileField
from vault.profile.operations import load_profile
from vault.services import keys

PROFILE = {
    "given_name": "Ermengarde",
    "family_name": "Shredwell",
    "phone_number": "+14155550123",
    "address": {"locality": "Oslo", "country": "Norway"},
    "interests": ["origami"],
}


@pytest.fixture
def customer(app) -> factories.CreatedUser:
    """The logged-in customer of this module has a full profile to lose."""
    return factories.customer(app, profile=PROFILE)


@pytest.fixture
def bystander(app) -> factories.CreatedUser:
    return factories.customer(app, profile={"given_name": "Bystander"})


@dataclass(frozen=True)
class Backup:
    """What a database backup taken before deletion holds for one customer."""

    master_key_id: str
    wrapped_key: bytes
    fields: dict[str, bytes]


def _backup(app, user_id: str) -> Backup:
    with app.app_context():
        row = db.session.get(DataKey, user_id)
        fields = {
            f.name: f.ciphertext
            for f in db.session.scalars(select(ProfileField).where(ProfileField.user_id == user_id))
        }
        return Backup(row.master_key_id, row.wrapped_key, fields)


def _state(app, user_id: str) -> dict[str, Any]:
    with app.app_context():
        user = db.session.get(User, user_id)
        data_key = db.session.get(DataKey, user_id)
        return {
            "status": user.status,
            "email_index": user.email_index,
            "password_hash": user.password_hash,
            "session_token": user.session_token,
            "data_key": None
            if data_key is None
            else (data_key.master_key_id, data_key.wrapped_key),
            "fields": {
                f.name: f.ciphertext
                for f in db.session.scalars(
                    select(ProfileField).where(ProfileField.user_id == user_id)
                )
            },
        }


def _delete(client, **data: str):
    return factories.post_form(client, "/account/delete", data)


def _login_status(app, email: str, password: str) -> int:
    client = app.test_client()
    return factories.post_form(client, "/login", {"email": email, "password": password}).status_code


def _field_error(html: str, field: str) -> str:
    match = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', html)
    assert match, f"no error shown beside {field}:\n{html}"
    return match.group(1)


# --- deleting with the right password ---------------------------------------------------------


def test_deletion_shreds_the_data_key_and_closes_the_account(app, logged_in, customer, bystander):
    backup = _backup(app, customer.id)
    assert set(backup.fields) == {*PROFILE, "email"}
    with app.app_context():  # the backup is genuine: it decrypts before deletion
        cipher = cipher_for(db.session, keys(), customer.id)
        assert cipher.decrypt("given_name", backup.fields["given_name"]) == b'"Ermengarde"'

    response = _delete(logged_in, password=customer.password, confirm="y")
    assert response.status_code == 200
    assert "Your account is deleted" in response.get_data(as_text=True)

    with app.app_context():
        assert db.session.get(DataKey, customer.id) is None
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(ProfileField)
                .where(ProfileField.user_id == customer.id)
            )
            == 0
        )
        user = db.session.get(User, customer.id)
        assert user.status == AccountStatus.CLOSED
        assert user.closed_at is not None
        assert user.email_index is None
        assert user.password_hash is None
        with pytest.raises(DataKeyShredded, match=customer.id):
            cipher_for(db.session, keys(), customer.id)
        with pytest.raises(DataKeyShredded):
            load_profile(db.session, keys(), customer.id)
        # The other customer is untouched.
        assert load_profile(db.session, keys(), bystander.id)["given_name"] == "Bystander"

    # Logged out here, and the old credentials no longer log in.
    assert logged_in.get("/profile").status_code == 302
    assert _login_status(app, customer.email, customer.password) == 401


def test_backed_up_ciphertexts_open_with_no_key_the_vault_still_holds(
    app, logged_in, customer, bystander
):
    backup = _backup(app, customer.id)
    factories.customer(app, profile={"given_name": "Third"})
    assert _delete(logged_in, password=customer.password, confirm="y").status_code == 200

    with app.app_context():
        provider = keys()
        remaining = db.session.scalars(select(DataKey)).all()
        assert {row.user_id for row in remaining} >= {bystander.id}
        assert customer.id not in {row.user_id for row in remaining}
        assert len(remaining) == 2
        attempts = 0
        for row in remaining:
            # Every data key the vault can still produce, used as-is...
            data_key = provider.unwrap(row.user_id, WrappedKey(row.master_key_id, row.wrapped_key))
            for owner in (customer.id, row.user_id):
                for name, blob in backup.fields.items():
                    with pytest.raises(DecryptionError):
                        FieldCipher(data_key, owner).decrypt(name, blob)
                    attempts += 1
            # ...and each remaining wrapped key unwrapped as if it were the deleted customer's.
            with pytest.raises(DecryptionError):
                provider.unwrap(customer.id, WrappedKey(row.master_key_id, row.wrapped_key))
        assert attempts == 2 * 2 * len(backup.fields)


def test_the_email_can_sign_up_again_without_reaching_the_old_data(app, logged_in, customer):
    backup = _backup(app, customer.id)
    assert _delete(logged_in, password=customer.password, confirm="y").status_code == 200
    again = factories.customer(app, email=customer.email, password="another long password")
    assert again.id != customer.id
    assert _login_status(app, customer.email, "another long password") == 302
    assert _login_status(app, customer.email, customer.password) == 401
    with app.app_context():
        assert load_profile(db.session, keys(), again.id) == {"email": customer.email}
        cipher = cipher_for(db.session, keys(), again.id)
        for name, blob in backup.fields.items():
            with pytest.raises(DecryptionError):
                cipher.decrypt(name, blob)


# --- what the pages promise ------------------------------------------------------------------


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_pages_say_only_what_is_true_about_backups(app, logged_in, customer):
    """Backups made before the deletion stay readable with the current master key until
    the next `vault keys rotate` (README, and the last test of this module)."""
    delete_page = _text(logged_in.get("/account/delete").get_data(as_text=True))
    security_page = _text(logged_in.get("/security").get_data(as_text=True))
    assert "backups included" not in delete_page
    assert "unreadable everywhere" not in delete_page
    assert "not even the vault's operators" not in security_page
    assert "Database backups made before now still hold your profile" in delete_page
    assert "vault keys rotate" in delete_page
    assert "Older backups stay readable until the operators next rotate" in security_page

    deleted_page = _text(
        _delete(logged_in, password=customer.password, confirm="y").get_data(as_text=True)
    )
    assert "can no longer be decrypted by anyone" not in deleted_page
    assert "Backups made earlier become unreadable when" in deleted_page


# --- refusals: nothing may change --------------------------------------------------------------


def test_wrong_password_changes_nothing_and_says_so_beside_the_field(app, logged_in, customer):
    before = _state(app, customer.id)
    response = _delete(logged_in, password="not the password at all", confirm="y")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert _field_error(html, "password") == "Your password is not correct."
    assert 'id="password"' in html and 'aria-invalid="true"' in html

    assert _state(app, customer.id) == before
    assert logged_in.get("/profile").status_code == 200  # still logged in
    with app.app_context():
        assert load_profile(db.session, keys(), customer.id)["family_name"] == "Shredwell"
    assert _login_status(app, customer.email, customer.password) == 302


def test_missing_confirmation_changes_nothing(app, logged_in, customer):
    before = _state(app, customer.id)
    response = _delete(logged_in, password=customer.password)
    assert response.status_code == 400
    assert _field_error(response.get_data(as_text=True), "confirm") == "Tick the box to confirm."
    assert _state(app, customer.id) == before
    assert logged_in.get("/profile").status_code == 200
    with app.app_context():
        assert load_profile(db.session, keys(), customer.id)["given_name"] == "Ermengarde"


def test_missing_csrf_token_changes_nothing(app, logged_in, customer):
    before = _state(app, customer.id)
    response = logged_in.post(
        "/account/delete", data={"password": customer.password, "confirm": "y"}
    )
    assert response.status_code == 400
    assert _state(app, customer.id) == before


def test_logged_out_visitor_cannot_delete(app, client, customer):
    before = _state(app, customer.id)
    response = client.post("/account/delete", data={"password": customer.password, "confirm": "y"})
    assert response.status_code in (302, 400)
    assert _state(app, customer.id) == before


# --- backups that kept the wrapped key: shredded by the next master-key rotation ---------------


def test_backup_with_its_wrapped_key_is_shredded_by_the_next_rotation(
    app, logged_in, customer, bystander, keyring_text, tmp_path: Path
):
    backup = _backup(app, customer.id)
    assert _delete(logged_in, password=customer.password, confirm="y").status_code == 200

    key_file = tmp_path / "master.key"
    write_keyring_file(key_file, Keyring.parse(keyring_text))
    provider = LocalKeyProvider.from_file(key_file)
    backed_up_key = WrappedKey(backup.master_key_id, backup.wrapped_key)

    # Honest limit: the master key still opens a wrapped key kept in a backup.
    data_key = provider.unwrap(customer.id, backed_up_key)
    assert FieldCipher(data_key, customer.id).decrypt("family_name", backup.fields["family_name"])

    with app.app_context():
        rotate_master_key(db.session, provider)
        assert load_profile(db.session, provider, bystander.id)["given_name"] == "Bystander"

    # After rotation the old master key is gone from the keyring: the backup stays sealed.
    assert backup.master_key_id not in provider.key_ids()
    with pytest.raises(KeyringError, match="not in the keyring"):
        LocalKeyProvider.from_file(key_file).unwrap(customer.id, backed_up_key)
    with pytest.raises(DecryptionError):
        LocalKeyProvider.from_file(key_file).unwrap(
            customer.id, WrappedKey(provider.current_key_id, backup.wrapped_key)
        )
