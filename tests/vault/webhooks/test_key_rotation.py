"""Master-key rotation re-wraps the webhook signing secrets with everything else: after
``vault keys rotate`` the old master key is gone and the secret is still the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vault.crypto.keyring import Keyring, LocalKeyProvider, write_keyring_file
from vault.extensions import db
from vault.services import keys
from vault.vendors.operations import create_vendor
from vault.webhooks import operations
from vault.webhooks.models import WebhookEndpoint


@pytest.fixture
def keyring_path(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "master.key"
    write_keyring_file(path, Keyring.generate())
    return path


@pytest.fixture
def app_config(app_config: dict[str, Any], keyring_path: Path) -> dict[str, Any]:
    return {**app_config, "VAULT_MASTER_KEY": None, "VAULT_MASTER_KEY_FILE": str(keyring_path)}


def test_rotation_rewraps_the_secret_and_keeps_it(app, keyring_path):
    with app.app_context():
        vendor = create_vendor(db.session, "Acme")
        endpoint = operations.set_endpoint(
            db.session, keys(), vendor.id, "http://127.0.0.1:9/hooks", allow_local=True
        )
        secret = operations.reveal_secret(keys(), endpoint)
        old_key = endpoint.master_key_id
        vendor_id = vendor.id
        db.session.commit()

    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["retired"] == [old_key]

    with app.app_context():
        row = db.session.get(WebhookEndpoint, vendor_id)
        assert row.master_key_id == report["current"]
        # Only the new master key is left in the file, and it opens the secret.
        assert operations.reveal_secret(LocalKeyProvider.from_file(keyring_path), row) == secret
