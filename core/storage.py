"""SQLite access shared by the embedded stores (knowledge-base index, response cache, turn log)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

BUSY_TIMEOUT_S = 10.0
"""How long a writer waits for another connection's lock before SQLite gives up."""


@contextmanager
def transaction(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A fresh connection with foreign keys on, in one transaction: committed on success, rolled back on error,
    closed afterwards."""
    with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)) as db:
        db.execute("PRAGMA foreign_keys = ON")
        with db:
            yield db
