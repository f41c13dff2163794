"""Failures stay inside the turn: each stage failure reaches the user as what it was (stage and backend), the turn
log records the same, and a failure of bookkeeping (response cache, turn log) never loses a reply the user heard.

The stages are in-process fakes (``tests/fakes.py``); each test runs the question through the app's turn handler
(``ui.conversation.Conversation``) as the browser's chat does, and reads the chat the user sees.
"""

from __future__ import annotations

import gc
import logging
import sqlite3
import threading
from types import SimpleNamespace

import pytest

from core.cache import ResponseCache
from core.characters import CharacterBook
from core.config import load_config
from core.disk_budget import FolderBudget
from core.errors import BackendError
from core.experiments import ExperimentBook, ExperimentRunner
from core.feedback import AnswerKeys
from core.turn_policy import TurnPolicy
from core.types import SpokenClip, TurnComplete
from tests.fakes import FAKE_ANSWER, FakeLLM, FakeTTS, fake_pipeline
from ui.conversation import TURN_OUTPUTS, Conversation

CHAT = TURN_OUTPUTS.index("chat")
HISTORY = TURN_OUTPUTS.index("history")
QUESTION = "Please tell me about yourself."
PREPARED_TIMEOUT_S = 900.0


@pytest.fixture
def config(tmp_path):
    return load_config({"AVATAR_CACHE_DIR": str(tmp_path / "cache"), "AVATAR_EXPERIMENT": "none",
                        "AVATAR_TURN_STORE": "sqlite", "AVATAR_TURN_STORE_PATH": str(tmp_path / "turns.sqlite")})


def conversation_for(pipeline, tmp_path) -> Conversation:
    experiments = ExperimentRunner(ExperimentBook.load(pipeline.config.experiments), pipeline.turn_log)
    return Conversation(pipeline, experiments, CharacterBook.load(), TurnPolicy(limit=1, session_limit=1),
                        AnswerKeys(), FolderBudget((tmp_path / "gradio",), 1.0))


def ask_in_chat(conversation: Conversation, question: str = QUESTION, session: str = "tester") -> list[tuple]:
    """What the chat handler yields for one typed question, after it took its place in the queue."""
    request = SimpleNamespace(session_hash=session)
    *_, ticket_id = conversation.queue_turn(None, [], [], request)
    return list(conversation.respond_typed(question, [], [], ticket_id, "", request))


def last_chat(updates: list[tuple]) -> list[dict]:
    return next(u[CHAT] for u in reversed(updates) if isinstance(u[CHAT], list))


def test_tts_failing_mid_reply_says_which_voice_failed_and_logs_it(config, tmp_path):
    tts = FakeTTS(fail_on=2, failure=RuntimeError("voice crashed"))
    pipeline = fake_pipeline(config, tts=tts)
    events = []
    with pytest.raises(BackendError) as failure:
        events.extend(pipeline.run_turn([], text=QUESTION, session_id="direct"))
    assert failure.value.user_message() == "TTS (fake) failed: RuntimeError: voice crashed"
    assert sum(isinstance(e, SpokenClip) for e in events) == 1  # the first clause was spoken before the failure

    updates = ask_in_chat(conversation_for(pipeline, tmp_path))
    chat = last_chat(updates)
    assert chat[-1] == {"role": "assistant", "content": "⚠️ TTS (fake) failed: RuntimeError: voice crashed"}
    assert chat[-2]["content"].startswith("Hello there.")  # what was already written stays in the chat
    assert all(u[HISTORY] == [] for u in updates if isinstance(u[HISTORY], list))  # a failed turn is not history
    rows = pipeline.turn_log.export_rows()
    assert [(r["session_id"], r["reply"], r["error"]) for r in rows] == [
        ("direct", None, "TTS (fake) failed: RuntimeError: voice crashed"),
        ("tester", None, "TTS (fake) failed: RuntimeError: voice crashed"),
    ]


def test_llm_producer_crash_is_reported_as_what_it_was_not_as_a_cancel(config, tmp_path, caplog):
    llm = FakeLLM(config, fail_after=3, failure=KeyError("logits"))
    pipeline = fake_pipeline(config, llm=llm)
    with caplog.at_level(logging.ERROR, logger="core.reply_producer"):
        chat = last_chat(ask_in_chat(conversation_for(pipeline, tmp_path)))
    assert chat[-1] == {"role": "assistant", "content": "⚠️ LLM (fake) failed: KeyError: 'logits'"}
    assert "LLM producer (fake) crashed" in caplog.text and "KeyError: 'logits'" in caplog.text
    row = pipeline.turn_log.export_rows()[-1]
    assert row["reply"] is None and row["error"] == "LLM (fake) failed: KeyError: 'logits'"
    assert llm.streams_open == 0


