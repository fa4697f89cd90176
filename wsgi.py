"""WSGI entry point: ``gunicorn wsgi:app``. Configuration comes from the environment.

A configuration or key the vault refuses is printed as the message it is, and the process
exits with status 4, gunicorn's "App failed to load", so gunicorn stops instead of
restarting workers that cannot start either."""

import sys

from vault import create_app
from vault.config import ConfigurationError
from vault.crypto.keyring import KeyringError

try:
    app = create_app()
except (ConfigurationError, KeyringError) as error:
    print(f"CMR Vault cannot start.\n{error}", file=sys.stderr)
    raise SystemExit(4) from None
