"""The turn store: backend choice from configuration, migration of a version-1 log, idempotent writes, two app
instances writing at once, and a database that is down at start or goes away mid-run (nothing is lost, no turn
fails), against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.analytics import TurnLog
from core.config import PROJECT_ROOT, StoreConfig, load_config
from core.errors import ConfigError
from core.turnstore import PostgresStore, SQLiteStore, StoreUnavailable, create_store
from tests.postgres import PostgresServer
from tests.turn_writer import asked, turn

RETRY_WAIT_S = 15.0
"""Long enough for the outbox's first retries (1 s, 2 s, 4 s...) after the database comes back."""
V1_SCHEMA = """
CREATE TABLE turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, session_id TEXT NOT NULL, question TEXT NOT NULL,
    reply TEXT, error TEXT, cache_hit INTEGER NOT NULL, router TEXT, llm_backend TEXT, llm_model TEXT,
    tts_backend TEXT, asr_backend TEXT, retrieval_backend TEXT, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, tts_characters INTEGER NOT NULL, asr_audio_s REAL NOT NULL,
    retrieval_queries INTEGER NOT NULL, user_emotion TEXT, user_emotion_score REAL, reply_emotion TEXT,
    reply_emotion_score REAL
);
CREATE INDEX turns_by_time ON turns (ts);
CREATE INDEX turns_by_session ON turns (session_id, ts);
CREATE TABLE turn_timings (turn_id INTEGER NOT NULL REFERENCES turns (id), name TEXT NOT NULL,
    seconds REAL NOT NULL, PRIMARY KEY (turn_id, name));
CREATE TABLE turn_costs (turn_id INTEGER NOT NULL REFERENCES turns (id), preset TEXT NOT NULL,
    llm_usd REAL NOT NULL, tts_usd REAL NOT NULL, asr_usd REAL NOT NULL, lipsync_usd REAL NOT NULL,
    emotion_usd REAL NOT NULL, retrieval_usd REAL NOT NULL, compute_usd REAL NOT NULL, total_usd REAL NOT NULL,
    usage_usd REAL NOT NULL, hourly_usd REAL NOT NULL, turns_per_hour REAL NOT NULL, saved_usd REAL NOT NULL,
    unpriced TEXT NOT NULL, PRIMARY KEY (turn_id, preset));
INSERT INTO turns VALUES (1, 1767225600.0, 'old', 'Old question?', 'Old answer.', NULL, 0, NULL, 'local', 'm',
    'piper', NULL, 'local', 10, 5, 11, 0.0, 1, 'joy', 0.9, 'joy', 0.8);
INSERT INTO turn_timings VALUES (1, 'first_audio_s', 0.7);
PRAGMA user_version = 1;
"""


# -- choosing the backend ------------------------------------------------------------------------------------------


def test_the_backend_follows_the_environment(tmp_path):
    local = create_store(load_config({"AVATAR_CACHE_DIR": str(tmp_path)}).store)
    assert isinstance(local, SQLiteStore) and local.path == tmp_path / "turns.sqlite"
    url = create_store(load_config({"DATABASE_URL": "postgres://u:secret@db.example:6543/avatar"}).store)
    assert isinstance(url, PostgresStore) and url.url.drivername == "postgresql+psycopg"
    assert url.location == "db.example:6543/avatar" and "secret" not in url.status()
    lakebase = create_store(load_config({"PGHOST": "instance.database.example", "PGDATABASE": "databricks_postgres",
                                         "PGUSER": "6f1c-client-id", "PGSSLMODE": "require",
                                         "PGAPPNAME": "avatar"}).store)
    assert isinstance(lakebase, PostgresStore) and lakebase.password is not None  # the OAuth token, per connection
    assert lakebase.url.query["sslmode"] == "require" and lakebase.url.username == "6f1c-client-id"
    forced = create_store(load_config({"AVATAR_TURN_STORE": "sqlite", "DATABASE_URL": "postgresql://x/y",
                                       "AVATAR_TURN_STORE_PATH": str(tmp_path / "t.db")}).store)
    assert isinstance(forced, SQLiteStore) and forced.path == tmp_path / "t.db"


@pytest.mark.parametrize(("settings", "message"), [
    ({"AVATAR_TURN_STORE": "mongo"}, "Unknown turn store backend 'mongo'"),
    ({"AVATAR_TURN_STORE": "postgres"}, "needs DATABASE_URL, or PGHOST"),
    ({"DATABASE_URL": "mysql://u@h/db"}, "must be a PostgreSQL URL"),
    ({"DATABASE_URL": "not a url"}, "not a valid database URL"),
])
def test_a_bad_store_setting_is_a_clear_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        create_store(load_config(settings).store)


# -- schema ------------------------------------------------------------------------------------------------------


def test_a_version_1_log_is_migrated_in_place(tmp_path):
    path = tmp_path / "turns.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
    log = TurnLog(SQLiteStore(path))
    log.record_turn("new", asked(), turn(0.4), turn_key="new-key")
    rows = log.export_rows()
    assert [(r["turn_key"], r["question"], r["first_audio_s"]) for r in rows] == [
        ("v1-1", "Old question?", 0.7), ("new-key", "What is Lakebase?", 0.4)]
    log.record_feedback("v1-1", "up", "old but good")
    assert log.feedback_summary().iloc[0]["up"] == 1
    assert log.store.frame("SELECT version FROM schema_version")["version"].tolist() == [2]
    TurnLog(SQLiteStore(path)).record_turn("again", asked(), turn(0.5))  # a second start migrates nothing
    assert log.store.frame("SELECT COUNT(*) AS n FROM schema_version")["n"].item() == 1


