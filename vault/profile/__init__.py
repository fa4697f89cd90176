"""The customer's encrypted profile: OIDC standard claims plus declared interests."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Called by ``vault.create_app``; views are imported here, not at package import."""
    from vault.profile.views import bp

    app.register_blueprint(bp)
