"""CMR Vault: the customer holds the relationship."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

PACKAGE_DIR = Path(__file__).resolve().parent
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"


def templates_dir() -> Path:
    """Where the Jinja templates are: inside the package once installed from a wheel
    (pyproject.toml maps the top-level templates/ there), else the source checkout's."""
    installed = PACKAGE_DIR / "templates"
    return installed if installed.is_dir() else PACKAGE_DIR.parent / "templates"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the vault application; ``config`` overrides what the environment says."""
    from vault import errors, inputs, logs, transactions
    from vault.config import build_config

    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=str(templates_dir()),
    )
    app.config.update(build_config(app.instance_path, overrides=config))
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    logs.init_app(app)  # the request id and the JSON lines, before anything logs
    inputs.init_app(app)  # its checks run before any other extension reads input
    _init_keys(app)
    _init_extensions(app)
    _init_features(app)
    errors.init_app(app)
    transactions.init_app(app)  # after every other after_request (its docstring says why)
    _check_keys(app)

    from vault.cli import register_commands

    register_commands(app)
    return app


def _init_keys(app: Flask) -> None:
    from vault.accounts.passwords import Passwords
    from vault.crypto.keyring import Keyring, provider_from_config, write_keyring_file

    key_file = app.config.get("VAULT_MASTER_KEY_FILE")
    if (
        app.config["VAULT_ENV"] == "development"
        and not app.config.get("VAULT_MASTER_KEY")
        and key_file
        and not Path(key_file).exists()
    ):
        write_keyring_file(Path(key_file), Keyring.generate())
        print(
            "\n" + "!" * 78 + f"\n!! DEVELOPMENT MASTER KEY CREATED at {key_file}\n"
            "!! It sits beside the database: fine for trying the vault, never for real data.\n"
            "!! In production set VAULT_MASTER_KEY_FILE to a key kept apart from the data.\n"
            + "!" * 78
            + "\n",
            file=sys.stderr,
        )
    app.extensions["vault.keys"] = provider_from_config(app.config)
    app.extensions["vault.passwords"] = Passwords.from_config(app.config)


def _check_keys(app: Flask) -> None:
    """Refuse to start with a keyring that does not open this vault (``vault.keys.check``).

    Skipped while the database is not migrated yet (``vault db upgrade`` runs in such an
    app). If the database cannot be reached now, the app starts anyway, so it serves as
    soon as the database is back, and checks before the first request that reaches it."""
    import logging

    from sqlalchemy import inspect

    from vault.errors import DATABASE_TROUBLE, Misconfigured
    from vault.extensions import db
    from vault.keys.check import KeyMismatch, check_keys
    from vault.keys.models import KeyCheck

    keys = app.extensions["vault.keys"]
    with app.app_context():
        try:
            if not inspect(db.engine).has_table(KeyCheck.__tablename__):
                return
            check_keys(db.session, keys)
            db.session.commit()
            return
        except DATABASE_TROUBLE as error:
            logging.getLogger("vault").warning(
                "cannot check the master key against the database at start (%s); "
                "checking before the first request instead",
                type(getattr(error, "orig", error)).__name__,
            )
        finally:
            db.session.remove()

    @app.before_request
    def _check_keys_once() -> None:
        if app.extensions.get("vault.keys_checked"):
            return
        try:
            check_keys(db.session, keys)
            db.session.commit()
        except KeyMismatch as error:
            db.session.rollback()
            logging.getLogger("vault").critical("%s", error)
            raise Misconfigured() from None
        app.extensions["vault.keys_checked"] = True


def _init_extensions(app: Flask) -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    from vault import headers
    from vault.extensions import csrf, db, limiter, login_manager, migrate, talisman

    db.init_app(app)
    with app.app_context():
        from vault.database import configure_postgresql, configure_sqlite

        statement_timeout = app.config.get("VAULT_DB_STATEMENT_TIMEOUT")
        connect_timeout = app.config["VAULT_DB_CONNECT_TIMEOUT"]
        configure_sqlite(db.engine, 1000 * (statement_timeout or 10))
        configure_postgresql(
            db.engine,
            ping_seconds=connect_timeout,
            # Past the server's own statement_timeout: the backstop for a server that no
            # longer answers at all.
            quiet_seconds=statement_timeout + connect_timeout if statement_timeout else None,
        )
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    headers.init_app(app)  # before Talisman: its hook then runs after Talisman's
    talisman.init_app(
        app,
        force_https=app.config["VAULT_FORCE_HTTPS"],
        strict_transport_security=True,  # sent only on HTTPS responses
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        frame_options="DENY",
        referrer_policy="same-origin",
        content_security_policy={
            "default-src": "'self'",
            "img-src": "'self' data: https:",
            "style-src": "'self'",
            "script-src": "'self'",
            "object-src": "'none'",
            "base-uri": "'none'",
            "frame-ancestors": "'none'",
        },
    )
    proxies = int(app.config.get("VAULT_TRUSTED_PROXIES", 0) or 0)
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)


def _init_features(app: Flask) -> None:
    """Each feature registers its own blueprints (and what else it needs) in its
    ``init_app``; this is the one list of them."""
    from vault import (
        accounts,
        api,
        connections,
        consents,
        messages,
        oauth,
        portability,
        profile,
        unsubscribe,
        vendors,
        web,
        webhooks,
    )

    features = (
        web,
        accounts,
        profile,
        portability,
        oauth,
        api,
        connections,
        vendors,
        consents,
        messages,
        unsubscribe,
        webhooks,
    )
    for feature in features:
        feature.init_app(app)
