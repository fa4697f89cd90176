"""Per-connection settings for the embedded SQLite database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


def configure_sqlite(engine: Engine) -> None:
    """Foreign keys on (SQLite leaves them off, so ON DELETE CASCADE would do nothing),
    WAL so readers never wait for the writer, a busy timeout instead of instant
    "database is locked", and synchronous=NORMAL, which in WAL mode keeps the database
    consistent and loses at most the last commits on power loss, not on a process crash."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