def test_a_retried_write_is_stored_once(make_store):
    store = make_store()
    writes = []
    store_write = store.write
    store.write = lambda write: writes.append(write) or store_write(write)  # type: ignore[method-assign]
    TurnLog(store).record_turn("s", asked(), turn(0.4), turn_key="once")
    assert store_write(writes[0]) is True  # again, as after a lost acknowledgement
    assert store.frame("SELECT COUNT(*) AS n FROM turns")["n"].item() == 1
    assert store.frame("SELECT COUNT(*) AS n FROM turn_timings")["n"].item() == 2  # first_audio_s and total_s


# -- two instances --------------------------------------------------------------------------------------------------

TURNS_PER_INSTANCE = 40


def test_two_app_instances_writing_at_once_lose_nothing(make_store):
    store = make_store()
    where = ["--sqlite", str(store.path)] if isinstance(store, SQLiteStore) else [
        "--url", store.url.render_as_string(hide_password=False)]
    start_at = time.time() + 4.0  # both have connected and migrated by then
    writers = [subprocess.Popen([sys.executable, "-m", "tests.turn_writer", *where, "--instance", name,
                                 "--turns", str(TURNS_PER_INSTANCE), "--start-at", str(start_at)],
                                cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name in ("a", "b")]
    windows = []
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        windows.append(json.loads(out))
    assert max(w["started"] for w in windows) < min(w["finished"] for w in windows)  # they did write at once
    log = TurnLog(store)
    rows = log.export_rows()
    assert len(rows) == 2 * TURNS_PER_INSTANCE
    assert {r["turn_key"] for r in rows} == {f"{n}-{i}" for n in "ab" for i in range(TURNS_PER_INSTANCE)}
    assert all(r["rating"] == (1 if int(r["turn_key"].split("-")[1]) % 2 else -1) for r in rows)
    sessions = log.experiment_sessions("load")
    assert len(sessions) == 6 and set(sessions["variant"]) == {"a", "b"}
    assert store.frame("SELECT COUNT(*) AS n FROM turn_costs")["n"].item() == 2 * TURNS_PER_INSTANCE * len(
        log.prices.preset_names)


# -- outages ----------------------------------------------------------------------------------------------------


def test_a_database_down_at_start_loses_no_turn(postgres: PostgresServer):
    url = postgres.url(postgres.create_database())
    postgres.stop()
    try:
        log = TurnLog(PostgresStore(url, connect_timeout_s=1))
        started = time.perf_counter()
        costs = [log.record_turn("s", asked(f"Question {i}?"), turn(0.3), turn_key=f"down-{i}") for i in range(3)]
        assert time.perf_counter() - started < 3.0  # one failed connection attempt, not one per turn
        assert all(c["actual"].total_usd >= 0 for c in costs)  # the turn's costs come back as usual
        assert log.record_feedback("down-1", "up", "kept while down") is False  # queued behind its turn
        assert log.store.outbox.pending == 4
        with pytest.raises(StoreUnavailable, match=r"unreachable .*4 writes are kept in memory"):
            log.feedback_summary()
        assert "4 writes waiting" in log.store.status()
    finally:
        postgres.start()
    assert log.store.outbox.wait_empty(RETRY_WAIT_S)
    rows = log.export_rows()
    assert [r["turn_key"] for r in rows] == ["down-0", "down-1", "down-2"]  # in order
    assert [r["rating"] for r in rows] == [None, 1, None]
    assert "waiting" not in log.store.status()


def test_a_sqlite_folder_that_cannot_be_made_fails_no_turn(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    log = TurnLog(SQLiteStore(blocker / "turns.sqlite"))
    log.record_turn("s", asked(), turn(0.3), turn_key="k")
    assert log.store.outbox.pending == 1
    with pytest.raises(StoreUnavailable, match="SQLite at .*not-a-folder"):
        log.export_rows()
    blocker.unlink()
    assert log.store.outbox.wait_empty(RETRY_WAIT_S)
    assert [r["turn_key"] for r in log.export_rows()] == ["k"]


def test_a_database_lost_mid_run_keeps_the_turns_of_the_outage(postgres: PostgresServer):
    log = TurnLog(PostgresStore(postgres.url(postgres.create_database()), connect_timeout_s=1))
    log.record_turn("s", asked("Before?"), turn(0.3), turn_key="before")
    postgres.stop()
    try:
        log.record_turn("s", asked("During?"), turn(0.3), turn_key="during")
        log.record_error("s", "Failed during?", ConfigError("boom"), turn_key="failed")
        assert log.store.outbox.pending == 2
    finally:
        postgres.start()
    assert log.store.outbox.wait_empty(RETRY_WAIT_S)
    log.record_turn("s", asked("After?"), turn(0.3), turn_key="after")
    assert [r["turn_key"] for r in log.export_rows()] == ["before", "during", "failed", "after"]


def test_store_config_defaults_keep_the_log_next_to_the_cache():
    assert StoreConfig().sqlite_path == Path(PROJECT_ROOT) / ".cache" / "turns.sqlite"


def test_a_write_the_database_rejects_is_dropped_without_failing_the_turn(make_store, caplog):
    log = TurnLog(make_store())
    log.record_turn("s", asked(), turn(0.3), turn_key="dup")
    nameless = asked()
    object.__setattr__(nameless, "text", None)  # a bug upstream: the question is NOT NULL, the database refuses
    costs = log.record_turn("s", nameless, turn(0.3), turn_key="bad")
    assert costs and log.store.outbox.pending == 0 and log.store.outbox.dropped == 1
    assert "rejected turn bad" in caplog.text
    assert [r["turn_key"] for r in log.export_rows()] == ["dup"]
