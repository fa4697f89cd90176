"""Consent-change webhooks: a business's endpoint and signing secret (set in the business
portal), one delivery row per consent change that concerns it (queued in the transaction of
the ledger event), and their delivery by the outbox worker (``vault.webhooks.delivery``)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Called by ``vault.create_app``; views are imported here, not at package import."""
    from vault.webhooks import views

    app.register_blueprint(views.bp)
