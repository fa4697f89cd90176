"""Businesses' messages through the vault: the messages and permits API, the outbox, the
contact log and the delivery worker (``vault worker``)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Called by ``vault.create_app``; views are imported here, not at package import."""
    from vault.messages import cli, views

    app.register_blueprint(views.bp)
    app.cli.add_command(cli.worker_command)
