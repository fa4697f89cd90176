"""Per-connection settings: SQLite's pragmas, and the bounds on every wait for PostgreSQL."""

from __future__ import annotations

import logging
import os
import re
import socket
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger("vault.database")

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


class Watchdog:
    """Cuts the socket of a PostgreSQL connection that has waited past its deadline.

    The server's statement_timeout ends a slow statement only while the server still
    answers; a server that stopped answering on a connection that is already open (a
    frozen process, a dropped route whose packets the network still acknowledges) leaves
    the client waiting on the socket for ever, since psycopg has no client-side deadline.
    One thread per process wakes four times a second and shuts down the sockets of
    connections whose deadline passed; the waiting call then fails as a lost connection,
    SQLAlchemy discards it and the request answers 503 (``vault.errors``)."""

    TICK = 0.25

    def __init__(self) -> None:
        self._deadlines: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._thread_pid: int | None = None

    def arm(self, dbapi_connection: Any, seconds: float) -> None:
        with self._lock:
            self._deadlines[id(dbapi_connection)] = (time.monotonic() + seconds, dbapi_connection)
            if self._thread_pid != os.getpid():  # none yet, or inherited by a fork
                self._thread_pid = os.getpid()
                threading.Thread(target=self._run, name="vault-db-watchdog", daemon=True).start()

    def disarm(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._deadlines.pop(id(dbapi_connection), None)

    def _run(self) -> None:
        while True:
            time.sleep(self.TICK)
            now = time.monotonic()
            with self._lock:
                expired = [conn for deadline, conn in self._deadlines.values() if deadline <= now]
                for conn in expired:
                    del self._deadlines[id(conn)]
            for conn in expired:
                self._cut(conn)

    @staticmethod
    def _cut(dbapi_connection: Any) -> None:
        try:
            fd = dbapi_connection.pgconn.socket
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError, AttributeError) as error:
            # Already closed or never connected: nothing is waiting on it any more.
            log.debug("database watchdog: nothing to cut (%s)", type(error).__name__)
            return
        log.warning("cut a database connection whose server stopped answering")


WATCHDOG = Watchdog()


def configure_postgresql(engine: Engine, ping_seconds: float, quiet_seconds: float | None) -> None:
    """Bound every wait on a PostgreSQL connection that is already open.

    Pre-ping is done here, in the pool's checkout event (SQLAlchemy's documented
    pessimistic-disconnect recipe) rather than with ``pool_pre_ping``, whose ping runs
    before any event and so cannot be bounded: the ping may take ``ping_seconds``, and a
    checked-out connection may then stay ``quiet_seconds`` without starting a statement
    or finishing one (None: unbounded, for operator commands that may rightly run long).
    Fetching from a server-side cursor starts no statement: a response streamed from one
    for longer than that must re-arm (``WATCHDOG.arm``) as it goes."""
    if engine.dialect.name != "postgresql":
        return
    from sqlalchemy.exc import DisconnectionError

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
        WATCHDOG.arm(dbapi_connection, ping_seconds)
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
        except engine.dialect.loaded_dbapi.Error as error:
            WATCHDOG.disarm(dbapi_connection)
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("the pooled connection did not answer a ping") from error
        if quiet_seconds is None:
            WATCHDOG.disarm(dbapi_connection)
        else:
            WATCHDOG.arm(dbapi_connection, quiet_seconds)

    if quiet_seconds is not None:

        @event.listens_for(engine, "before_cursor_execute")
        def _statement(
            conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any, many: Any
        ) -> None:
            WATCHDOG.arm(conn.connection.dbapi_connection, quiet_seconds)

    @event.listens_for(engine, "checkin")
    def _back_in_pool(dbapi_connection: Any, connection_record: Any) -> None:
        if dbapi_connection is not None:
            WATCHDOG.disarm(dbapi_connection)

    @event.listens_for(engine, "close")
    def _closed(dbapi_connection: Any, connection_record: Any) -> None:
        WATCHDOG.disarm(dbapi_connection)
