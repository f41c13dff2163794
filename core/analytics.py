"""The turn log: every turn's latencies, usage, cost per preset, backends, emotions and errors in SQLite, aggregated.

Three tables (documented column by column in ``docs/turn_log_schema.md``): ``turns`` (one row per turn, errors
included), ``turn_timings`` (one row per key of the turn's ``timings_s``) and ``turn_costs`` (one row per preset).
Every call opens its own connection and writes hold a lock, so one ``TurnLog`` can be shared by UI threads.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import AppConfig
from core.costs import COMPONENTS, CostBreakdown, PriceTable, costs_by_preset, monthly_projection, usage_from_turn
from core.errors import PipelineError
from core.storage import transaction
from core.types import EMOTION_LABELS, Emotion, TurnComplete, UserTurn

log = logging.getLogger(__name__)

TURN_LOG_FILE = "turns.sqlite"
SCHEMA_VERSION = 1
DEFAULT_CONVERSATIONS_PER_DAY = 100
DEFAULT_TURNS_PER_CONVERSATION = 5

_COST_COLUMNS = ", ".join(f"{component}_usd REAL NOT NULL" for component in COMPONENTS)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    session_id TEXT NOT NULL,
    question TEXT NOT NULL,
    reply TEXT,
    error TEXT,
    cache_hit INTEGER NOT NULL,
    router TEXT,
    llm_backend TEXT,
    llm_model TEXT,
    tts_backend TEXT,
    asr_backend TEXT,
    retrieval_backend TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    tts_characters INTEGER NOT NULL,
    asr_audio_s REAL NOT NULL,
    retrieval_queries INTEGER NOT NULL,
    user_emotion TEXT,
    user_emotion_score REAL,
    reply_emotion TEXT,
    reply_emotion_score REAL
);
CREATE INDEX IF NOT EXISTS turns_by_time ON turns (ts);
CREATE INDEX IF NOT EXISTS turns_by_session ON turns (session_id, ts);
CREATE TABLE IF NOT EXISTS turn_timings (
    turn_id INTEGER NOT NULL REFERENCES turns (id),
    name TEXT NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (turn_id, name)
);
CREATE TABLE IF NOT EXISTS turn_costs (
    turn_id INTEGER NOT NULL REFERENCES turns (id),
    preset TEXT NOT NULL,
    {_COST_COLUMNS},
    total_usd REAL NOT NULL,
    usage_usd REAL NOT NULL,
    hourly_usd REAL NOT NULL,
    turns_per_hour REAL NOT NULL,
    saved_usd REAL NOT NULL,
    unpriced TEXT NOT NULL,
    PRIMARY KEY (turn_id, preset)
);
"""
UNPRICED_SEPARATOR = "; "


def _emotion(emotion: Emotion | None) -> tuple[str | None, float | None]:
    return (emotion.label, emotion.confidence) if emotion else (None, None)


