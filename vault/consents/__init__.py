"""Consent storage and orchestration over the ``consent`` library: models, operations,
the ledger store, receipts, the vendor-API glue and the customer's pages (/consents)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Called by ``vault.create_app``; views are imported here, not at package import."""
    import vault.consents.models  # noqa: F401  (mapped before the first query and for migrations)
    from vault.consents.views import bp

    app.register_blueprint(bp)