def test_an_empty_reply_asks_the_user_to_try_again(config, tmp_path):
    pipeline = fake_pipeline(config, llm=FakeLLM(config, answer=""))
    chat = last_chat(ask_in_chat(conversation_for(pipeline, tmp_path)))
    message = "LLM (fake) failed: it wrote no answer; please ask again"
    assert chat[-1] == {"role": "assistant", "content": f"⚠️ {message}"}
    assert chat[-2] == {"role": "user", "content": QUESTION}
    row = pipeline.turn_log.export_rows()[-1]
    assert (row["question"], row["reply"], row["error"]) == (QUESTION, None, message)


def test_a_failing_cache_write_loses_nothing(config, tmp_path, monkeypatch, caplog):
    def disk_full(*_args, **_kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(ResponseCache, "put", disk_full)
    pipeline = fake_pipeline(config)
    with caplog.at_level(logging.ERROR, logger="core.best_effort"):
        updates = ask_in_chat(conversation_for(pipeline, tmp_path))
    chat = last_chat(updates)
    assert chat[-1]["content"].startswith(FAKE_ANSWER) and "⚠️" not in chat[-1]["content"]
    assert updates[-1][HISTORY][-1] == {"role": "assistant", "content": FAKE_ANSWER}
    assert "storing the reply in the response cache failed" in caplog.text
    assert "database or disk is full" in caplog.text
    row = pipeline.turn_log.export_rows()[-1]
    assert (row["reply"], row["error"], row["cache_hit"]) == (FAKE_ANSWER, None, 0)


def test_a_locked_turn_log_keeps_the_reply_and_stores_the_turn_once_the_lock_goes(config, tmp_path, monkeypatch):
    monkeypatch.setattr("core.turnstore.sqlite.BUSY_TIMEOUT_S", 0.2)
    pipeline = fake_pipeline(config)
    pipeline.turn_log.store.connect()  # the tables exist; now another process takes the write lock and keeps it
    holder = sqlite3.connect(config.store.sqlite_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        events = list(pipeline.run_turn([], text=QUESTION, session_id="locked"))
        updates = ask_in_chat(conversation_for(pipeline, tmp_path))
        assert isinstance(events[-1], TurnComplete) and events[-1].reply.text == FAKE_ANSWER
        assert len(events[-1].turn_key) == 32 and events[-1].costs_usd  # priced without the store
        assert last_chat(updates)[-1]["content"].startswith(FAKE_ANSWER)
        assert pipeline.turn_log.store.outbox.pending == 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert pipeline.turn_log.store.outbox.flush() == 0
    rows = pipeline.turn_log.export_rows()
    assert [(r["session_id"], r["reply"], r["turn_key"]) for r in rows][0] == ("locked", FAKE_ANSWER,
                                                                              events[-1].turn_key)
    assert [r["reply"] for r in rows] == [FAKE_ANSWER, FAKE_ANSWER]


def test_a_cancelled_turn_frees_the_local_model_before_it_returns(config, pipeline):
    """Barge-in on the real llama.cpp backend (the default model, shared with the other tests): when the cancelled
    turn ends, the model's lock is free at once, without waiting for garbage collection or for the next token, so
    the next turn can start."""
    from core.errors import TurnCancelled
    from core.types import ReplyDelta

    assert pipeline.prepared.wait(PREPARED_TIMEOUT_S)  # start-up's document preparation holds the lock meanwhile
    llm = pipeline.stages.llm
    turns = fake_pipeline(config, llm=llm)
    cancel = threading.Event()
    gc.disable()
    try:
        with pytest.raises(TurnCancelled, match="cancelled before it finished"):
            for event in turns.run_turn([], text="Tell me a long story about a robot who sings.", cancel=cancel):
                if isinstance(event, ReplyDelta):
                    cancel.set()
        free = llm.small._lock.acquire(blocking=False)
    finally:
        gc.enable()
    assert free, "the cancelled generation still holds the llama.cpp lock"
    llm.small._lock.release()
    row = turns.turn_log.export_rows()[-1]
    assert row["error"] == "The reply was cancelled before it finished."
