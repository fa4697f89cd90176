"""Data portability: everything the vault holds about a customer, as one JSON document."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Called by ``vault.create_app``; views are imported here, not at package import."""
    from vault.portability.views import bp

    app.register_blueprint(bp)
