"""The turn queue in the real page (headless Chromium): while another user's turn holds the only slot, a new
question shows its place in line and the avatar waits; then it is answered. And a question sent to interrupt the
avatar is answered even when the interrupted turn is still ending. The stages are fakes (``tests/fakes.py``):
this tests the UI's orchestration, not the models."""

from __future__ import annotations

import threading
import time

from core.config import load_config
from core.turn_policy import TurnPolicy
from tests.browser import ask, chromium, serve_blocks  # noqa: F401 - chromium is a fixture
from tests.fakes import FAKE_ANSWER, FakeLLM, FakeTTS, fake_pipeline

PAGE_WAIT_MS = 60_000
"""How long a page may take to show a state: two pages rendering WebGL in software on 2 busy cores are slow."""
POLL_MS = 100
"""Poll the page on a timer: requestAnimationFrame (Playwright's default) is slow while SwiftShader renders."""
SECOND_QUESTION = "And what else can you do?"


def open_pages(browser, url: str, n: int) -> list:
    pages = [browser.new_page(viewport={"width": 1280, "height": 900}) for _ in range(n)]
    for page in pages:
        page.goto(url)
        page.wait_for_function("window.avatarState && window.avatarState.ready", timeout=PAGE_WAIT_MS)
    return pages


def wait_until(condition, what: str, timeout_s: float = PAGE_WAIT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_MS / 1000)


def test_a_waiting_question_shows_its_place_and_the_avatar_waits(chromium, tmp_path, artifacts):  # noqa: F811
    config = load_config({"AVATAR_CACHE_DIR": str(tmp_path), "AVATAR_EXPERIMENT": "none",
                          "AVATAR_RESPONSE_CACHE": "0"})
    from app import build_app

    gate = threading.Event()  # holds the first user's turn (and so the only slot) until the waiting one is checked
    llm = FakeLLM(config, gate=gate)
    demo = build_app(fake_pipeline(config, llm=llm), policy=TurnPolicy(limit=1, session_limit=1))
    try:
        with serve_blocks(demo) as url:
            first, second = open_pages(chromium, url, 2)
            ask(first, "Hello, who are you?")
            wait_until(lambda: llm.calls, "the first user's turn to reach the LLM")
            ask(second, "Hello, who are you?")
            # The note comes with the queued step's output; the avatar takes the waiting state at its next frame.
            second.wait_for_function("document.querySelector('#queue-note').innerText.includes('ahead of yours') "
                                     "&& window.avatarState.state === 'waiting'", timeout=PAGE_WAIT_MS,
                                     polling=POLL_MS)
            note = second.locator("#queue-note").inner_text()
            second.screenshot(path=str(artifacts / "turn_queue_waiting.png"))
            gate.set()
            second.wait_for_function(f"document.querySelector('#chat').innerText.includes({FAKE_ANSWER[:20]!r})",
                                     timeout=PAGE_WAIT_MS, polling=POLL_MS)
            note_after = second.locator("#queue-note").inner_text()
    finally:
        gate.set()
    assert "⏳ 1 turn is ahead of yours." in note, note
    assert "ahead" not in note_after


def test_a_question_that_interrupts_a_slow_ending_turn_is_answered(chromium, tmp_path):  # noqa: F811
    """The interrupted turn is held while it voices its second clip, so its event is still running when the new
    question is queued: the case Gradio's default trigger mode ("once") silently dropped."""
    config = load_config({"AVATAR_CACHE_DIR": str(tmp_path), "AVATAR_EXPERIMENT": "none",
                          "AVATAR_RESPONSE_CACHE": "0"})
    from app import build_app

    gate = threading.Event()
    llm = FakeLLM(config)
    policy = TurnPolicy(limit=1, session_limit=1)
    demo = build_app(fake_pipeline(config, llm=llm, tts=FakeTTS(gate=gate, gate_after=1)), policy=policy)
    try:
        with serve_blocks(demo) as url:
            (page,) = open_pages(chromium, url, 1)
            ask(page, "Hello, who are you?")
            page.wait_for_function("window.avatarState.turnId && !window.avatarState.turnId.startsWith('state-')",
                                   timeout=PAGE_WAIT_MS, polling=POLL_MS)  # the first clip is there; the next waits
            ask(page, SECOND_QUESTION)
            wait_until(lambda: "1 running, 1 waiting" in policy.status(), "the second question to join the queue")
            gate.set()  # the first turn ends now, after the second question was queued
            wait_until(lambda: len(llm.calls) >= 2, "the second question to reach the LLM")
            page.wait_for_function(
                f"document.querySelector('#chat').innerText.split({SECOND_QUESTION!r})[1]?.includes({FAKE_ANSWER!r})",
                timeout=PAGE_WAIT_MS, polling=POLL_MS)
            chat = page.locator("#chat").inner_text()
    finally:
        gate.set()
    assert "(interrupted)" in chat.split(SECOND_QUESTION)[0], chat
