"""The turn log on both backends (SQLite and a real PostgreSQL server): round trip, aggregations on known numbers,
persistence across instances, thread safety, ratings, and the schema doc."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import inspect

from core.analytics import TurnLog
from core.costs import PriceTable, costs_by_preset, monthly_projection, usage_from_turn
from core.errors import BackendError, InputError
from core.types import (
    EMOTION_LABELS,
    Emotion,
    Reply,
    StageMetrics,
    Transcript,
    TurnComplete,
    UserTurn,
    VisemeTrack,
)

SCHEMA_DOC = Path(__file__).resolve().parent.parent / "docs" / "turn_log_schema.md"
T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC, the start of an hour


def emotion(label: str) -> Emotion:
    return Emotion(label, {label: 0.9}, "test")


def finished(first_audio_s: float, total_s: float, *, reply_emotion: str = "joy", tokens: int = 300) -> TurnComplete:
    return TurnComplete(
        reply=Reply("Paris is the capital of France.", tokens, 40, "local", "SmolLM2-135M-Instruct.Q4_1"),
        emotion=emotion(reply_emotion),
        wav_path="",
        track=VisemeTrack(2.0, (), ()),
        timings_s={"llm_first_token_s": 0.2, "first_audio_s": first_audio_s, "total_s": total_s},
        metrics=(
            StageMetrics("llm", "local", total_s, 0.2, {"prompt_tokens": tokens, "completion_tokens": 40}),
            StageMetrics("tts", "piper", 0.3, 0.1, {"characters": 31, "audio_s": 2.0}),
        ),
    )


@pytest.fixture
def turn_log(make_store) -> TurnLog:
    return TurnLog(make_store())


@pytest.fixture
def filled(turn_log: TurnLog) -> TurnLog:
    """Ten finished turns in the first hour (first audio 1..10 s, total 2..20 s), one error, two in the next hour."""
    for i in range(10):
        user = UserTurn("What is the capital of France?", emotion("neutral" if i < 7 else "surprise"))
        turn_log.record_turn("s1", user, finished(i + 1.0, 2.0 * (i + 1)), timestamp=T0 + 60 * i)
    turn_log.record_error("s1", "And Spain?", BackendError("llm", "local", "model crashed"),
                          timings_s={"asr_s": 0.5}, timestamp=T0 + 900)
    spoken = UserTurn("Hello", emotion("joy"), Transcript("Hello", 2.5, "whispercpp"))
    for i in range(2):
        turn_log.record_turn("s2", spoken, finished(30.0 + i, 40.0 + i, reply_emotion="sadness"),
                             router="local", timestamp=T0 + 3600 + 60 * i)
    return turn_log


def test_latency_percentiles_on_known_numbers(filled):
    frame = filled.latency_percentiles(bucket="1h")
    assert list(frame.columns) == ["bucket", "turns", "first_audio_s_p50", "first_audio_s_p95",
                                   "total_s_p50", "total_s_p95"]
    first, second = frame.to_dict("records")
    assert first["bucket"] == pd.Timestamp(T0, unit="s", tz="UTC")
    assert first["turns"] == 10  # the error turn is left out
    assert first["first_audio_s_p50"] == pytest.approx(5.5)
    assert first["first_audio_s_p95"] == pytest.approx(9.55)  # 9 + 0.55 * (10 - 9), linear
    assert first["total_s_p50"] == pytest.approx(11.0)
    assert first["total_s_p95"] == pytest.approx(19.1)
    assert second["turns"] == 2 and second["first_audio_s_p50"] == pytest.approx(30.5)
    one_session = filled.latency_percentiles(bucket="1D", session_id="s2", percentiles=(100,))
    assert len(one_session) == 1 and one_session.loc[0, "total_s_p100"] == pytest.approx(41.0)


def test_cost_over_time_matches_the_cost_of_each_turn(filled):
    frame = filled.cost_over_time(bucket="1h")
    per_turn = costs_by_preset(usage_from_turn(finished(1.0, 2.0)), filled.prices)
    first_hour = frame[frame["bucket"] == pd.Timestamp(T0, unit="s", tz="UTC")].set_index("preset")
    assert set(first_hour.index) == set(filled.prices.preset_names)
    for preset, cost in per_turn.items():
        assert first_hour.loc[preset, "turns"] == 10
        assert first_hour.loc[preset, "mean_usd"] == pytest.approx(cost.total_usd)
        assert first_hour.loc[preset, "total_usd"] == pytest.approx(10 * cost.total_usd)
    assert frame["turns"].sum() == 12 * len(per_turn)


def test_emotion_mix_counts_every_label(filled):
    frame = filled.emotion_mix()
    counts = {(r.side, r.emotion): r.count for r in frame.itertuples()}
    assert len(frame) == 2 * len(EMOTION_LABELS)
    assert counts[("user", "neutral")] == 7 and counts[("user", "surprise")] == 3
    assert counts[("user", "joy")] == 2 and counts[("user", "anger")] == 0
    assert counts[("reply", "joy")] == 10 and counts[("reply", "sadness")] == 2  # the error turn has no reply
    assert filled.emotion_mix(session_id="s2").query("side == 'user' and emotion == 'joy'")["count"].item() == 2


def test_session_summary_totals_and_projection(filled):
    summary = filled.session_summary("s1", conversations_per_day=100, turns_per_conversation=5).set_index("preset")
    costs = filled.cost_breakdowns("s1")
    projection = monthly_projection(costs, 100, 5)
    for preset in filled.prices.preset_names:
        row = summary.loc[preset]
        assert (row["turns"], row["errors"], row["cache_hits"]) == (10, 1, 0)
        mine = [c.total_usd for c in costs if c.preset == preset]
        assert row["total_usd"] == pytest.approx(sum(mine))
        assert row["mean_turn_usd"] == pytest.approx(sum(mine) / 10)
        assert row["monthly_usd"] == pytest.approx(projection[preset]["total_usd"])
    assert summary.loc["original", "monthly_usd"] > summary.loc["optimised", "monthly_usd"]
    assert filled.session_summary("nobody").empty


def test_spoken_turns_record_the_transcript_and_the_error_turn_keeps_its_message(filled):
    rows = filled.export_rows()
    assert len(rows) == 13
    assert len({frozenset(r) for r in rows}) == 1  # every row has the same keys
    error = next(r for r in rows if r["error"])
    assert error["error"] == "LLM (local) failed: model crashed" and error["reply"] is None
    assert error["asr_s"] == 0.5 and error["total_s"] is None
    assert all(error[f"cost_{p}_usd"] is None for p in filled.prices.preset_names)
    spoken = [r for r in rows if r["session_id"] == "s2"]
    assert all(r["asr_audio_s"] == 2.5 and r["asr_backend"] == "whispercpp" and r["router"] == "local"
               for r in spoken)
    assert spoken[0]["cost_original_usd"] > rows[0]["cost_original_usd"]  # the spoken question uses Whisper's GPU
    assert rows[0]["timestamp"] == "2026-01-01T00:00:00+00:00"
    assert rows[0]["prompt_tokens"] == 300 and rows[0]["tts_characters"] == 31


def test_the_log_persists_across_instances(make_store):
    TurnLog(make_store()).record_turn("s", UserTurn("Hi", emotion("joy")), finished(1.0, 2.0), timestamp=T0)
    again = TurnLog(make_store(), PriceTable.load())
    again.record_turn("s", UserTurn("Hi again", emotion("joy")), finished(3.0, 4.0), timestamp=T0 + 1)
    assert [r["question"] for r in TurnLog(make_store()).export_rows()] == ["Hi", "Hi again"]


def test_concurrent_writes_all_land(turn_log):
    def write(worker: int) -> None:
        for i in range(5):
            turn_log.record_turn(f"w{worker}", UserTurn("Hi", emotion("joy")), finished(1.0, 2.0),
                                 timestamp=T0 + i)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = turn_log.export_rows()
    assert len(rows) == 20 and len({r["id"] for r in rows}) == 20
    assert turn_log.session_summary()["turns"].tolist() == [20] * len(turn_log.prices.preset_names)


def test_empty_log_aggregates_are_empty_frames_with_columns(turn_log):
    assert turn_log.latency_percentiles().empty and "first_audio_s_p95" in turn_log.latency_percentiles().columns
    assert turn_log.cost_over_time().empty and turn_log.session_summary().empty
    assert turn_log.emotion_mix()["count"].sum() == 0
    assert turn_log.export_rows() == []


def test_ratings_are_stored_with_the_turn_changed_and_withdrawn(turn_log):
    user = UserTurn("Hi", emotion("joy"))
    keys = [f"key-{i}" for i in range(3)]
    for i, key in enumerate(keys):
        turn_log.record_turn("s", user, finished(1.0, 2.0), turn_key=key, timestamp=T0 + i)
    assert turn_log.record_feedback(keys[0], "up", "Clear and short.", session_id="s") is True
    turn_log.record_feedback(keys[1], "up", session_id="s")
    turn_log.record_feedback(keys[1], "down", session_id="s")  # changed its mind: the latest rating wins
    turn_log.record_feedback(keys[2], "down", session_id="s")
    turn_log.record_feedback(keys[2], "", session_id="s")  # withdrawn
    turn_log.record_feedback(keys[0], "up", None, session_id="s")  # None keeps the comment
    summary = turn_log.feedback_summary().iloc[0].to_dict()
    assert summary == {"answers": 3, "rated": 2, "up": 1, "down": 1, "up_rate": 0.5, "comments": 1}
    rows = {r["turn_key"]: r for r in turn_log.export_rows()}
    assert (rows["key-0"]["rating"], rows["key-0"]["rating_comment"]) == (1, "Clear and short.")
    assert rows["key-1"]["rating"] == -1 and rows["key-2"]["rating"] is None
    recent = turn_log.recent_feedback()
    assert recent["rating"].tolist() == ["up", "down"] and recent["question"].tolist() == ["Hi", "Hi"]


def test_bad_feedback_gets_a_clear_message(turn_log):
    turn_log.record_turn("s", UserTurn("Hi", emotion("joy")), finished(1.0, 2.0), turn_key="known")
    with pytest.raises(InputError, match="No turn has the key 'nope'"):
        turn_log.record_feedback("nope", "up")
    with pytest.raises(InputError, match="'up' or 'down'"):
        turn_log.record_feedback("known", "meh")
    with pytest.raises(InputError, match="limit is 2000"):
        turn_log.record_feedback("known", "down", "x" * 2001)
    with pytest.raises(InputError, match="which turn"):
        turn_log.record_feedback("  ", "up")
    assert turn_log.feedback_summary().iloc[0]["rated"] == 0


def _documented_columns() -> dict[str, dict[str, set[tuple[str, str, bool]]]]:
    """Per table heading "### `name`", the (column, type, nullable) rows of its markdown table, per backend."""
    tables: dict[str, dict[str, set[tuple[str, str, bool]]]] = {"sqlite": {}, "postgresql": {}}
    current = None
    for line in SCHEMA_DOC.read_text(encoding="utf-8").splitlines():
        if heading := re.match(r"^### `(\w+)`", line):
            current = heading.group(1)
            for backend in tables.values():
                backend[current] = set()
        elif current is not None and (row := re.match(r"^\| `(\w+)` \| (\w+) \| ([\w ]+) \| (yes|no) \|", line)):
            tables["sqlite"][current].add((row.group(1), row.group(2), row.group(4) == "yes"))
            tables["postgresql"][current].add((row.group(1), row.group(3), row.group(4) == "yes"))
    return tables


def test_schema_doc_lists_every_column_with_its_type(turn_log):
    engine = turn_log.store.engine()
    inspector = inspect(engine)
    actual = {
        name: {(c["name"], str(c["type"]).lower() if engine.dialect.name == "postgresql" else str(c["type"]),
                bool(c["nullable"]) and c["name"] not in inspector.get_pk_constraint(name)["constrained_columns"])
               for c in inspector.get_columns(name)}
        for name in inspector.get_table_names()
    }
    documented = _documented_columns()[engine.dialect.name]
    assert documented == actual
