"""The live vault of the OAuth tests (a real HTTP server, on SQLite and on PostgreSQL): mail
clients' one-click POSTs and the vendor's consent API need real HTTP."""

from tests.vault.oauth.conftest import live_config_overrides, live_oauth_app, vault  # noqa: F401
