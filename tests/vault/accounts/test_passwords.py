"""Password hashes at the production cost: the suite itself runs with cheap argon2
parameters (tests/conftest.py), so this checks what a production vault really stores."""

from __future__ import annotations

from tests.vault.test_config import KEY_FILE, SECRET, production
from vault.accounts.passwords import Passwords
from vault.config import build_config


def test_production_hashes_are_argon2id_at_rfc_9106_second_recommended_cost(tmp_path):
    config = build_config(
        tmp_path, production(VAULT_SECRET_KEY=SECRET, VAULT_MASTER_KEY_FILE=KEY_FILE)
    )
    passwords = Passwords.from_config(config)
    stored = passwords.hash("correct horse battery staple")
    # t=3 passes over 64 MiB with 4 lanes (RFC 9106 section 4, second recommended option).
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert passwords.verify(stored, "correct horse battery staple")
    assert not passwords.verify(stored, "correct horse battery stapler")
    assert not passwords.needs_rehash(stored)
