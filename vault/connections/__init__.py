"""The customer's view of their grants (/connections), of every read (/activity) and of
the messages businesses sent them (/messages)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Called by ``vault.create_app``; views are imported here, not at package import."""
    from vault.connections.views import bp

    app.register_blueprint(bp)
