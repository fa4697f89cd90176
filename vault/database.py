"""Per-connection settings for the embedded SQLite database."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

# SQLite errors after which this connection must not be used again: a connection opened
# while the file (or its directory) was read-only stays read-only after the file becomes
# writable again, so the vault could recover only by reopening it.
_REOPEN = re.compile(r"readonly database|unable to open database file|disk I/O error")


def configure_sqlite(engine: Engine, busy_timeout_ms: int = 10000) -> None:
    """Foreign keys on (SQLite leaves them off, so ON DELETE CASCADE would do nothing),
    WAL so readers never wait for the writer, a busy timeout instead of instant
    "database is locked" (``VAULT_DB_STATEMENT_TIMEOUT``: how long one request may wait
    for the write lock before it is a 503), and synchronous=NORMAL, which in WAL mode keeps
    the database consistent and loses at most the last commits on power loss, not on a
    process crash."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "handle_error")
    def _reopen_after_read_only(context: Any) -> None:
        error = context.original_exception
        if isinstance(error, sqlite3.OperationalError) and _REOPEN.search(str(error)):
            context.is_disconnect = True  # the pool drops it; the next checkout reopens
