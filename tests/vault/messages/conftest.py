"""Fixtures for the messages tests: the live vault of the OAuth tests (a real HTTP server,
Authlib's OAuth2Session as the vendor's client, on SQLite and on PostgreSQL) and ``world``
(tests/vault/messages/helpers.py)."""

from tests.vault.messages.helpers import world  # noqa: F401
from tests.vault.oauth.conftest import live_config_overrides, live_oauth_app, vault  # noqa: F401
