"""Unsubscribe: the per-message link in every business message, and what following it does."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Called by ``vault.create_app``; views are imported here, not at package import."""
    from vault.unsubscribe.views import bp

    app.register_blueprint(bp)
