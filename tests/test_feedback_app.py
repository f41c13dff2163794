"""Feedback and experiments in the running app: /ask gives the turn_key and the session's variant, /feedback rates
it, the chat's thumbs and comment box store a rating in headless Chromium, the dashboard shows ratings and the
report, and a turn store that is down when the app starts fails no turn. The LLM is the fake Databricks endpoint, the
store a real PostgreSQL database."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from app import build_app
from core.analytics import TurnLog
from core.config import load_config
from core.experiments import ExperimentBook, ExperimentRunner
from core.pipeline import Pipeline
from core.turnstore import PostgresStore
from core.types import ReplyDelta, TurnComplete
from tests.browser import chromium, serve_blocks  # noqa: F401 - chromium is a fixture
from tests.fake_databricks import FAKE_TOKEN, FakeServingServer
from tests.postgres import PostgresServer

RETRY_WAIT_S = 15.0
EXPERIMENT = {"name": "brevity", "running": True, "variants": [
    {"name": "default", "weight": 1, "options": {}},
    {"name": "short", "weight": 1, "options": {"system_prompt": "Answer in one short sentence.", "top_k": 2}},
]}


@pytest.fixture(scope="module")
def served(postgres: PostgresServer, tmp_path_factory
           ) -> Iterator[tuple[str, Pipeline, ExperimentRunner, FakeServingServer]]:
    """The app on a Databricks-LLM pipeline with a PostgreSQL turn store and a running two-variant experiment."""
    folder = tmp_path_factory.mktemp("feedback-app")
    (folder / "experiments.json").write_text(json.dumps({"experiments": [EXPERIMENT]}))
    url = postgres.url(postgres.create_database()).render_as_string(hide_password=False)
    with FakeServingServer() as workspace, pytest.MonkeyPatch.context() as env:
        env.setenv("DATABRICKS_HOST", workspace.url)
        env.setenv("DATABRICKS_TOKEN", FAKE_TOKEN)
        env.setenv("DATABRICKS_CONFIG_FILE", str(folder / "no-databrickscfg"))
        config = load_config({"AVATAR_LLM": "databricks", "AVATAR_CACHE_DIR": str(folder), "DATABASE_URL": url,
                              "AVATAR_EXPERIMENTS_FILE": str(folder / "experiments.json"),
                              "AVATAR_RESPONSE_CACHE": "0", "HF_HUB_OFFLINE": "1"})
        pipeline = Pipeline(config)
        experiments = ExperimentRunner(ExperimentBook.load(config.experiments), pipeline.turn_log)
        with serve_blocks(build_app(pipeline, experiments)) as app_url:
            yield app_url, pipeline, experiments, workspace


def test_ask_returns_the_turn_key_and_variant_and_feedback_rates_it(served):
    url, pipeline, experiments, _ = served
    client = Client(url, verbose=False)
    _text, _audio, _lipsync, details = client.predict("What can you do?", None, api_name="/ask")
    assert len(details["turn_key"]) == 32 and details["experiment"] == "brevity"
    assert details["variant"] in ("default", "short")
    again = client.predict("And what else?", None, api_name="/ask")[3]
    assert again["variant"] == details["variant"]  # one session, one variant
    stored = client.predict(details["turn_key"], "down", "Too vague.", api_name="/feedback")
    assert stored == {"turn_key": details["turn_key"], "rating": "down", "comment": "Too vague.", "status": "stored"}
    with pytest.raises(Exception, match="No turn has the key"):
        client.predict("0" * 32, "up", "", api_name="/feedback")
    with pytest.raises(Exception, match="'up' or 'down'"):
        client.predict(details["turn_key"], "excellent", "", api_name="/feedback")
    rows = {r["turn_key"]: r for r in pipeline.turn_log.export_rows()}
    assert rows[details["turn_key"]]["rating"] == -1 and rows[details["turn_key"]]["rating_comment"] == "Too vague."
    assert rows[details["turn_key"]]["variant"] == details["variant"]
    sessions = pipeline.turn_log.experiment_sessions("brevity")
    assert len(sessions) >= 1 and details["variant"] in set(sessions["variant"])
    report = client.predict("", api_name="/experiment_report")  # empty: the running experiment
    assert report["experiment"] == "brevity" and report["verdict"].startswith("No winner yet")
    mine = next(v for v in report["variants"] if v["name"] == details["variant"])
    assert mine["turns"] >= 2 and mine["ratings"] >= 1
    with pytest.raises(Exception, match="No experiment named 'nope'"):
        client.predict("nope", api_name="/experiment_report")


def test_the_chat_thumbs_and_comment_store_a_rating_and_the_dashboard_shows_it(served, chromium, artifacts):  # noqa: F811
    url, pipeline, _, _ = served
    page = chromium.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.wait_for_function("window.avatarState && window.avatarState.ready", timeout=60_000)
    page.locator("#question textarea").fill("Hello! Who are you?")
    page.locator("#send").click()
    page.wait_for_function("document.querySelector('#emotion textarea').value !== ''", timeout=120_000)
    page.locator("#chat button[aria-label='Like']").last.click()
    comment = page.locator("#feedback-comment textarea")
    comment.wait_for(state="visible", timeout=10_000)
    assert "good" in page.locator("#feedback-comment").inner_text()
    comment.fill("Friendly and short.")
    comment.press("Enter")
    comment.wait_for(state="hidden", timeout=10_000)
    pipeline.turn_log.store.outbox.wait_empty(RETRY_WAIT_S)
    recent = pipeline.turn_log.recent_feedback()
    assert recent.loc[0, "question"] == "Hello! Who are you?" and recent.loc[0, "rating"] == "up"
    assert recent.loc[0, "comment"] == "Friendly and short."
    page.screenshot(path=str(artifacts / "feedback_rated.png"))
    page.get_by_role("tab", name="Dashboard").click()
    page.locator("#feedback-summary").get_by_text("thumbs up").wait_for(timeout=30_000)
    page.locator("#experiment-verdict").get_by_text("Verdict").wait_for(timeout=30_000)
    assert "Friendly and short." in page.locator("#feedback-table").inner_text()
    table = page.locator("#experiment-table").inner_text()
    assert "default" in table or "short" in table
    page.screenshot(path=str(artifacts / "dashboard_feedback_experiment.png"), full_page=True)
    page.close()


def test_a_turn_store_down_when_the_app_starts_fails_no_turn(served, postgres: PostgresServer, tmp_path: Path):
    _, pipeline, experiments, _ = served
    database = postgres.create_database()
    down = TurnLog(PostgresStore(postgres.url(database), connect_timeout_s=1))
    postgres.stop()
    try:
        pipeline.__dict__["turn_log"], original = down, pipeline.turn_log
        assert down.store.connect() is False
        with serve_blocks(build_app(pipeline, ExperimentRunner(experiments.book, down))) as url:
            client = Client(url, verbose=False)
            text, _audio, _lipsync, details = client.predict("Are you still there?", None, api_name="/ask")
            assert text.strip() and details["costs_usd"]["actual"] >= 0
            assert client.predict(details["turn_key"], "up", "", api_name="/feedback")["status"] == "queued"
            assert down.store.outbox.pending == 3  # the assignment, the turn, the rating
    finally:
        postgres.start()
        pipeline.__dict__["turn_log"] = original
    assert down.store.outbox.wait_empty(RETRY_WAIT_S)
    rows = down.export_rows()
    assert [(r["turn_key"], r["rating"]) for r in rows] == [(details["turn_key"], 1)]


def test_a_turn_store_lost_mid_turn_fails_no_turn(served, postgres: PostgresServer):
    _, pipeline, _, workspace = served
    log = TurnLog(PostgresStore(postgres.url(postgres.create_database()), connect_timeout_s=1))
    assert log.store.connect()
    pipeline.__dict__["turn_log"], original = log, pipeline.turn_log
    workspace.fake.hold_after_first = threading.Event()  # the LLM stops after its first words...
    speaking = threading.Event()
    events: list = []

    def turn() -> None:
        for event in pipeline.run_turn([], text="Tell me about the avatar.", session_id="mid-turn"):
            events.append(event)
            if isinstance(event, ReplyDelta):
                speaking.set()

    runner = threading.Thread(target=turn)
    try:
        runner.start()
        assert speaking.wait(60)
        postgres.stop()  # ...the database goes away while the turn is under way...
        workspace.fake.hold_after_first.set()  # ...and the turn finishes
        runner.join(120)
        done = events[-1]
        assert isinstance(done, TurnComplete) and done.reply.text and done.costs_usd["actual"] >= 0
        assert log.store.outbox.pending == 1
    finally:
        workspace.fake.hold_after_first = None
        postgres.start()
        pipeline.__dict__["turn_log"] = original
    assert log.store.outbox.wait_empty(RETRY_WAIT_S)
    assert [r["turn_key"] for r in log.export_rows()] == [done.turn_key]
