"""Signing keys: JWKS publication across rotation, and master-key rotation re-wraps them."""

from __future__ import annotations

import json
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import KeySet

from tests.conftest import _app_config
from vault import create_app
from vault.crypto.keyring import Keyring, write_keyring_file
from vault.extensions import db
from vault.oauth.models import SigningKey
from vault.oauth.signing import current_signing_key, jwks
from vault.services import keys


def test_signing_rotation_keeps_old_key_published_until_expiry(app):
    client = app.test_client()
    with app.app_context():
        old = current_signing_key(db.session, keys())
        db.session.commit()
        token = jwt.encode({"alg": "ES256", "kid": old.kid}, {"sub": "x"}, old)
    result = app.test_cli_runner().invoke(args=["keys", "rotate-signing", "--publish-days", "7"])
    assert result.exit_code == 0, result.output
    rotated = json.loads(result.output)
    assert rotated["retired"] == [old.kid]
    new_kid = rotated["current"]["ES256"]
    assert new_kid != old.kid and rotated["current"]["RS256"]

    published = client.get("/oauth/jwks.json").get_json()
    assert {k["kid"] for k in published["keys"]} == {old.kid, *rotated["current"].values()}
    # A token signed before the rotation still verifies against the served JWKS.
    assert jwt.decode(token, KeySet.import_key_set(published)).claims["sub"] == "x"
    with app.app_context():
        assert current_signing_key(db.session, keys()).kid == new_kid
        row = db.session.get(SigningKey, old.kid)
        row.publish_until = row.retired_at  # its signatures have all expired
        db.session.commit()
        assert sorted(k["kid"] for k in jwks(db.session)["keys"]) == sorted(
            rotated["current"].values()
        )


def test_published_keys_are_public_only(app):
    with app.app_context():
        current_signing_key(db.session, keys())
        db.session.commit()
    for key in app.test_client().get("/oauth/jwks.json").get_json()["keys"]:
        assert "d" not in key and key["alg"] in {"ES256", "RS256"} and key["use"] == "sig"


def test_master_key_rotation_rewraps_signing_keys(tmp_path: Path, database, keyring_text):
    key_file = tmp_path / "master.key"
    write_keyring_file(key_file, Keyring.parse(keyring_text))
    config = _app_config(
        database, keyring_text, VAULT_MASTER_KEY=None, VAULT_MASTER_KEY_FILE=str(key_file)
    )
    app = create_app(config)
    with app.app_context():
        before = current_signing_key(db.session, keys())
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    new_key_id = json.loads(result.output[result.output.index("{") :])["current"]
    fresh = create_app(config)  # reads only the rotated key file
    with fresh.app_context():
        row = db.session.get(SigningKey, before.kid)
        assert row.master_key_id == new_key_id
        after = current_signing_key(db.session, keys())
        assert after.as_dict(private=True) == before.as_dict(private=True)
    with app.app_context():
        db.engine.dispose()
    with fresh.app_context():
        db.engine.dispose()
