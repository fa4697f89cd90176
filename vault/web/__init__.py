"""Pages that belong to no single feature: the dashboard and error pages."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Called by ``vault.create_app``; views are imported here, not at package import."""
    from vault.web.views import bp

    app.register_blueprint(bp)
