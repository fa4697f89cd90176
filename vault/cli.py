"""The ``vault`` command: Flask's CLI bound to the app factory, plus operator commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click
from flask import Flask
from flask.cli import AppGroup, FlaskGroup, ScriptInfo, with_appcontext

from vault.accounts.models import Role

if TYPE_CHECKING:
    from consent.ledger_verify import Anchor


class StartupRefused(click.ClickException):
    """The configuration or the keys do not let the vault start: said in a paragraph, exit
    status 2, never a traceback."""

    exit_code = 2

    def format_message(self) -> str:
        return f"the vault cannot start.\n{self.message}"


class VaultGroup(FlaskGroup):
    """Flask's command group, with every vault command known without building the app, so
    ``vault --help`` and ``vault keys generate`` work before any configuration exists; a
    command that needs the app builds it when it runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        # FlaskGroup would build the app here to list its commands, printing a traceback
        # when the configuration is incomplete; every vault command is registered below.
        return sorted(AppGroup.list_commands(self, ctx))


class _InAppContext(click.Group):
    """A command group whose own callback needs the app (Flask-Migrate's ``db`` sets
    ``flask.g``): the app is built when the group runs, not when it is listed."""

    def invoke(self, ctx: click.Context) -> object:
        app = ctx.ensure_object(ScriptInfo).load_app()
        with app.app_context():
            return super().invoke(ctx)


def _create_app_for_cli() -> Flask:
    from vault import create_app
    from vault.config import ConfigurationError
    from vault.crypto.keyring import KeyringError

    try:
        # Operator commands (migrations, ledger verification, key rotation) may rightly run
        # longer than a web request's statement timeout: they have none.
        return create_app({"VAULT_DB_STATEMENT_TIMEOUT": None})
    except (ConfigurationError, KeyringError) as error:
        raise StartupRefused(str(error)) from None


def operator_commands() -> list[click.Command]:
    from flask_migrate.cli import db as migrations

    from vault.messages.cli import run_with_worker, worker_command
    from vault.vendors.cli import vendors

    db = _InAppContext(
        name="db",
        commands=migrations.commands,
        params=migrations.params,
        callback=migrations.callback,
        help="Database migrations (Flask-Migrate): `vault db upgrade` brings a database "
        "up to date.",
    )
    return [users, keys_group, vendors, ledger_group, db, worker_command, run_with_worker]


def main() -> None:
    cli = VaultGroup(name="vault", create_app=_create_app_for_cli, help="Operate a CMR Vault.")
    for command in operator_commands():
        cli.add_command(command)
    cli.main(prog_name="vault")


def register_commands(app: Flask) -> None:
    from vault.vendors.cli import vendors

    app.cli.add_command(users)
    app.cli.add_command(keys_group)
    app.cli.add_command(vendors)
    app.cli.add_command(ledger_group)


@click.group(help="Staff and customer accounts.")
def users() -> None:
    pass


def read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise click.UsageError("--password-stdin given but standard input was empty")
        return line.rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@users.command("create")
@click.option(
    "--role",
    # Plain strings: click >= 8.2 matches Enum choices by member *name* ("ADMIN"), not value.
    type=click.Choice([role.value for role in (Role.COMPLIANCE, Role.ADMIN, Role.CUSTOMER)]),
    required=True,
    help="compliance officer, admin, or (for demos) a customer",
)
@click.option("--email", required=True)
@click.option(
    "--password-stdin", is_flag=True, help="read the password from the first line of stdin"
)
@with_appcontext
def create_user(role: str, email: str, password_stdin: bool) -> None:
    """Create an account. The password is never taken from the command line."""
    from marshmallow import ValidationError, fields

    from vault.accounts.operations import WeakPassword, create_account
    from vault.extensions import db
    from vault.profile.operations import EmailInUse
    from vault.services import keys, passwords

    try:
        fields.Email().deserialize(email)
    except ValidationError as exc:
        raise click.BadParameter(
            f"{email!r} is not an e-mail address", param_hint="--email"
        ) from exc
    password = read_password(password_stdin)
    try:
        user = create_account(
            db.session, keys(), passwords(), email=email, password=password, role=Role(role)
        )
        db.session.commit()
    except WeakPassword as exc:
        db.session.rollback()
        raise click.ClickException(f"password refused: {exc}") from exc
    except EmailInUse as exc:
        db.session.rollback()
        raise click.ClickException("an account with this e-mail already exists") from exc
    click.echo(json.dumps({"user_id": user.id, "role": role}))


@click.group("keys", help="Master keys and data keys.")
def keys_group() -> None:
    pass


@keys_group.command("generate")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), required=True)
def generate_keys(path: Path) -> None:
    """Write a new keyring (master key, blind-index and pseudonym secrets), mode 0600."""
    from vault.crypto.keyring import Keyring, write_keyring_file

    if path.exists():
        raise click.ClickException(f"{path} exists; refusing to overwrite a keyring")
    write_keyring_file(path, Keyring.generate())
    click.echo(f"wrote {path}; set VAULT_MASTER_KEY_FILE={path}")


