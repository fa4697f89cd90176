"""The live vault of the OAuth tests (a real HTTP server, on SQLite and on PostgreSQL) and
the messages tests' ``world``: a shop whose customer is connected and consented."""

from tests.vault.messages.helpers import world  # noqa: F401
from tests.vault.oauth.conftest import live_config_overrides, live_oauth_app, vault  # noqa: F401
