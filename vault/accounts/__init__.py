"""Accounts: sign-up, log-in, roles, passwords and the second factor."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Called by ``vault.create_app``; views are imported here, not at package import."""
    from vault.accounts.views import bp

    app.register_blueprint(bp)
