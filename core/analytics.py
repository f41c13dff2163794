"""The turn log: every turn's latencies, usage, cost per preset, backends, emotions, errors, experiment variant and
user rating, kept in the turn store (SQLite or PostgreSQL, ``core.turnstore``) and aggregated for the dashboard.

Tables (documented column by column in ``docs/turn_log_schema.md``): ``turns`` (one row per turn, errors included),
``turn_timings`` (one row per key of the turn's ``timings_s``), ``turn_costs`` (one row per preset), ``feedback``
(a turn's thumbs up or down and comment) and ``assignments`` (a session's variant in an experiment). Writing never
fails a turn: while the database is unreachable, writes wait in memory and are retried. One ``TurnLog`` can be
shared by UI threads.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import AppConfig
from core.costs import (
    COMPONENTS,
    CostBreakdown,
    PriceTable,
    TurnUsage,
    costs_by_preset,
    monthly_projection,
    usage_from_turn,
)
from core.errors import InputError, PipelineError
from core.turnstore import AssignmentWrite, FeedbackWrite, SQLiteStore, TurnStore, TurnWrite, create_store
from core.types import EMOTION_LABELS, Emotion, TurnComplete, TurnOptions, UserTurn

log = logging.getLogger(__name__)

TURN_LOG_FILE = "turns.sqlite"
DEFAULT_CONVERSATIONS_PER_DAY = 100
DEFAULT_TURNS_PER_CONVERSATION = 5

UNPRICED_SEPARATOR = "; "


RATINGS = {"up": 1, "down": -1}
"""A thumbs up or down as stored in ``feedback.rating``."""
MAX_COMMENT_CHARS = 2000
RECENT_FEEDBACK = 20
"""How many of the latest rated turns the dashboard lists."""


def new_turn_key() -> str:
    """A key for a turn that is unique across every instance writing to one store."""
    return uuid.uuid4().hex


def _emotion(emotion: Emotion | None) -> tuple[str | None, float | None]:
    return (emotion.label, emotion.confidence) if emotion else (None, None)


def _assignment(options: TurnOptions | None) -> dict[str, str | None]:
    return {"experiment": (options.experiment or None) if options else None,
            "variant": (options.variant or None) if options else None}


class TurnLog:
    """Turns, ratings and experiment assignments in a turn store, with the aggregations the dashboard shows.

    Responsibilities: record finished and failed turns (pricing each finished one under every preset of the price
    table), users' ratings and sessions' experiment variants; export flat rows for a warehouse; aggregate latencies,
    costs, emotions and ratings into DataFrames. Reads raise ``StoreUnavailable`` while the database is down.
    """

    def __init__(self, store: TurnStore | str | Path, prices: PriceTable | None = None) -> None:
        self.store = store if isinstance(store, TurnStore) else SQLiteStore(store)
        self.prices = prices or PriceTable.load()

    @classmethod
    def for_config(cls, config: AppConfig, prices: PriceTable | None = None) -> TurnLog:
        """The log in the configured store (``AVATAR_TURN_STORE``; by default ``<cache_dir>/turns.sqlite``)."""
        return cls(create_store(config.store), prices)

    # -- writing ----------------------------------------------------------------------------------------------

    def record_turn(
        self,
        session_id: str,
        user: UserTurn,
        done: TurnComplete,
        *,
        router: str | None = None,
        timestamp: float | None = None,
        turn_key: str | None = None,
        options: TurnOptions | None = None,
        costs: Mapping[str, CostBreakdown] | None = None,
    ) -> dict[str, CostBreakdown]:
        """Store a finished turn with its cost under every preset; returns those costs by preset name.

        ``turn_key`` (new when None) names the turn for feedback; ``options`` carry its experiment and variant;
        ``costs`` are its ``price_turn`` when already computed.
        """
        usage = self._usage(user, done)
        costs = dict(costs) if costs is not None else costs_by_preset(usage, self.prices)
        row = {
            "turn_key": turn_key or new_turn_key(),
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
            **_assignment(options),
        }
        row["user_emotion"], row["user_emotion_score"] = _emotion(user.emotion)
        row["reply_emotion"], row["reply_emotion_score"] = _emotion(done.emotion)
        self._insert(row, done.timings_s, costs.values())
        return costs

    def price_turn(self, user: UserTurn, done: TurnComplete) -> dict[str, CostBreakdown]:
        """What a finished turn cost under every preset of the price table, by preset name."""
        return costs_by_preset(self._usage(user, done), self.prices)

    @staticmethod
    def _usage(user: UserTurn, done: TurnComplete) -> TurnUsage:
        """A turn's usage; the spoken question's audio length and ASR backend come from ``user.transcript`` when
        the pipeline records no "asr" StageMetrics."""
        transcript = user.transcript
        return usage_from_turn(done, transcript.audio_duration_s if transcript else 0.0,
                               asr_backend=transcript.backend if transcript else "")

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
        turn_key: str | None = None,
        options: TurnOptions | None = None,
    ) -> str:
        """Store a turn that failed (no reply, no cost); returns its turn key."""
        message = error.user_message() if isinstance(error, PipelineError) else str(error)
        transcript = user.transcript if user else None
        row = {
            "turn_key": turn_key or new_turn_key(),
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
            **_assignment(options),
        }
        row["user_emotion"], row["user_emotion_score"] = _emotion(user.emotion if user else None)
        return self._insert(row, timings_s or {}, ())

    def _insert(self, row: Mapping[str, Any], timings_s: Mapping[str, float], costs: Iterable[CostBreakdown]) -> str:
        cost_rows = [
            {"preset": c.preset, **{f"{name}_usd": usd for name, usd in c.components().items()},
             "total_usd": c.total_usd, "usage_usd": c.usage_usd, "hourly_usd": c.hourly_usd,
             "turns_per_hour": c.turns_per_hour, "saved_usd": c.saved_usd,
             "unpriced": UNPRICED_SEPARATOR.join(c.unpriced)}
            for c in costs
        ]
        stored = self.store.write(TurnWrite(dict(row), dict(timings_s), cost_rows))
        log.debug("turn %s of session %s %s", row["turn_key"], row["session_id"], "logged" if stored else "queued")
        return str(row["turn_key"])

    def record_feedback(self, turn_key: str, rating: str, comment: str | None = None, *, session_id: str = "",
                        timestamp: float | None = None) -> bool:
        """Store a user's thumbs "up" or "down" on a turn (or "" to withdraw it), with an optional comment
        (None keeps the stored one). Returns True when stored now, False when kept until the database is back.

        Raises:
            InputError: an unknown rating, an over-long comment, or (database reachable) a turn key never logged.
        """
        if rating and rating not in RATINGS:
            raise InputError(f"A rating is 'up' or 'down' (or empty to withdraw it), not {rating!r}.")
        if comment is not None and len(comment) > MAX_COMMENT_CHARS:
            raise InputError(f"That comment is {len(comment)} characters long; the limit is {MAX_COMMENT_CHARS}.")
        if not turn_key or not turn_key.strip():
            raise InputError("Say which turn the rating is for: the turn_key that /ask returned.")
        write = FeedbackWrite(turn_key.strip(), session_id, RATINGS.get(rating),
                              time.time() if timestamp is None else timestamp, comment)
        return self.store.write(write)

    def record_assignment(self, experiment: str, session_id: str, variant: str,
                          timestamp: float | None = None) -> None:
        """Remember a session's variant in an experiment (the first stored for a session stands)."""
        self.store.write(AssignmentWrite(experiment, session_id, variant,
                                         time.time() if timestamp is None else timestamp))

    # -- reading ----------------------------------------------------------------------------------------------

    def _frame(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        return self.store.frame(sql, params)

    @staticmethod
    def _session_filter(session_id: str | None) -> tuple[str, dict[str, Any]]:
        return ("WHERE t.session_id = :session_id", {"session_id": session_id}) if session_id is not None else ("", {})

    def export_rows(self) -> list[dict[str, Any]]:
        """One flat dict per turn, oldest first, every row with the same keys (CSV/Parquet/Spark friendly).

        Keys: every ``turns`` column, ``rating`` (1, -1 or None) and ``rating_comment``, ``timestamp`` (ISO 8601,
        UTC), one key per timing name seen in the log (seconds, None when a turn lacks it) and ``cost_<preset>_usd``
        per preset seen (None for error turns).
        """
        turns = self._frame("SELECT t.*, f.rating, f.comment AS rating_comment FROM turns t "
                            "LEFT JOIN feedback f ON f.turn_id = t.id ORDER BY t.ts, t.id")
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

    # -- ratings and experiments ------------------------------------------------------------------------------

    def feedback_summary(self, session_id: str | None = None) -> pd.DataFrame:
        """One row: ``answers`` (finished turns), ``rated``, ``up``, ``down``, ``up_rate`` (of rated; NaN when none)
        and ``comments`` (ratings with a comment)."""
        where, params = self._session_filter(session_id)
        frame = self._frame(
            f"SELECT COUNT(*) - COUNT(t.error) AS answers, COUNT(f.rating) AS rated, "
            f"COALESCE(SUM(CASE WHEN f.rating > 0 THEN 1 ELSE 0 END), 0) AS up, "
            f"COALESCE(SUM(CASE WHEN f.rating < 0 THEN 1 ELSE 0 END), 0) AS down, "
            f"COALESCE(SUM(CASE WHEN f.comment <> '' THEN 1 ELSE 0 END), 0) AS comments "
            f"FROM turns t LEFT JOIN feedback f ON f.turn_id = t.id {where}",
            params,
        ).astype(int)
        frame["up_rate"] = frame["up"] / frame["rated"].where(frame["rated"] > 0)
        return frame[["answers", "rated", "up", "down", "up_rate", "comments"]]

    def recent_feedback(self, limit: int = RECENT_FEEDBACK) -> pd.DataFrame:
        """The latest rated turns, newest first: ``rated_at`` (UTC), ``rating`` ("up"/"down"), ``comment``,
        ``question``, ``reply``, ``experiment``, ``variant``."""
        frame = self._frame(
            "SELECT f.ts, f.rating, f.comment, t.question, t.reply, t.experiment, t.variant FROM feedback f "
            "JOIN turns t ON t.id = f.turn_id ORDER BY f.ts DESC LIMIT :limit",
            {"limit": int(limit)},
        )
        frame.insert(0, "rated_at", pd.to_datetime(frame.pop("ts"), unit="s", utc=True))
        frame["rating"] = frame["rating"].map({value: name for name, value in RATINGS.items()})
        return frame

    def experiment_turns(self, experiment: str, preset: str = "actual") -> pd.DataFrame:
        """Every turn of an experiment, oldest first: ``turn_key``, ``session_id``, ``variant``, ``error`` (bool),
        ``first_audio_s`` and ``cost_usd`` under ``preset`` (NaN for errors), ``rating`` (1, -1 or NaN)."""
        frame = self._frame(
            "SELECT t.turn_key, t.session_id, t.variant, t.error IS NOT NULL AS error, tt.seconds AS first_audio_s, "
            "c.total_usd AS cost_usd, f.rating FROM turns t "
            "LEFT JOIN turn_timings tt ON tt.turn_id = t.id AND tt.name = 'first_audio_s' "
            "LEFT JOIN turn_costs c ON c.turn_id = t.id AND c.preset = :preset "
            "LEFT JOIN feedback f ON f.turn_id = t.id "
            "WHERE t.experiment = :experiment ORDER BY t.ts, t.id",
            {"experiment": experiment, "preset": preset},
        )
        frame["error"] = frame["error"].astype(bool)
        return frame

    def experiment_sessions(self, experiment: str) -> pd.DataFrame:
        """The sessions assigned to an experiment's variants: ``session_id``, ``variant``, ``assigned_at`` (UTC)."""
        frame = self._frame("SELECT session_id, variant, ts FROM assignments WHERE experiment = :experiment "
                            "ORDER BY ts", {"experiment": experiment})
        frame["assigned_at"] = pd.to_datetime(frame.pop("ts"), unit="s", utc=True)
        return frame

    def experiments_seen(self) -> list[str]:
        """Names of the experiments with turns or assignments in the store."""
        frame = self._frame("SELECT experiment FROM assignments UNION SELECT experiment FROM turns "
                            "WHERE experiment IS NOT NULL")
        return sorted(frame["experiment"].dropna())
