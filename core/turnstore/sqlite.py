"""The embedded backend: one SQLite file on the app's own disk (the default, offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

from core.storage import BUSY_TIMEOUT_S
from core.turnstore.base import WRITE_TRANSACTION, TurnStore


class SQLiteStore(TurnStore):
    """Turns in a SQLite file. Several processes may share the file: a writer takes the lock when its transaction
    begins and the others wait up to ``BUSY_TIMEOUT_S``."""

    name = "sqlite"
    label = "SQLite"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)

    @property
    def location(self) -> str:
        return str(self.path)

    def _create_engine(self) -> Engine:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(f"sqlite:///{self.path}", connect_args={"timeout": BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun below, not by the sqlite3 module
            dbapi_conn.execute("PRAGMA foreign_keys = ON")

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # A write transaction locks the file at once: one that read first could not upgrade its lock while
            # another process holds it, and SQLite would fail it without waiting.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_TRANSACTION) else "BEGIN")

        return engine
