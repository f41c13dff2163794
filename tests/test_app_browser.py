"""The real page in headless Chromium: type a question, hear the answer, watch the mouth move and come to rest."""

from __future__ import annotations

import time

from app import build_app
from tests.browser import chromium, console_collector, serve_blocks  # noqa: F401 - chromium is a fixture

MOUTH = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "viseme_aa", "viseme_O", "viseme_E", "viseme_PP")


def mouth_activity(morphs: dict) -> float:
    """The largest weight among mouth morphs: how open/shaped the mouth is right now."""
    return max((w for name, w in morphs.items() if name in MOUTH or name.startswith("viseme_")), default=0.0)


def test_a_typed_question_is_answered_aloud_with_moving_lips(chromium, pipeline, artifacts):  # noqa: F811
    with serve_blocks(build_app(pipeline)) as url:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        console = console_collector(page)
        page.goto(url)
        page.wait_for_function("window.avatarState && window.avatarState.ready", timeout=60_000)
        page.locator("#question textarea").fill("Hello! Can you tell me what you are?")
        sent = time.perf_counter()
        page.locator("#send").click()
        page.wait_for_function("window.avatarState.playing", timeout=120_000)
        first_audio_s = time.perf_counter() - sent
        samples = []
        deadline = time.perf_counter() + 180
        # Sample while the turn goes on: clips may arrive after the first ends; the turn ends when the emotion shows.
        while time.perf_counter() < deadline:
            state = page.evaluate(
                "({p: avatarState.playing, t: avatarState.playbackTime, m: avatarState.morphs, v: avatarState.viseme})"
            )
            if state["p"]:
                samples.append(state)
                if len(samples) == 8:
                    page.screenshot(path=str(artifacts / "app_speaking.png"))
            elif page.locator("#emotion textarea").input_value():
                break
            time.sleep(0.1)
        page.wait_for_function("window.avatarState.clipsPlayed >= 1 && !window.avatarState.playing")
        time.sleep(1.0)
        rest = page.evaluate("window.avatarState.morphs")
        page.screenshot(path=str(artifacts / "app_after_turn.png"))
        chat = page.locator("#chat").inner_text()
        emotion = page.locator("#emotion textarea").input_value()

    activity = [mouth_activity(s["m"]) for s in samples]
    times = [s["t"] for s in samples]
    assert len(samples) >= 5, f"playback too short to sample: {samples}\n{console}"
    assert times[-1] > times[0], "the audio clock did not advance"
    assert max(activity) > 0.3, f"the mouth never opened: {activity}"
    assert len({round(a, 1) for a in activity}) > 2, f"the mouth did not move: {activity}"
    assert len({s["v"] for s in samples}) > 2, "the viseme never changed"
    assert mouth_activity(rest) < 0.15, f"the mouth did not come to rest: {rest}"
    assert "Hello! Can you tell me what you are?" in chat
    assert emotion.split(" ")[0] in ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
    print(f"time from click to first audio: {first_audio_s:.2f} s; {len(samples)} samples")
