"""Cost per turn: price table validation, hand-computed costs, presets, cache savings, monthly projection."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from core.costs import (
    COMPONENTS,
    DEFAULT_PRICES_PATH,
    HOURS_PER_MONTH,
    PriceTable,
    TurnUsage,
    costs_by_preset,
    monthly_projection,
    turn_cost,
    usage_from_turn,
)
from core.errors import ConfigError
from core.types import Emotion, Reply, StageMetrics, TurnComplete, VisemeTrack

TYPICAL = TurnUsage(
    prompt_tokens=400,
    completion_tokens=60,
    tts_characters=220,
    asr_audio_s=4.0,
    retrieval_queries=1,
    llm_backend="databricks",
    llm_model="databricks-meta-llama-3-1-8b-instruct",
    tts_backend="piper",
    asr_backend="whispercpp",
    retrieval_backend="local",
    turn_duration_s=3.0,
)


def small_table() -> dict:
    """A table with round numbers, owned by the tests (data/prices.json is user-editable)."""
    note = {"notes": "test figure"}
    return {
        "currency": "USD",
        "amortisation": {"turns_per_hour": 100, **note},
        "llm": {
            "api": {"input_per_1m_tokens": 1.0, "output_per_1m_tokens": 4.0, **note},
            "gpu": {"per_hour": 10.0, **note},
        },
        "tts": {"cloud": {"per_1m_characters": 200.0, **note}, "cpu": {"per_1m_characters": 0, **note}},
        "asr": {"api": {"per_audio_minute": 0.006, **note}, "gpu": {"per_hour": 2.0, **note}},
        "lipsync": {"cpu": {"per_hour": 0, **note}, "gpu": {"per_hour": 1.0, **note}},
        "emotion": {"cpu": {"per_hour": 0, **note}},
        "retrieval": {"queries": {"per_query": 0.001, **note}},
        "compute": {"app": {"per_hour": 0.36, **note}},
        "presets": {
            "cheap": {"llm": "api", "tts": "cpu", "asr": "api", "lipsync": "cpu", "emotion": "cpu",
                      "retrieval": "queries", "compute": "app", **note},
            "dedicated": {"llm": "gpu", "tts": "cloud", "asr": "gpu", "lipsync": "gpu", "emotion": "cpu",
                          "retrieval": "queries", "compute": "app", **note},
            "ran": {"llm": "from_turn", "tts": "from_turn", "asr": "from_turn", "lipsync": "cpu", "emotion": "cpu",
                    "retrieval": "from_turn", "compute": "app", **note},
        },
    }


def write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def table(tmp_path: Path) -> PriceTable:
    return PriceTable.load(write(tmp_path, small_table()))


# -- the price table -------------------------------------------------------------------------------------------


def test_shipped_table_loads_with_the_three_presets_and_a_note_on_every_price():
    table = PriceTable.load()
    assert {"original", "optimised", "actual"} <= set(table.preset_names)
    for section in COMPONENTS:
        for item in table.items[section].values():
            assert item.notes.strip() and item.rates
    # The Databricks pay-per-token list prices from the shared README.
    assert table.item("llm", "databricks-meta-llama-3-3-70b-instruct").rates == {
        "input_per_1m_tokens": 0.5, "output_per_1m_tokens": 1.5}
    assert table.item("llm", "local").rate("output_per_1m_tokens") == 0


def _mutate(path_in_table: tuple[str, ...], value):
    data = small_table()
    target = data
    for key in path_in_table[:-1]:
        target = target[key]
    target[path_in_table[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_mutate(("shipping",), 1), "unknown key.*'shipping'"),
        (_mutate(("llm", "api", "per_token"), 1.0), r"llm\.api: unknown key.*'per_token'"),
        (_mutate(("tts", "cloud", "per_1m_characters"), -1), r"tts\.cloud\.per_1m_characters: .*negative"),
        (_mutate(("asr", "api", "per_audio_minute"), "0.006"), "must be a number"),
        (_mutate(("asr", "api", "per_audio_minute"), True), "must be a number"),
        (_mutate(("compute", "app"), {"per_hour": 0.36}), r"compute\.app: needs a non-empty 'notes'"),
        (_mutate(("compute", "app"), {"notes": "nothing"}), "has no price"),
        (_mutate(("presets", "cheap", "tts"), "elevenlabs"), r"presets\.cheap\.tts: no item 'elevenlabs'"),
        (_mutate(("presets", "cheap", "compute"), "from_turn"), "only works for"),
        (_mutate(("amortisation", "turns_per_hour"), 0), "greater than 0"),
    ],
)
def test_invalid_tables_are_refused_with_a_clear_message(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        PriceTable.load(write(tmp_path, data))


def test_duplicate_keys_are_refused(tmp_path):
    text = json.dumps(small_table()).replace('"gpu": {"per_hour": 10.0', '"api": {"per_hour": 10.0', 1)
    with pytest.raises(ConfigError, match="duplicate key 'api'"):
        PriceTable.load(write(tmp_path, text))


def test_missing_file_and_bad_json_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read"):
        PriceTable.load(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        PriceTable.load(write(tmp_path, "{"))


# -- cost of a turn ---------------------------------------------------------------------------------------------


def test_pay_per_use_cost_matches_a_hand_computation(table):
    cost = turn_cost(TYPICAL, table, "cheap")
    # LLM: 400 in at $1/1M + 60 out at $4/1M; ASR: 4 s at $0.006/min; 1 query at $0.001;
    # app: $0.36/h shared by 100 turns an hour.
    assert cost.llm_usd == pytest.approx(400e-6 + 240e-6)
    assert cost.tts_usd == 0
    assert cost.asr_usd == pytest.approx(4 / 60 * 0.006)
    assert cost.retrieval_usd == pytest.approx(0.001)
    assert cost.compute_usd == pytest.approx(0.0036)
    assert cost.total_usd == pytest.approx(0.00064 + 0.0004 + 0.001 + 0.0036)
    assert cost.usage_usd == pytest.approx(0.00064 + 0.0004 + 0.001)
    assert cost.hourly_usd == pytest.approx(0.36)


def test_dedicated_hourly_items_are_amortised_over_turns_per_hour(table):
    cost = turn_cost(TYPICAL, table, "dedicated")
    assert cost.llm_usd == pytest.approx(10.0 / 100)
    assert cost.asr_usd == pytest.approx(2.0 / 100)
    assert cost.lipsync_usd == pytest.approx(1.0 / 100)
    assert cost.tts_usd == pytest.approx(220 * 200 / 1e6)
    assert cost.hourly_usd == pytest.approx(10 + 2 + 1 + 0.36)
    assert turn_cost(TYPICAL, table, "dedicated", turns_per_hour=10).llm_usd == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="turns_per_hour"):
        turn_cost(TYPICAL, table, "dedicated", turns_per_hour=0)


def test_a_turn_longer_than_its_hourly_slot_pays_its_own_app_time(table):
    slow = TurnUsage(turn_duration_s=72.0)  # 100 turns an hour leave 36 s each
    assert turn_cost(slow, table, "cheap").compute_usd == pytest.approx(0.36 * 72 / 3600)


def test_unused_components_cost_nothing(table):
    typed = TurnUsage(prompt_tokens=10, completion_tokens=10, tts_characters=50, turn_duration_s=1.0)
    cost = turn_cost(typed, table, "dedicated")
    assert cost.asr_usd == 0 and cost.retrieval_usd == 0
    assert cost.llm_usd > 0 and cost.lipsync_usd > 0


def test_a_cache_hit_costs_no_llm_or_tts_and_reports_the_saving(table):
    hit = replace(TYPICAL, cache_hit=True)
    miss, cached = turn_cost(TYPICAL, table, "cheap"), turn_cost(hit, table, "cheap")
    assert cached.llm_usd == 0 and cached.tts_usd == 0
    assert cached.saved_usd == pytest.approx(miss.llm_usd + miss.tts_usd)
    assert cached.total_usd == pytest.approx(miss.total_usd - miss.llm_usd - miss.tts_usd)
    assert miss.saved_usd == 0


def test_actual_preset_prices_the_backends_that_ran_and_names_unpriced_ones(table):
    ran = TurnUsage(prompt_tokens=1000, completion_tokens=100, tts_characters=100, llm_backend="openai",
                    llm_model="api", tts_backend="cloud", turn_duration_s=1.0)
    cost = turn_cost(ran, table, "ran")
    assert cost.llm_usd == pytest.approx(1000e-6 + 400e-6)  # found by model name
    assert cost.tts_usd == pytest.approx(100 * 200 / 1e6)
    unknown = TurnUsage(llm_backend="openai", llm_model="gpt-x", tts_backend="mystery", turn_duration_s=1.0)
    cost = turn_cost(unknown, table, "ran")
    assert cost.unpriced == ("llm: gpt-x", "tts: mystery")
    assert cost.llm_usd == 0 and cost.compute_usd > 0


def test_unknown_preset_lists_the_valid_ones(table):
    with pytest.raises(ConfigError, match="cheap, dedicated, ran"):
        turn_cost(TYPICAL, table, "fancy")


def test_shipped_presets_differ_in_the_expected_direction():
    costs = costs_by_preset(TYPICAL, PriceTable.load(DEFAULT_PRICES_PATH))
    original, optimised, actual = costs["original"], costs["optimised"], costs["actual"]
    assert original.total_usd > 10 * optimised.total_usd
    for component in ("llm", "tts", "asr", "lipsync", "emotion"):
        assert getattr(original, f"{component}_usd") > getattr(optimised, f"{component}_usd")
    assert original.hourly_usd > optimised.hourly_usd
    # What ran here: a pay-per-token endpoint plus CPU stages, so no more than the optimised design.
    assert actual.total_usd <= optimised.total_usd and not actual.unpriced


# -- monthly projection -----------------------------------------------------------------------------------------


def test_monthly_projection_by_hand(table):
    costs = [turn_cost(TYPICAL, table, "cheap"), turn_cost(TurnUsage(turn_duration_s=1.0), table, "cheap")]
    month = monthly_projection(costs, conversations_per_day=100, turns_per_conversation=5)["cheap"]
    turns = 100 * 5 * HOURS_PER_MONTH / 24
    mean_usage = (0.00064 + 0.0004 + 0.001 + 0.0) / 2
    assert month["turns_per_month"] == pytest.approx(turns)
    assert month["usage_usd"] == pytest.approx(mean_usage * turns)
    assert month["always_on_usd"] == pytest.approx(0.36 * 730)
    assert month["total_usd"] == pytest.approx(mean_usage * turns + 0.36 * 730)
    assert month["per_turn_usd"] == pytest.approx(month["total_usd"] / turns)
    assert month["sample_turns"] == 2
    with pytest.raises(ValueError):
        monthly_projection(costs, -1, 5)


def test_monthly_projection_keeps_presets_apart_and_counts_cache_savings(table):
    hit = TurnUsage(prompt_tokens=1_000_000, cache_hit=True)
    costs = [turn_cost(hit, table, "cheap"), turn_cost(TYPICAL, table, "dedicated")]
    projection = monthly_projection(costs, 24, 1)  # one turn an hour
    assert set(projection) == {"cheap", "dedicated"}
    assert projection["cheap"]["cache_savings_usd"] == pytest.approx(1.0 * 730)
    assert projection["dedicated"]["always_on_usd"] == pytest.approx((10 + 2 + 1 + 0.36) * 730)


# -- usage from a turn ------------------------------------------------------------------------------------------


def test_usage_from_turn_reads_the_stage_metrics():
    emotion = Emotion("neutral", {"neutral": 1.0}, "test")
    done = TurnComplete(
        reply=Reply("Hi.", 12, 3, "databricks", "databricks-gpt-oss-20b"),
        emotion=emotion,
        wav_path="",
        track=VisemeTrack(0.5, (), ()),
        timings_s={"first_audio_s": 0.4, "total_s": 1.25},
        metrics=(
            StageMetrics("llm", "databricks", 0.5, 0.1, {"prompt_tokens": 12, "completion_tokens": 3}),
            StageMetrics("tts", "piper", 0.1, 0.1, {"characters": 3, "audio_s": 0.5}),
            StageMetrics("retrieval", "local", 0.02, units={"queries": 2}),
            StageMetrics("cache", "semantic", 0.01, units={"hit": 1}),
        ),
    )
    usage = usage_from_turn(done, asr_audio_s=2.5, asr_backend="whispercpp")
    assert usage == TurnUsage(12, 3, 3, 2.5, 2, True, "databricks", "databricks-gpt-oss-20b", "piper", "whispercpp",
                              "local", 1.25)


def test_usage_and_cost_of_a_real_turn(pipeline):
    done = list(pipeline.run_turn([], text="What is the capital of France?"))[-1]
    assert isinstance(done, TurnComplete)
    usage = usage_from_turn(done)
    assert (usage.prompt_tokens, usage.completion_tokens) == (done.reply.prompt_tokens, done.reply.completion_tokens)
    assert usage.prompt_tokens > 0 and usage.tts_characters > 0 and not usage.cache_hit
    assert usage.turn_duration_s == done.timings_s["total_s"]
    actual = turn_cost(usage, PriceTable.load(), "actual")
    # The embedded model and voice cost nothing per use: only the app's compute share remains.
    assert not actual.unpriced and actual.usage_usd == 0
    assert actual.total_usd == pytest.approx(actual.compute_usd) and actual.compute_usd > 0
