"""Experiments: the data file and its checks, stable random assignment with the configured split, the variant on
every turn, and the report (numbers, intervals, tests, verdict, command) on both turn-store backends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from core.analytics import TurnLog
from core.config import PROJECT_ROOT, ExperimentConfig
from core.errors import ConfigError
from core.experiments import Experiment, ExperimentBook, ExperimentRunner, Variant
from core.experiments.report import ALPHA, MIN_SAMPLES, experiment_report
from core.turnstore import SQLiteStore
from core.types import TurnOptions
from tests.turn_writer import asked, turn

SHIPPED = PROJECT_ROOT / "data" / "experiments.json"


def write_book(tmp_path: Path, experiments: list, name: str = "") -> ExperimentConfig:
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps({"experiments": experiments}))
    return ExperimentConfig(file=path, name=name)


def two_arms(name: str = "speed", running: bool = True, weights: tuple[float, float] = (1, 1)) -> dict:
    return {"name": name, "running": running, "variants": [
        {"name": "clauses", "weight": weights[0], "options": {"streaming": True}},
        {"name": "whole-reply", "weight": weights[1], "options": {"streaming": False, "top_k": 2}},
    ]}


# -- the file -------------------------------------------------------------------------------------------------


def test_the_shipped_file_loads_and_runs_nothing_by_default():
    book = ExperimentBook.load(ExperimentConfig(file=SHIPPED))
    assert book.running is None and len(book.experiments) >= 2
    for experiment in book.experiments.values():
        assert len(experiment.variants) >= 2
    streaming = book.experiments["streaming"]
    assert [v.overrides for v in streaming.variants] == [{"streaming": True}, {"streaming": False}]
    chosen = ExperimentBook.load(ExperimentConfig(file=SHIPPED, name="brevity"))
    assert chosen.running is not None and chosen.running.name == "brevity"


@pytest.mark.parametrize(("experiments", "message"), [
    ([{"name": "x", "variants": [{"name": "a"}]}], "at least two"),
    ([{"name": "X Y", "variants": [{"name": "a"}, {"name": "b"}]}], "lowercase slug"),
    ([{"name": "x", "variants": [{"name": "a"}, {"name": "a"}]}], "must differ"),
    ([{"name": "x", "variants": [{"name": "a", "weight": 0}, {"name": "b"}]}], "positive number"),
    ([{"name": "x", "variants": [{"name": "a", "options": {"voice": "x"}}, {"name": "b"}]}], "unknown option 'voice'"),
    ([{"name": "x", "variants": [{"name": "a", "options": {"streaming": "yes"}}, {"name": "b"}]}], "must be a bool"),
    ([{"name": "x", "variants": [{"name": "a", "options": {"llm": "gpt/4"}}, {"name": "b"}]}], "names no backend"),
    ([{"name": "x", "variants": [{"name": "a", "options": {"tts": "espeak"}}, {"name": "b"}]}], "names no backend"),
    ([{"name": "x", "variants": [{"name": "a", "options": {"top_k": 0}}, {"name": "b"}]}], "between 1 and 20"),
    ([two_arms("x"), two_arms("y")], "only one experiment can be running"),
    ([two_arms("x"), two_arms("x", running=False)], "defined twice"),
    ([{"name": "x", "variants": [{"name": "a"}, {"name": "b"}], "colour": "red"}], "unknown keys"),
])
def test_a_bad_file_is_a_clear_error(tmp_path, experiments, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentBook.load(write_book(tmp_path, experiments))


def test_an_unknown_experiment_name_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="'nope' is not in"):
        ExperimentBook.load(write_book(tmp_path, [two_arms()], name="nope"))
    assert ExperimentBook.load(write_book(tmp_path, [two_arms()], name="none")).running is None


# -- assignment ---------------------------------------------------------------------------------------------------


def test_assignment_is_stable_random_and_follows_the_split():
    experiment = Experiment("split", (Variant("a", 1, {}), Variant("b", 3, {})))
    sessions = [f"session-{i}" for i in range(8000)]
    first = [experiment.assign(s).name for s in sessions]
    assert first == [experiment.assign(s).name for s in sessions]  # the same every time (and on every instance)
    share_b = first.count("b") / len(first)
    assert stats.binomtest(first.count("b"), len(first), 0.75).pvalue > 0.001, share_b  # 3:1 as configured
    other = Experiment("other", experiment.variants)
    same = sum(a == other.assign(s).name for s, a in zip(sessions, first, strict=True)) / len(sessions)
    assert abs(same - (0.25**2 + 0.75**2)) < 0.03  # independent of another experiment's assignment


def test_the_runner_labels_every_turn_and_records_the_assignment_once(tmp_path):
    log = TurnLog(SQLiteStore(tmp_path / "turns.sqlite"))
    runner = ExperimentRunner(ExperimentBook.load(write_book(tmp_path, [two_arms()])), log)
    base = TurnOptions(tts="edge/en-US-JennyNeural", top_k=5)  # e.g. the user's character
    options = [runner.options_for("s1", base) for _ in range(3)]
    assert len(set(options)) == 1 and options[0].experiment == "speed"
    variant = runner.experiment.variant(options[0].variant)
    assert options[0].tts == "edge/en-US-JennyNeural"  # kept: the variant does not set a voice
    assert options[0].streaming is variant.overrides["streaming"]
    assert options[0].top_k == variant.overrides.get("top_k", 5)
    sessions = log.experiment_sessions("speed")
    assert sessions["session_id"].tolist() == ["s1"] and sessions["variant"].tolist() == [options[0].variant]
    idle = ExperimentRunner(ExperimentBook.load(write_book(tmp_path, [two_arms(running=False)])), log)
    assert idle.options_for("s2", base) == base and "no experiment running" in idle.status()


# -- the report ---------------------------------------------------------------------------------------------------

RNG_SEED = 15


def seed_experiment(log: TurnLog) -> dict[str, np.ndarray]:
    """24 turns per variant in 8 sessions each: whole-reply is slower to first audio, ratings about equal, one
    error for clauses. Returns each variant's first-audio times."""
    rng = np.random.default_rng(RNG_SEED)
    latencies = {"clauses": rng.normal(0.7, 0.1, 24), "whole-reply": rng.normal(1.6, 0.3, 24)}
    ups = {"clauses": 14, "whole-reply": 13}
    for variant, times in latencies.items():
        options = TurnOptions(experiment="speed", variant=variant)
        for i, seconds in enumerate(times):
            session = f"{variant}-{i % 8}"
            if i == 0:
                log.record_assignment("speed", session, variant)
            key = f"{variant}-{i}"
            log.record_turn(session, asked(), turn(float(seconds)), turn_key=key, options=options)
            if i < 20:
                log.record_feedback(key, "up" if i < ups[variant] else "down", session_id=session)
    log.record_error("clauses-0", "Broken?", ConfigError("boom"), options=TurnOptions(experiment="speed",
                                                                                     variant="clauses"))
    return latencies


