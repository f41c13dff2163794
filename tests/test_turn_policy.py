"""One turn policy: the limit of turns at once (configured, or derived from the cores and the LLM), the per-session
limit, a waiting turn's place and estimate, and the app wiring every turn-running event into one concurrency group."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from gradio_client import Client

from app import build_app
from core.characters import CharacterBook
from core.config import load_config
from core.disk_budget import FolderBudget
from core.errors import BusyError
from core.experiments import ExperimentBook, ExperimentRunner
from core.feedback import AnswerKeys
from core.turn_policy import TURN_GROUP, TurnPolicy, default_concurrency
from tests.browser import serve_blocks
from tests.fakes import FAKE_ANSWER, FakeLLM, fake_pipeline
from ui.conversation import Conversation


@pytest.mark.parametrize(("cores", "llm_threads", "expected"), [
    (2, 2, 1),  # the default here: the local model takes both cores while it writes
    (2, 1, 2),  # SmolLM2 writes on one thread
    (8, 2, 4),
    (1, 2, 1),
    (2, 0, 2),  # a cloud LLM: one turn per core (the voice is the CPU work)
    (4, 0, 4),
])
def test_default_concurrency_follows_the_cores_and_the_llm(cores, llm_threads, expected):
    assert default_concurrency(cores, llm_threads) == expected


def test_configured_limits_win_over_the_default():
    config = load_config({"AVATAR_TURN_CONCURRENCY": "3", "AVATAR_SESSION_TURNS": "2"})
    policy = TurnPolicy.for_config(config, llm_cpu_threads=2, cores=2)
    assert (policy.limit, policy.session_limit) == (3, 2)
    assert TurnPolicy.for_config(load_config({}), llm_cpu_threads=2, cores=2).limit == 1


def test_a_session_past_its_limit_is_refused_and_a_replacing_question_cancels_the_earlier_one():
    policy = TurnPolicy(limit=2, session_limit=1)
    first = policy.enqueue("a")
    with pytest.raises(BusyError, match=r"already has 1 question waiting or being answered \(the limit is 1\)"):
        policy.enqueue("a")
    other = policy.enqueue("b")  # other sessions are not affected
    newer = policy.enqueue("a", replace=True)
    assert first.superseded and not newer.superseded and not other.superseded


def test_a_waiting_turn_knows_its_place_and_an_estimate_from_recent_turns():
    policy = TurnPolicy(limit=1, session_limit=1)
    running = policy.enqueue("a")
    policy.start(running)
    second, third = policy.enqueue("b"), policy.enqueue("c")
    assert (policy.place(second).ahead, policy.place(third).ahead) == (1, 2)
    assert policy.place(second).wait_s is None  # no turn has finished yet
    assert policy.place(second).describe() == "1 turn is ahead of yours."
    running.started_s = time.monotonic() - 10.0  # as if it had run for 10 s
    policy.finish(running, answered=True)
    assert policy.place(second).ahead == 0 and policy.place(second).describe() == "Your turn is next."
    assert policy.place(third).ahead == 1 and policy.place(third).wait_s == pytest.approx(10.0, abs=0.5)
    assert policy.place(third).describe() == "1 turn is ahead of yours; about 10 s."
    policy.withdraw("b")  # b's tab closed while it waited: c moves up
    assert policy.place(third).ahead == 0
    assert policy.status() == "1 at a time; 0 running, 1 waiting; one per session"


def test_the_chat_shows_a_waiting_turn_its_place_and_the_avatar_waits(tmp_path):
    config = load_config({"AVATAR_CACHE_DIR": str(tmp_path), "AVATAR_EXPERIMENT": "none"})
    pipeline = fake_pipeline(config)
    policy = TurnPolicy(limit=1, session_limit=1)
    conversation = Conversation(pipeline, ExperimentRunner(ExperimentBook.load(config.experiments)),
                                CharacterBook.load(), policy,
                                AnswerKeys(), FolderBudget((tmp_path / "gradio",), 1.0))
    busy = policy.enqueue("someone else")
    policy.start(busy)
    _chat, _history, avatar, note, ticket_id = conversation.queue_turn(None, [], [], SimpleNamespace(session_hash="me"))
    assert avatar["state"] == "waiting"
    assert note == "⏳ 1 turn is ahead of yours. The avatar answers in turn; you can keep typing."
    policy.finish(busy)
    *_, last = conversation.respond_typed("Hi there", [], [], ticket_id, "",
                                                SimpleNamespace(session_hash="me"))
    assert last[0][-1]["content"].startswith(FAKE_ANSWER)
    assert policy.status().startswith("1 at a time; 0 running, 0 waiting")


class ConcurrencyProbe(FakeLLM):
    """A fake LLM that records how many of its streams run at the same time."""

    def __init__(self, config, **knobs):
        super().__init__(config, **knobs)
        self.running = 0
        self.most = 0
        self._count = threading.Lock()

    def stream(self, messages, passages=()):
        with self._count:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            yield from super().stream(messages, passages)
        finally:
            with self._count:
                self.running -= 1


def test_every_turn_event_shares_one_concurrency_group_with_the_configured_limit(tmp_path):
    config = load_config({"AVATAR_CACHE_DIR": str(tmp_path), "AVATAR_EXPERIMENT": "none",
                          "AVATAR_RESPONSE_CACHE": "0"})
    llm = ConcurrencyProbe(config, latency_s=0.05)
    policy = TurnPolicy(limit=1, session_limit=1)
    demo = build_app(fake_pipeline(config, llm=llm), policy=policy)
    turn_fns = {"respond_typed", "respond_spoken", "ask"}
    groups = {(f.name, f.concurrency_id, f.concurrency_limit) for f in demo.fns.values() if f.name in turn_fns}
    assert {name for name, *_ in groups} == turn_fns
    assert {(group, limit) for _, group, limit in groups} == {(TURN_GROUP, 1)}
    with serve_blocks(demo) as url:
        clients = [Client(url, verbose=False) for _ in range(3)]
        with ThreadPoolExecutor(len(clients)) as pool:
            replies = list(pool.map(lambda c: c.predict("Hello?", None, "", api_name="/ask")[0], clients))
    assert replies == [FAKE_ANSWER] * 3
    assert llm.most == 1  # three sessions at once, one turn at a time


def test_one_api_session_cannot_run_two_turns_at_once(tmp_path):
    config = load_config({"AVATAR_CACHE_DIR": str(tmp_path), "AVATAR_EXPERIMENT": "none",
                          "AVATAR_RESPONSE_CACHE": "0"})
    demo = build_app(fake_pipeline(config, llm=FakeLLM(config, latency_s=0.1)),
                     policy=TurnPolicy(limit=2, session_limit=1))
    with serve_blocks(demo) as url:
        client = Client(url, verbose=False)
        jobs = [client.submit("Hello?", None, "", api_name="/ask") for _ in range(2)]
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(job.result()[0])
            except Exception as exc:  # noqa: BLE001 - gradio_client raises its AppError for gr.Error
                outcomes.append(str(exc))
    assert FAKE_ANSWER in outcomes
    assert any("already has 1 question waiting or being answered" in o for o in outcomes), outcomes
