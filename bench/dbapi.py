"""The bare baselines' database access: one DB-API connection per gunicorn worker, opened
after the fork, with the vault's SQLite settings, on the database of the bench config
(``VAULT_BENCH_CONFIG``). No ORM, no pool checkout per request."""

from __future__ import annotations

import json
import os
from typing import Any

import sqlalchemy as sa

with open(os.environ["VAULT_BENCH_CONFIG"]) as _handle:
    CONFIG: dict[str, Any] = json.load(_handle)
ENGINE = sa.create_engine(
    CONFIG["SQLALCHEMY_DATABASE_URI"], **CONFIG.get("SQLALCHEMY_ENGINE_OPTIONS", {})
)
_connection: list[Any] = []


def connection() -> Any:
    if not _connection:  # one per worker, opened after gunicorn forked it
        raw = ENGINE.raw_connection()
        if ENGINE.dialect.name == "sqlite":
            for pragma in ("foreign_keys=ON", "busy_timeout=10000", "synchronous=NORMAL"):
                raw.cursor().execute(f"PRAGMA {pragma}")
        _connection.append(raw)
    return _connection[0]
