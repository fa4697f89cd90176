"""``vault worker``: the outbox's delivery process; and ``vault run``, which in development
runs one beside the server."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import click
from flask import current_app
from flask.cli import ScriptInfo, run_command, with_appcontext
from werkzeug.serving import is_running_from_reloader


@click.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@with_appcontext
def worker_command(once: bool) -> None:
    """Deliver businesses' messages and consent-change webhooks from the outbox (one
    process; run several anywhere on one PostgreSQL). SIGTERM or Ctrl-C: finish the message
    in hand, then exit."""
    from vault.messages.worker import Worker

    worker = Worker(current_app._get_current_object())  # type: ignore[attr-defined]

    def _stop(signum: int, frame: Any) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if once:
        handled = worker.run_once()
        sent = {"sent": worker.delivered, "webhooks_sent": worker.webhooks.delivered}
        click.echo(json.dumps({"handled": handled, **sent}))
        return
    worker.run()


@click.command("run", params=run_command.params, help=run_command.help)
@click.pass_context
def run_with_worker(ctx: click.Context, **options: Any) -> None:
    """Flask's ``run``; with ``VAULT_RUN_WORKER`` (on in development) an outbox worker
    thread runs beside the server, so ``make run`` delivers messages (into files without
    SMTP) with no second process. Under the reloader it runs in the serving child only."""
    app = ctx.ensure_object(ScriptInfo).load_app()
    reload = options.get("reload")
    if reload is None:
        reload = bool(app.debug)
    if app.config.get("VAULT_RUN_WORKER") and (not reload or is_running_from_reloader()):
        from vault.messages.worker import Worker

        worker = Worker(app)
        threading.Thread(target=worker.run, name="vault-outbox-worker", daemon=True).start()
        click.echo(" * outbox worker running in this process (VAULT_RUN_WORKER)", err=True)
    ctx.invoke(run_command, **options)