@keys_group.command("status")
@with_appcontext
def key_status() -> None:
    """Which master keys exist and how many data keys each wraps."""
    from sqlalchemy import func, select

    from vault.extensions import db
    from vault.keys.models import DataKey
    from vault.services import keys

    provider = keys()
    counts = dict(
        db.session.execute(
            select(DataKey.master_key_id, func.count()).group_by(DataKey.master_key_id)
        ).all()
    )
    click.echo(
        json.dumps(
            {
                "current": provider.current_key_id,
                "master_keys": sorted(provider.key_ids()),
                "data_keys_by_master_key": counts,
            },
            indent=2,
        )
    )


@keys_group.command("rotate")
@with_appcontext
def rotate_keys() -> None:
    """New master key; re-wrap every data key; retire the old key. Safe to rerun."""
    from vault.crypto.keyring import KeyringError
    from vault.extensions import db
    from vault.keys.operations import rotate_master_key
    from vault.logs import audit
    from vault.services import keys

    state: dict[str, object] = {}

    def on_start(total: int) -> None:
        bar = click.progressbar(length=total, label="re-wrapping data keys", file=sys.stderr)
        state["bar"] = bar.__enter__()

    def on_progress(done: int) -> None:
        state["bar"].update(done)  # type: ignore[attr-defined]

    try:
        new_key, retired, count = rotate_master_key(
            db.session, keys(), on_start=on_start, on_progress=on_progress
        )
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)  # type: ignore[attr-defined]
    audit("master_key_rotated", current=new_key, retired=retired, rewrapped=count)
    click.echo(json.dumps({"current": new_key, "retired": retired, "rewrapped": count}, indent=2))


@keys_group.command("rotate-signing")
@click.option(
    "--publish-days",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="how long retired keys stay in the JWKS (cover everything they signed)",
)
@with_appcontext
def rotate_signing(publish_days: int) -> None:
    """Start signing with new keys (ES256, RS256); old ones stay published for a while."""
    from datetime import timedelta

    from vault.extensions import db
    from vault.logs import audit
    from vault.oauth.signing import rotate_signing_keys
    from vault.services import keys

    rows, retired = rotate_signing_keys(db.session, keys(), timedelta(days=publish_days))
    db.session.commit()
    audit("signing_keys_rotated", current=sorted(row.kid for row in rows.values()), retired=retired)
    click.echo(
        json.dumps({"current": {alg: row.kid for alg, row in rows.items()}, "retired": retired})
    )


@click.group("ledger", help="The hash-chained consent ledger.")
def ledger_group() -> None:
    pass


def _parse_anchors(
    context: click.Context, parameter: click.Parameter, values: tuple[str, ...]
) -> list[Anchor]:
    from consent.ledger_verify import Anchor

    try:
        return [Anchor.parse(value) for value in values]
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _receipt_anchors(receipts: tuple[IO[str], ...]) -> list[Anchor]:
    from consent.ledger_verify import Anchor
    from vault.consents.receipts import signed_ledger_events
    from vault.extensions import db

    anchors = []
    for receipt in receipts:
        try:
            events = signed_ledger_events(db.session, receipt.read())
            anchors += [Anchor.parse(f"{event.seq}:{event.hash}") for event in events]
        except ValueError as error:
            raise click.BadParameter(f"{receipt.name}: {error}", param_hint="--receipt") from None
    return anchors


@ledger_group.command("verify")
@click.option(
    "--independent",
    is_flag=True,
    hidden=True,
    help="Kept for scripts written before every verify became independent; does nothing.",
)
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    metavar="SEQ:HASH",
    callback=_parse_anchors,
    help="An event's seq and hash recorded earlier (a head this command printed, a "
    "receipt's ledger seq and hash), which must still be in the ledger; repeatable.",
)
@click.option(
    "--receipt",
    "receipts",
    multiple=True,
    type=click.File("r"),
    help="A consent receipt (JWS) this vault signed: the ledger events it names are "
    "anchors too; repeatable.",
)
@with_appcontext
def verify_ledger(independent: bool, anchors: list[Anchor], receipts: tuple[IO[str], ...]) -> None:
    """Read, parse and hash every event from the first to the head, trusting nothing the
    database computes, and check every link.

    Prints the head (seq and hash) and exits 0, or names the first broken event and
    exits 1. Anchors kept outside the vault also catch a chain rewritten, hashes and all,
    from some event on. The progress bar goes to stderr, so stdout stays JSON."""
    from vault.consents import ledger
    from vault.extensions import db

    anchors = [*anchors, *_receipt_anchors(receipts)]
    total = ledger.count_events(db.session)
    with click.progressbar(length=total, label="verifying ledger", file=sys.stderr) as bar:
        result = ledger.verify(db.session, anchors=anchors, on_progress=bar.update)
    db.session.rollback()
    if result.ok:
        verdict = {
            "ok": True,
            "head_seq": result.head_seq,
            "head_hash": result.head_hash,
            "count": result.count,
        }
        if anchors:
            verdict["anchors_checked"] = len(anchors)
        click.echo(json.dumps(verdict))
        return
    click.echo(
        json.dumps({"ok": False, "broken_seq": result.broken_seq, "problem": result.problem})
    )
    sys.exit(1)
