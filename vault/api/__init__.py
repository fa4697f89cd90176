"""The vendor-facing JSON API under /api/v1 (bearer tokens, problem+json errors)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Called by ``vault.create_app``; views are imported here, not at package import."""
    from vault.api import consent_views, views

    app.register_blueprint(views.bp)
    app.register_blueprint(consent_views.bp)
