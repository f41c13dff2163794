"""The turn store's tables (SQLAlchemy Core, one definition for SQLite and PostgreSQL) and their migrations.

``docs/turn_log_schema.md`` documents every column; ``tests/test_turnstore.py`` checks the two agree on both
backends. A database is brought to ``SCHEMA_VERSION`` by ``migrate``: an empty one gets the current tables at once,
an older one runs each step after its version in order. Version 1 was the SQLite-only turn log (its version in
``PRAGMA user_version``); version 2 adds turn keys, experiment assignments and feedback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import (
    Column,
    Connection,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import sqlite

from core.costs import COMPONENTS

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

SECONDS = Double().with_variant(sqlite.REAL(), "sqlite")
"""Times and money: DOUBLE PRECISION on PostgreSQL (its REAL is 4 bytes: a Unix time would lose minutes), REAL on
SQLite (which is 8 bytes there)."""

metadata = MetaData()

turns = Table(
    "turns",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("turn_key", Text, nullable=False),
    Column("ts", SECONDS, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("question", Text, nullable=False),
    Column("reply", Text),
    Column("error", Text),
    Column("cache_hit", Integer, nullable=False),
    Column("router", Text),
    Column("llm_backend", Text),
    Column("llm_model", Text),
    Column("tts_backend", Text),
    Column("asr_backend", Text),
    Column("retrieval_backend", Text),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("tts_characters", Integer, nullable=False),
    Column("asr_audio_s", SECONDS, nullable=False),
    Column("retrieval_queries", Integer, nullable=False),
    Column("user_emotion", Text),
    Column("user_emotion_score", SECONDS),
    Column("reply_emotion", Text),
    Column("reply_emotion_score", SECONDS),
    Column("experiment", Text),
    Column("variant", Text),
    Index("turns_by_key", "turn_key", unique=True),
    Index("turns_by_time", "ts"),
    Index("turns_by_session", "session_id", "ts"),
    Index("turns_by_experiment", "experiment", "variant"),
    sqlite_autoincrement=True,
)

turn_timings = Table(
    "turn_timings",
    metadata,
    Column("turn_id", Integer, ForeignKey("turns.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("seconds", SECONDS, nullable=False),
    PrimaryKeyConstraint("turn_id", "name"),
)

turn_costs = Table(
    "turn_costs",
    metadata,
    Column("turn_id", Integer, ForeignKey("turns.id"), nullable=False),
    Column("preset", Text, nullable=False),
    *(Column(f"{component}_usd", SECONDS, nullable=False) for component in COMPONENTS),
    Column("total_usd", SECONDS, nullable=False),
    Column("usage_usd", SECONDS, nullable=False),
    Column("hourly_usd", SECONDS, nullable=False),
    Column("turns_per_hour", SECONDS, nullable=False),
    Column("saved_usd", SECONDS, nullable=False),
    Column("unpriced", Text, nullable=False),
    PrimaryKeyConstraint("turn_id", "preset"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("turn_id", Integer, ForeignKey("turns.id"), primary_key=True, autoincrement=False),
    Column("ts", SECONDS, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("rating", Integer, nullable=False),
    Column("comment", Text, nullable=False),
)

assignments = Table(
    "assignments",
    metadata,
    Column("experiment", Text, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("variant", Text, nullable=False),
    Column("ts", SECONDS, nullable=False),
    PrimaryKeyConstraint("experiment", "session_id"),
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_ts", SECONDS, nullable=False),
)

TABLES = (turns, turn_timings, turn_costs, feedback, assignments, schema_version)
"""Every table, parents first."""


def current_version(conn: Connection) -> int:
    """The schema version of the database on ``conn``: 0 when it has no turn log yet."""
    names = set(inspect(conn).get_table_names())
    if schema_version.name in names:
        return int(conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc()))
                   .scalar() or 0)
    if turns.name in names and conn.dialect.name == "sqlite":  # the version-1 log kept its version in a pragma
        return int(conn.execute(text("PRAGMA user_version")).scalar() or 1)
    return 0


def _to_v2(conn: Connection) -> None:
    """Version 1 → 2: a unique key per turn (old turns get "v1-<id>"), its experiment and variant; new tables."""
    conn.execute(text("ALTER TABLE turns ADD COLUMN turn_key TEXT NOT NULL DEFAULT ''"))
    conn.execute(text("UPDATE turns SET turn_key = 'v1-' || id"))
    conn.execute(text("ALTER TABLE turns ADD COLUMN experiment TEXT"))
    conn.execute(text("ALTER TABLE turns ADD COLUMN variant TEXT"))
    for index in turns.indexes:
        index.create(conn, checkfirst=True)
    metadata.create_all(conn, tables=[feedback, assignments, schema_version], checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _to_v2}
"""The step that brings a database from version ``n - 1`` to ``n``."""


def migrate(conn: Connection) -> int:
    """Bring the database on ``conn`` (inside a transaction the caller holds, serialised against other instances) to
    ``SCHEMA_VERSION``; return the version it had."""
    found = current_version(conn)
    if found > SCHEMA_VERSION:
        log.warning("turn store schema is version %d, newer than this app's %d: using it as is", found, SCHEMA_VERSION)
        return found
    if found == 0:
        metadata.create_all(conn, checkfirst=True)
    else:
        for version in range(found + 1, SCHEMA_VERSION + 1):
            log.info("turn store: migrating schema %d → %d", version - 1, version)
            MIGRATIONS[version](conn)
    if found < SCHEMA_VERSION:
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION, applied_ts=time.time()))
    return found