class TurnLog:
    """An embedded SQLite store of turns, with the aggregations the dashboard shows.

    Responsibilities: record finished and failed turns (pricing each finished one under every preset of the price
    table), export flat rows for a warehouse, and aggregate latencies, costs and emotions into DataFrames.
    """

    def __init__(self, path: str | Path, prices: PriceTable | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.prices = prices or PriceTable.load()
        self._lock = threading.Lock()
        with self._connection() as conn:
            conn.executescript(SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @classmethod
    def for_config(cls, config: AppConfig, prices: PriceTable | None = None) -> TurnLog:
        """The log at ``<cache_dir>/turns.sqlite``."""
        return cls(config.cache_dir / TURN_LOG_FILE, prices)

    def _connection(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path)

    # -- writing ----------------------------------------------------------------------------------------------

    def record_turn(
        self,
        session_id: str,
        user: UserTurn,
        done: TurnComplete,
        *,
        router: str | None = None,
        timestamp: float | None = None,
    ) -> dict[str, CostBreakdown]:
        """Store a finished turn with its cost under every preset; returns those costs by preset name.

        The spoken question's audio length and ASR backend come from ``user.transcript`` when the pipeline records
        no "asr" StageMetrics.
        """
        transcript = user.transcript
        usage = usage_from_turn(
            done,
            transcript.audio_duration_s if transcript else 0.0,
            asr_backend=transcript.backend if transcript else "",
        )
        costs = costs_by_preset(usage, self.prices)
        row = {
            "ts": time.time() if timestamp is None else timestamp,
            "session_id": session_id,
            "question": user.text,
            "reply": done.reply.text,
            "error": None,
            "cache_hit": int(usage.cache_hit),
            "router": router,
            "llm_backend": usage.llm_backend,
            "llm_model": usage.llm_model,
            "tts_backend": usage.tts_backend,
            "asr_backend": usage.asr_backend,
            "retrieval_backend": usage.retrieval_backend,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "tts_characters": usage.tts_characters,
            "asr_audio_s": usage.asr_audio_s,
            "retrieval_queries": usage.retrieval_queries,
        }
        row["user_emotion"], row["user_emotion_score"] = _emotion(user.emotion)
        row["reply_emotion"], row["reply_emotion_score"] = _emotion(done.emotion)
        self._insert(row, done.timings_s, costs.values())
        return costs

    def record_error(
        self,
        session_id: str,
        question: str,
        error: BaseException | str,
        *,
        user: UserTurn | None = None,
        timings_s: Mapping[str, float] | None = None,
        router: str | None = None,
        timestamp: float | None = None,
    ) -> int:
        """Store a turn that failed (no reply, no cost); returns its row id."""
        message = error.user_message() if isinstance(error, PipelineError) else str(error)
        transcript = user.transcript if user else None
        row = {
            "ts": time.time() if timestamp is None else timestamp,
            "session_id": session_id,
            "question": question,
            "reply": None,
            "error": message or type(error).__name__,
            "cache_hit": 0,
            "router": router,
            "llm_backend": None,
            "llm_model": None,
            "tts_backend": None,
            "asr_backend": transcript.backend if transcript else None,
            "retrieval_backend": None,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "tts_characters": 0,
            "asr_audio_s": transcript.audio_duration_s if transcript else 0.0,
            "retrieval_queries": 0,
            "reply_emotion": None,
            "reply_emotion_score": None,
        }
        row["user_emotion"], row["user_emotion_score"] = _emotion(user.emotion if user else None)
        return self._insert(row, timings_s or {}, ())

    def _insert(self, row: Mapping[str, Any], timings_s: Mapping[str, float], costs: Iterable[CostBreakdown]) -> int:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cost_columns = ["turn_id", "preset", *(f"{c}_usd" for c in COMPONENTS), "total_usd", "usage_usd",
                        "hourly_usd", "turns_per_hour", "saved_usd", "unpriced"]
        with self._lock, self._connection() as conn:
            turn_id = conn.execute(f"INSERT INTO turns ({columns}) VALUES ({marks})", tuple(row.values())).lastrowid
            conn.executemany(
                "INSERT INTO turn_timings (turn_id, name, seconds) VALUES (?, ?, ?)",
                [(turn_id, name, float(seconds)) for name, seconds in timings_s.items()],
            )
            conn.executemany(
                f"INSERT INTO turn_costs ({', '.join(cost_columns)}) VALUES ({', '.join('?' for _ in cost_columns)})",
                [
                    (turn_id, c.preset, *c.components().values(), c.total_usd, c.usage_usd, c.hourly_usd,
                     c.turns_per_hour, c.saved_usd, UNPRICED_SEPARATOR.join(c.unpriced))
                    for c in costs
                ],
            )
        log.debug("turn %s logged for session %s", turn_id, row["session_id"])
        return int(turn_id)

    # -- reading ----------------------------------------------------------------------------------------------

    def _frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self._connection() as conn:
            return pd.read_sql_query(sql, conn, params=tuple(params))

    @staticmethod
    def _session_filter(session_id: str | None) -> tuple[str, tuple[Any, ...]]:
        return ("WHERE t.session_id = ?", (session_id,)) if session_id is not None else ("", ())

    def export_rows(self) -> list[dict[str, Any]]:
        """One flat dict per turn, oldest first, every row with the same keys (CSV/Parquet/Spark friendly).

        Keys: every ``turns`` column, ``timestamp`` (ISO 8601, UTC), one key per timing name seen in the log (seconds,
        None when a turn lacks it) and ``cost_<preset>_usd`` per preset seen (None for error turns).
        """
        turns = self._frame("SELECT * FROM turns ORDER BY ts, id")
        timings = self._frame("SELECT turn_id, name, seconds FROM turn_timings")
        costs = self._frame("SELECT turn_id, preset, total_usd FROM turn_costs")
        timing_names = sorted(timings["name"].unique())
        presets = sorted(costs["preset"].unique())
        timing_of = {(r.turn_id, r.name): r.seconds for r in timings.itertuples()}
        cost_of = {(r.turn_id, r.preset): r.total_usd for r in costs.itertuples()}
        rows = []
        for record in turns.to_dict("records"):
            turn_id = record["id"]
            row = {key: (None if pd.isna(value) else value) for key, value in record.items()}
            row["timestamp"] = datetime.fromtimestamp(record["ts"], UTC).isoformat()
            row.update({name: timing_of.get((turn_id, name)) for name in timing_names})
            row.update({f"cost_{preset}_usd": cost_of.get((turn_id, preset)) for preset in presets})
            rows.append(row)
        return rows

    def latency_percentiles(
        self,
        bucket: str = "1h",
        names: Sequence[str] = ("first_audio_s", "total_s"),
        percentiles: Sequence[int] = (50, 95),
        session_id: str | None = None,
    ) -> pd.DataFrame:
        """Percentiles of latencies per time bucket, over finished turns (errors excluded).

        ``bucket`` is a pandas frequency ("15min", "1h", "1D"). Columns: ``bucket`` (UTC timestamp), ``turns`` and
        ``<name>_p<percentile>`` for each name and percentile (linear interpolation, as numpy's default).
        """
        where, params = self._session_filter(session_id)
        clause = f"{where} {'AND' if where else 'WHERE'} t.error IS NULL"
        frame = self._frame(
            f"SELECT t.id AS turn_id, t.ts, tt.name, tt.seconds FROM turns t "
            f"JOIN turn_timings tt ON tt.turn_id = t.id {clause}",
            params,
        )
        columns = ["bucket", "turns", *(f"{name}_p{p}" for name in names for p in percentiles)]
        if frame.empty:
            return pd.DataFrame(columns=columns)
        frame["bucket"] = pd.to_datetime(frame["ts"], unit="s", utc=True).dt.floor(bucket)
        rows = []
        for bucket_start, group in frame.groupby("bucket"):
            row: dict[str, Any] = {"bucket": bucket_start, "turns": group["turn_id"].nunique()}
            for name in names:
                values = group.loc[group["name"] == name, "seconds"]
                for p in percentiles:
                    row[f"{name}_p{p}"] = float(values.quantile(p / 100)) if len(values) else float("nan")
            rows.append(row)
        return pd.DataFrame(rows, columns=columns)

    def cost_over_time(self, bucket: str = "1h", session_id: str | None = None) -> pd.DataFrame:
        """Cost per turn per time bucket and preset: columns ``bucket``, ``preset``, ``turns``, ``mean_usd``,
        ``total_usd`` (long format, one line per preset in a chart)."""
        where, params = self._session_filter(session_id)
        frame = self._frame(
            f"SELECT t.ts, c.preset, c.total_usd FROM turn_costs c JOIN turns t ON t.id = c.turn_id {where}", params
        )
        columns = ["bucket", "preset", "turns", "mean_usd", "total_usd"]
        if frame.empty:
            return pd.DataFrame(columns=columns)
        frame["bucket"] = pd.to_datetime(frame["ts"], unit="s", utc=True).dt.floor(bucket)
        grouped = frame.groupby(["bucket", "preset"], sort=True)["total_usd"]
        result = pd.DataFrame(
            {"turns": grouped.size(), "mean_usd": grouped.mean(), "total_usd": grouped.sum()}
        ).reset_index()
        return result[columns]

    def emotion_mix(self, session_id: str | None = None) -> pd.DataFrame:
        """How often each emotion was read, for the user's questions and for the replies.

        Columns ``side`` ("user" or "reply"), ``emotion``, ``count``; every label of ``EMOTION_LABELS`` is listed,
        with 0 when unseen.
        """
        where, params = self._session_filter(session_id)
        frame = self._frame(f"SELECT t.user_emotion, t.reply_emotion FROM turns t {where}", params)
        rows = []
        for side in ("user", "reply"):
            counts = frame[f"{side}_emotion"].dropna().value_counts()
            labels = [*EMOTION_LABELS, *sorted(set(counts.index) - set(EMOTION_LABELS))]
            rows.extend({"side": side, "emotion": label, "count": int(counts.get(label, 0))} for label in labels)
        return pd.DataFrame(rows, columns=["side", "emotion", "count"])

    def cost_breakdowns(self, session_id: str | None = None) -> list[CostBreakdown]:
        """Every stored turn cost, rebuilt as ``CostBreakdown`` values (oldest first)."""
        where, params = self._session_filter(session_id)
        frame = self._frame(
            f"SELECT c.* FROM turn_costs c JOIN turns t ON t.id = c.turn_id {where} ORDER BY t.ts, t.id", params
        )
        return [
            CostBreakdown(
                preset=r["preset"],
                **{f"{c}_usd": float(r[f"{c}_usd"]) for c in COMPONENTS},
                usage_usd=float(r["usage_usd"]),
                hourly_usd=float(r["hourly_usd"]),
                turns_per_hour=float(r["turns_per_hour"]),
                saved_usd=float(r["saved_usd"]),
                unpriced=tuple(filter(None, r["unpriced"].split(UNPRICED_SEPARATOR))),
            )
            for r in frame.to_dict("records")
        ]

    def session_summary(
        self,
        session_id: str | None = None,
        *,
        conversations_per_day: float = DEFAULT_CONVERSATIONS_PER_DAY,
        turns_per_conversation: float = DEFAULT_TURNS_PER_CONVERSATION,
    ) -> pd.DataFrame:
        """One row per preset for a session (or the whole log): turns, errors, cache hits, cost so far, and the
        monthly projection (see ``core.costs.monthly_projection``) at the given traffic.

        Columns: ``preset``, ``turns`` (finished), ``errors``, ``cache_hits``, ``total_usd``, ``mean_turn_usd``,
        ``monthly_usd``, ``monthly_usage_usd``, ``monthly_always_on_usd``, ``monthly_per_turn_usd``.
        """
        columns = ["preset", "turns", "errors", "cache_hits", "total_usd", "mean_turn_usd", "monthly_usd",
                   "monthly_usage_usd", "monthly_always_on_usd", "monthly_per_turn_usd"]
        where, params = self._session_filter(session_id)
        counts = self._frame(
            f"SELECT COUNT(*) - COUNT(t.error) AS turns, COUNT(t.error) AS errors, "
            f"COALESCE(SUM(t.cache_hit), 0) AS cache_hits FROM turns t {where}",
            params,
        ).iloc[0]
        costs = self.cost_breakdowns(session_id)
        projection = monthly_projection(costs, conversations_per_day, turns_per_conversation)
        rows = []
        for preset, month in projection.items():
            totals = [c.total_usd for c in costs if c.preset == preset]
            rows.append({
                "preset": preset,
                "turns": int(counts["turns"]),
                "errors": int(counts["errors"]),
                "cache_hits": int(counts["cache_hits"]),
                "total_usd": sum(totals),
                "mean_turn_usd": sum(totals) / len(totals),
                "monthly_usd": month["total_usd"],
                "monthly_usage_usd": month["usage_usd"],
                "monthly_always_on_usd": month["always_on_usd"],
                "monthly_per_turn_usd": month["per_turn_usd"],
            })
        return pd.DataFrame(rows, columns=columns)
