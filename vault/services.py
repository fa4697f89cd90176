"""The app's shared services, for views and CLI commands (business code takes them as arguments)."""

from __future__ import annotations

from flask import current_app

from vault.accounts.passwords import Passwords
from vault.crypto.keyring import LocalKeyProvider


def keys() -> LocalKeyProvider:
    return current_app.extensions["vault.keys"]


def passwords() -> Passwords:
    return current_app.extensions["vault.passwords"]
