"""The turn queue in the real page (headless Chromium): while another user's turn holds the only slot, a new
question shows its place in line and the avatar waits; then it is answered. The stages are fakes
(``tests/fakes.py``): this tests the UI's orchestration, not the models."""

from __future__ import annotations

from core.config import load_config
from core.turn_policy import TurnPolicy
from tests.browser import chromium, console_collector, serve_blocks  # noqa: F401 - chromium is a fixture
from tests.fakes import FAKE_ANSWER, FakeLLM, fake_pipeline

SLOW_WORD_S = 0.4
"""The fake LLM's pace: the first user's turn lasts a few seconds, long enough to see the second one wait."""


def test_a_waiting_question_shows_its_place_and_the_avatar_waits(chromium, tmp_path, artifacts):  # noqa: F811
    config = load_config({"AVATAR_CACHE_DIR": str(tmp_path), "AVATAR_EXPERIMENT": "none",
                          "AVATAR_RESPONSE_CACHE": "0"})
    from app import build_app

    demo = build_app(fake_pipeline(config, llm=FakeLLM(config, latency_s=SLOW_WORD_S)),
                     policy=TurnPolicy(limit=1, session_limit=1))
    with serve_blocks(demo) as url:
        pages = [chromium.new_page(viewport={"width": 1280, "height": 900}) for _ in range(2)]
        consoles = [console_collector(p) for p in pages]
        for page in pages:
            page.goto(url)
            page.wait_for_function("window.avatarState && window.avatarState.ready", timeout=60_000)
        for page in pages:
            page.locator("#question textarea").fill("Hello, who are you?")
            page.locator("#send").click()
            page.wait_for_timeout(300)
        second = pages[1]
        second.wait_for_function("document.querySelector('#queue-note').innerText.includes('ahead of yours')",
                                 timeout=10_000)
        note = second.locator("#queue-note").inner_text()
        state = second.evaluate("window.avatarState.state")
        second.screenshot(path=str(artifacts / "turn_queue_waiting.png"))
        second.wait_for_function(f"document.querySelector('#chat').innerText.includes({FAKE_ANSWER[:20]!r})",
                                 timeout=60_000)
        note_after = second.locator("#queue-note").inner_text()
    assert "⏳ 1 turn is ahead of yours." in note, note
    assert state == "waiting", (state, consoles[1])
    assert "ahead" not in note_after