def test_the_report_has_every_number_with_its_interval_and_test(tmp_path, make_store):
    log = TurnLog(make_store())
    latencies = seed_experiment(log)
    book = ExperimentBook.load(write_book(tmp_path, [two_arms()]))
    report = experiment_report(log, book, "speed")
    control, variant = report.variants
    assert (control.name, control.sessions, control.turns, control.errors) == ("clauses", 8, 25, 1)
    assert (variant.name, variant.sessions, variant.turns, variant.errors) == ("whole-reply", 8, 24, 0)
    assert (control.ratings, control.up, variant.ratings, variant.up) == (20, 14, 20, 13)
    wilson = stats.binomtest(14, 20).proportion_ci(0.95, method="wilson")
    assert (control.up_rate.value, control.up_rate.low, control.up_rate.high) == pytest.approx(
        (0.7, wilson.low, wilson.high))
    assert control.first_audio_s.value == pytest.approx(np.median(latencies["clauses"]))
    assert control.first_audio_s.low < control.first_audio_s.value < control.first_audio_s.high
    assert control.cost_usd.n == 24 and control.cost_usd.low <= control.cost_usd.value <= control.cost_usd.high
    tests = {t.metric: t for t in report.comparisons[0].tests}
    assert tests["time to first audio"].p_value == pytest.approx(
        stats.mannwhitneyu(latencies["whole-reply"], latencies["clauses"]).pvalue)
    assert tests["time to first audio"].p_value < 0.01 and tests["time to first audio"].better == "clauses"
    assert tests["ratings"].p_value == pytest.approx(stats.fisher_exact([[13, 7], [14, 6]]).pvalue)
    assert tests["ratings"].p_value > ALPHA and tests["ratings"].better is None
    assert tests["cost per turn"].better is None and tests["errors"].better is None
    assert tests["time to first audio"].sentence.startswith(
        "clauses is faster to first audio than whole-reply (median 1.60 s for whole-reply, 0.73 s for clauses")
    verdict = report.verdict
    assert verdict == ("clauses wins over whole-reply: clauses is faster to first audio (p < 0.001); "
                       "no difference in ratings, cost per turn or errors yet.")
    table = report.table()
    assert table["variant"].tolist() == ["clauses", "whole-reply"]
    assert table.loc[0, "thumbs up rate"].startswith("70% [") and table.loc[0, "error rate"].endswith("(n=25)")
    assert json.loads(json.dumps(report.to_dict()))["verdict"] == verdict


def test_too_little_data_says_so(tmp_path):
    log = TurnLog(SQLiteStore(tmp_path / "turns.sqlite"))
    book = ExperimentBook.load(write_book(tmp_path, [two_arms()]))
    assert experiment_report(log, book, "speed").verdict == "No turns in experiment 'speed' yet."
    for variant in ("clauses", "whole-reply"):
        log.record_turn("s", asked(), turn(0.5), turn_key=variant,
                        options=TurnOptions(experiment="speed", variant=variant))
    verdict = experiment_report(log, book, "speed").verdict
    assert verdict == ("No winner yet between whole-reply and clauses: too little data to compare ratings, time to "
                       f"first audio, cost per turn or errors yet ({MIN_SAMPLES} per variant needed).")
    with pytest.raises(ConfigError, match="No experiment named 'other'"):
        experiment_report(log, book, "other")


def test_the_report_command_prints_the_report(tmp_path, make_store):
    store = make_store()
    seed_experiment(TurnLog(store))
    config = write_book(tmp_path, [two_arms()])
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "AVATAR_EXPERIMENTS_FILE": str(config.file)}
    if isinstance(store, SQLiteStore):
        env |= {"AVATAR_TURN_STORE": "sqlite", "AVATAR_TURN_STORE_PATH": str(store.path)}
    else:
        env |= {"DATABASE_URL": store.url.render_as_string(hide_password=False)}
    command = [sys.executable, "-m", "core.experiments"]
    done = subprocess.run([*command, "report", "speed"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Experiment speed" in done.stdout and "whole-reply vs clauses (control):" in done.stdout
    assert "Verdict: clauses wins over whole-reply" in done.stdout
    listed = subprocess.run([*command, "list"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert listed.stdout.strip() == "speed (running): file and store"
    missing = subprocess.run([*command, "report", "nope"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2 and "No experiment named 'nope'" in missing.stderr
