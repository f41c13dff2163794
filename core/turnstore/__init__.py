"""The turn store: turns, feedback and experiment assignments behind one interface, in SQLite or PostgreSQL.

``create_store(config)`` picks the backend from ``AVATAR_TURN_STORE``: "sqlite" (a file on the app's disk, the
default offline), "postgres" (``DATABASE_URL``, or the PG* variables a Databricks Apps database resource injects,
with a refreshing OAuth token as password), or "auto" — postgres when either is set, else sqlite. The schema is
created and migrated on first use (``core.turnstore.schema``); writes survive an unreachable database in memory
(``core.turnstore.outbox``).
"""

from __future__ import annotations

from core.backend import pick_backend
from core.config import StoreConfig
from core.turnstore.base import TurnStore
from core.turnstore.outbox import StoreUnavailable
from core.turnstore.postgres import PostgresStore
from core.turnstore.sqlite import SQLiteStore
from core.turnstore.writes import AssignmentWrite, FeedbackWrite, TurnWrite, UnknownTurn

__all__ = [
    "STORE_BACKENDS",
    "AssignmentWrite",
    "FeedbackWrite",
    "PostgresStore",
    "SQLiteStore",
    "StoreUnavailable",
    "TurnStore",
    "TurnWrite",
    "UnknownTurn",
    "create_store",
]

STORE_BACKENDS: dict[str, type[TurnStore]] = {"sqlite": SQLiteStore, "postgres": PostgresStore}


def create_store(config: StoreConfig) -> TurnStore:
    """The configured store (nothing is connected yet).

    Raises:
        ConfigError: an unknown backend, or postgres without the settings it needs.
    """
    name = config.backend.strip().lower()
    if name == "auto":
        name = "postgres" if config.database_url or config.pg_host else "sqlite"
    backend = pick_backend("turn store", STORE_BACKENDS, name)
    if backend is PostgresStore:
        return PostgresStore.from_config(config)
    return SQLiteStore(config.sqlite_path)
