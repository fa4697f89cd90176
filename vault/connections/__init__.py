"""The customer's view of their grants (/connections) and of every read (/activity)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Called by ``vault.create_app``; views are imported here, not at package import."""
    from vault.connections.views import bp

    app.register_blueprint(bp)
