"""The turn store's base class: one SQLAlchemy engine, its schema, writes through the outbox, reads as DataFrames.

A backend implements ``_create_engine`` (and may serialise schema changes across instances in ``_lock_schema``);
everything else — connecting lazily, migrating once, keeping writes while the database is unreachable, turning
driver errors into ``StoreUnavailable`` — lives here, the same for every backend.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import pandas as pd
from sqlalchemy import Connection, Engine, Table, text
from sqlalchemy.dialects import postgresql, sqlite

from core.turnstore.outbox import UNREACHABLE, Outbox, StoreUnavailable, Write
from core.turnstore.schema import SCHEMA_VERSION, migrate

log = logging.getLogger(__name__)

WRITE_TRANSACTION = "turnstore_write"
"""Execution option marking a connection whose transaction will write (SQLite takes its write lock up front)."""
SHUTDOWN_FLUSH_S = 5.0
"""At shutdown, how long waiting writes get to reach a database that has come back."""
_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class TurnStore:
    """Where turns, feedback and experiment assignments live; safe to share between threads.

    Writes (``write``) never raise for an unreachable database: they wait in ``outbox`` and are retried. Reads
    (``frame``) raise ``StoreUnavailable`` with a message fit for the dashboard.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._ready = False
        self._engine_lock = threading.Lock()
        self.outbox = Outbox(self._apply)

    # -- what a backend provides -------------------------------------------------------------------------------

    def _create_engine(self) -> Engine:
        """A SQLAlchemy engine for this database (no connection is made yet)."""
        raise NotImplementedError

    def _lock_schema(self, conn: Connection) -> None:
        """Inside the migration's transaction: keep other instances from migrating at the same time."""

    @property
    def location(self) -> str:
        """Where the data is, without secrets (a file path, host:port/database)."""
        raise NotImplementedError

    # -- connections -------------------------------------------------------------------------------------------

    def engine(self) -> Engine:
        """The engine, its schema at ``SCHEMA_VERSION``. Raises StoreUnavailable when the database cannot be used."""
        with self._engine_lock:
            if not self._ready:
                try:
                    if self._engine is None:
                        self._engine = self._create_engine()
                    with self._connect(write=True) as conn:
                        self._lock_schema(conn)
                        found = migrate(conn)
                except (*UNREACHABLE, OSError) as exc:  # OSError: the SQLite file's folder cannot be made
                    raise StoreUnavailable(f"{self.label} at {self.location}: {_first_line(exc)}") from exc
                self._ready = True
                log.info("turn store: %s at %s, schema version %d (was %d)", self.label, self.location,
                         SCHEMA_VERSION, found)
            return self._engine

    def connect(self) -> bool:
        """Connect and migrate now (at start-up) rather than at the first turn; False (logged) when unreachable."""
        try:
            self.engine()
        except StoreUnavailable as exc:
            log.warning("turn store unreachable at start (%s); turns wait in memory until it is back", exc)
            return False
        return True

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        assert self._engine is not None
        with self._engine.connect() as conn:
            if write:
                conn.execution_options(**{WRITE_TRANSACTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on error."""
        self.engine()
        with self._connect(write=True) as conn:
            yield conn

    def insert(self, table: Table) -> Any:
        """This dialect's INSERT for ``table``, which has ``on_conflict_do_nothing``/``on_conflict_do_update``."""
        return _INSERTS[self.engine().dialect.name](table)

    # -- writing and reading -----------------------------------------------------------------------------------

    def write(self, write: Write) -> bool:
        """Store ``write`` now, or keep it for later when the database is unreachable; True when stored now."""
        return self.outbox.submit(write)

    def _apply(self, write: Write) -> None:
        with self.transaction() as conn:
            write.apply(self, conn)

    def frame(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """The rows of a query (``:name`` parameters) as a DataFrame. Raises StoreUnavailable."""
        try:
            self.engine()
            with self._connect(write=False) as conn:
                return pd.read_sql_query(text(sql), conn, params=dict(params or {}))
        except UNREACHABLE as exc:
            raise StoreUnavailable(self.unavailable_message(exc)) from exc

    def unavailable_message(self, exc: BaseException) -> str:
        """What the dashboard says while the database cannot be read."""
        waiting = self.outbox.pending
        kept = f" {waiting} writes are kept in memory and will be stored when it is back." if waiting else ""
        reason = str(exc) if isinstance(exc, StoreUnavailable) else f"{self.label} at {self.location}: " + \
            _first_line(exc)
        return f"The turn store is unreachable ({reason}).{kept}"

    def status(self) -> str:
        """One line for the status panel: the backend, where, and writes waiting."""
        line = f"{self.label} at {self.location}"
        if waiting := self.outbox.pending:
            line += f" — unreachable, {waiting} writes waiting in memory ({self.outbox.last_error})"
        return line

    def close(self, timeout_s: float = SHUTDOWN_FLUSH_S) -> None:
        """Give waiting writes a last chance, say what is lost, and close the connections."""
        if self.outbox.pending and not self.outbox.wait_empty(timeout_s):
            log.error("turn store: %d writes could not be stored before shutdown", self.outbox.pending)
        if self._engine is not None:
            self._engine.dispose()


def _first_line(exc: BaseException) -> str:
    """A driver error's first line (psycopg and SQLAlchemy append SQL and links below it)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
