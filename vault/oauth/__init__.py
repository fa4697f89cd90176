"""OAuth 2.0 / OpenID Connect provider built on Authlib: clients, grants, tokens, keys."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Called by ``vault.create_app``; views are imported here, not at package import."""
    from vault.oauth.server import init_oauth
    from vault.oauth.views import bp

    init_oauth(app)
    app.register_blueprint(bp)
