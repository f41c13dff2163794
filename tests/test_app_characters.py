"""Characters in the real app (real pipeline, headless Chromium, gradio_client): each built-in face loads, speaks a
reply and comes to rest; a character whose voice cannot speak is refused with its reason and the current one stays;
``/ask`` takes a character name as its last, optional parameter."""

from __future__ import annotations

import json
import time

import pytest
from gradio_client import Client

from app import build_app
from core.characters import CHARACTERS_PATH, CharacterBook
from core.tts import edge
from tests.browser import chromium, console_collector, serve_blocks  # noqa: F401 - chromium is a fixture
from tests.test_app_browser import mouth_activity
from tests.test_characters import closed_port

WAIT_MS = 60_000
TURN_S = 180
QUESTION = "Hello! Who are you?"


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> CharacterBook:
    """The built-in characters, with Ava speaking through Piper (so both faces can be heard offline), and Nova,
    whose only voice is Edge's, which cannot be reached (its check is pointed at a closed local port)."""
    data = json.loads(CHARACTERS_PATH.read_text())
    ava = next(c for c in data["characters"] if c["name"] == "Ava")
    ava["voices"] = ["piper"]
    data["characters"].append({**ava, "name": "Nova", "voices": ["edge/en-US-JennyNeural"]})
    path = tmp_path_factory.mktemp("characters") / "characters.json"
    path.write_text(json.dumps(data))
    return CharacterBook.load(path)


@pytest.fixture(scope="module")
def app_url(pipeline, book: CharacterBook):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(edge, "EDGE_SERVICE", ("127.0.0.1", closed_port()))
        with serve_blocks(build_app(pipeline, characters=book)) as url:
            yield url


def ask_and_watch(page, question: str) -> tuple[list[dict], dict]:
    """Send a question; sample the face while it speaks; return the samples and the morphs once it rests."""
    emotion_before = page.locator("#emotion textarea").input_value()
    played = page.evaluate("window.avatarState.clipsPlayed")
    page.locator("#question textarea").fill(question)
    page.locator("#send").click()
    page.wait_for_function("window.avatarState.playing", timeout=TURN_S * 1000)
    samples, deadline = [], time.perf_counter() + TURN_S
    while time.perf_counter() < deadline:
        state = page.evaluate("({p: avatarState.playing, t: avatarState.playbackTime, m: avatarState.morphs})")
        if state["p"]:
            samples.append(state)
        elif page.locator("#emotion textarea").input_value() not in ("", emotion_before):
            break
        time.sleep(0.1)
    page.wait_for_function(f"window.avatarState.clipsPlayed > {played} && !window.avatarState.playing",
                           timeout=WAIT_MS)
    page.wait_for_function("window.avatarState.state === 'idle'", timeout=WAIT_MS)
    time.sleep(1.0)
    return samples, page.evaluate("window.avatarState.morphs")


def pick(page, label: str) -> None:
    """Choose an entry of the character dropdown as a user does."""
    page.locator("#character input").click()
    page.locator(f'[data-testid="dropdown-option"][aria-label="{label}"]').click()


def test_each_character_loads_speaks_and_rests_and_an_unavailable_one_is_refused(chromium, app_url, artifacts):  # noqa: F811
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    console = console_collector(page)
    page.goto(app_url)
    page.wait_for_function("window.avatarState && window.avatarState.ready", timeout=WAIT_MS)
    assert "Speaking: Sam" in page.locator("#character-note").inner_text()
    assert "Nova is not available: edge/en-US-JennyNeural" in page.locator("#character-note").inner_text()
    for name in ("Sam", "Ava"):
        if name != "Sam":
            pick(page, name)
            page.wait_for_function(f"window.avatarState.avatarSource === '{name}'", timeout=WAIT_MS)
        report = page.evaluate("window.avatarState.morphReport")
        assert report["mode"] == "oculus" and len(report["visemesFound"]) == 15 and not report["warnings"], report
        samples, rest = ask_and_watch(page, QUESTION)
        page.screenshot(path=str(artifacts / f"app_character_{name.lower()}.png"))
        activity = [mouth_activity(s["m"]) for s in samples]
        assert len(samples) >= 5 and max(activity) > 0.3, f"{name}: the mouth never opened: {activity}\n{console}"
        assert mouth_activity(rest) < 0.15, f"{name}: the mouth did not come to rest: {rest}"

    pick(page, "Nova (unavailable)")
    page.wait_for_function(
        "[...document.querySelectorAll('.toast-body, [data-testid=toast-body]')]"
        ".some((t) => t.innerText.includes('Nova is not available'))", timeout=WAIT_MS)
    toast = page.locator(".toast-body, [data-testid=toast-body]").last.inner_text()
    assert "cannot be reached" in toast or "not installed" in toast, toast
    assert "Keeping Ava" in toast
    page.wait_for_function("document.querySelector('#character input').value === 'Ava'", timeout=WAIT_MS)
    assert page.evaluate("window.avatarState.avatarSource") == "Ava"
    assert "Speaking: Ava" in page.locator("#character-note").inner_text()
    page.close()


def test_ask_takes_a_character_name_last(app_url):
    client = Client(app_url, verbose=False)
    *_, details = client.predict("Say hello.", None, api_name="/ask")  # callers from before characters still work
    assert details["character"] == "Sam" and details["voice"] == "piper"
    *_, details = client.predict("Say hello.", None, "ava", api_name="/ask")
    assert details["character"] == "Ava"
    with pytest.raises(Exception, match="Nova is not available: edge/en-US-JennyNeural"):
        client.predict("Say hello.", None, "Nova", api_name="/ask")
    with pytest.raises(Exception, match="no character called 'Bob'"):
        client.predict("Say hello.", None, "Bob", api_name="/ask")
