"""Barge-in: a new message while the avatar speaks stops playback at once, cancels the turn, and the history keeps
only what the avatar actually said."""

from __future__ import annotations

import threading
import time

import pytest

from app import build_app
from core.errors import PipelineError
from core.types import ChatMessage, ReplyDelta, SpokenClip, TurnComplete
from tests.browser import (
    ask,
    chromium,  # noqa: F401 - a fixture (tests below take it: F811 there)
    console_collector,
    serve_blocks,
)

FIRST = "Tell me a short story about a robot who learns to sing, in three sentences."
SECOND = "Thanks, that is enough. What can you do?"


class TurnSpy:
    """Records what each ``run_turn`` call received (the history) and yielded, with the time of each event."""

    def __init__(self, pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[dict] = []
        real = pipeline.run_turn

        def run_turn(history, **kwargs):
            call = {"history": list(history), "text": kwargs.get("text"), "events": []}
            self.calls.append(call)
            for event in real(history, **kwargs):
                call["events"].append((time.perf_counter(), event))
                yield event

        monkeypatch.setattr(pipeline, "run_turn", run_turn)


def test_a_new_message_while_the_avatar_speaks_stops_it_and_keeps_only_what_was_heard(
    chromium, pipeline, monkeypatch, artifacts  # noqa: F811
):
    spy = TurnSpy(pipeline, monkeypatch)
    with serve_blocks(build_app(pipeline)) as url:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        console = console_collector(page)
        page.goto(url)
        page.wait_for_function("window.avatarState && window.avatarState.ready", timeout=60_000)
        ask(page, FIRST)
        page.wait_for_function("window.avatarState.playing", timeout=120_000)
        first_turn = page.evaluate("window.avatarState.turnId")
        clicked = ask(page, SECOND)
        page.wait_for_function("!window.avatarState.playing", timeout=5_000, polling=20)
        stop_s = time.perf_counter() - clicked
        page.wait_for_function("document.querySelector('#chat').innerText.includes('(interrupted)')", timeout=30_000)
        page.wait_for_function(
            f"window.avatarState.turnId !== '{first_turn}' && !window.avatarState.turnId.startsWith('state-')",
            timeout=120_000,
        )
        page.screenshot(path=str(artifacts / "barge_in_second_reply.png"))
        deadline = time.perf_counter() + 120
        while not any(isinstance(e, TurnComplete) for _, e in spy.calls[-1]["events"]):
            assert time.perf_counter() < deadline, "the second turn did not finish"
            time.sleep(0.2)
        reports = page.evaluate("window.avatarState.interrupts")
        chat = page.locator("#chat").inner_text()

    first, second = spy.calls[0], spy.calls[-1]
    assert (first["text"], second["text"]) == (FIRST, SECOND)
    report = next((r for r in reports if r["turn_id"] == first_turn), reports)
    # "playing" may be False: the click can land in the gap between two clips (the next one still being voiced).
    assert report["turn_id"] == first_turn and report["clips_heard"] >= 1, (reports, console)
    clips = [e.text.strip() for _, e in first["events"] if isinstance(e, SpokenClip)]
    heard = " ".join(clips[: report["clips_heard"]])
    # The history sent with the second question holds the first question and only the clips that were heard.
    assert second["history"] == [ChatMessage("user", FIRST), ChatMessage("assistant", heard)], (clips, report)
    assert f"{heard} (interrupted)" in chat, chat
    # The first turn's generation stopped: nothing of it arrived after the interruption (beyond one clause in
    # flight), and it completed only if it had already completed before.
    late = [e for t, e in first["events"] if t > clicked + 1.0]
    assert not late, late
    print(f"playback stopped {stop_s * 1000:.0f} ms after the click; {report['clips_heard']} of {len(clips)} clips "
          f"heard ({report['heard_s']:.2f} s)")


def test_cancelling_a_turn_stops_the_llm_and_logs_the_turn_as_cancelled(pipeline):
    history = [ChatMessage("user", "Hello"), ChatMessage("assistant", "Hi! How can I help?")]
    question = "Why is that so? Tell me everything about it."  # a follow-up: never answered from the cache
    cancel = threading.Event()
    events = []
    with pytest.raises(PipelineError, match="cancelled"):
        for event in pipeline.run_turn(history, text=question, cancel=cancel, session_id="barge-in-test"):
            events.append(event)
            if isinstance(event, ReplyDelta):
                cancel.set()  # the user barges in as soon as the first words arrive
    deltas = [e for e in events if isinstance(e, ReplyDelta)]
    assert len(deltas) <= 2 and not any(isinstance(e, SpokenClip | TurnComplete) for e in events), events
    row = pipeline.turn_log.export_rows()[-1]
    assert row["session_id"] == "barge-in-test" and row["reply"] is None and "cancelled" in row["error"], row
