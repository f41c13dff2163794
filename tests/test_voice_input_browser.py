"""Talking to the real page in headless Chromium: server recording (fake microphone), browser speech recognition
(an injected fake SpeechRecognition), and bad audio (silence, a corrupt file) that must not break the next turn."""

from __future__ import annotations

import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from app import build_app
from core.asr.wer import word_error_rate
from tests.browser import (
    CHROMIUM_ARGS,
    CHROMIUM_PATH,
    chromium,  # noqa: F401 - a fixture (tests below take it: F811 there)
    console_collector,
    serve_blocks,
)

SPOKEN_QUESTION = "How does the lip sync work?"
HEARD_WER_CEILING = 0.34
"""At most two of the question's six words misheard: tiny.en mishears espeak's robotic voice often (about a quarter
of the words of the tuning questions, even with the knowledge base's headings as a hint: bench/asr/hint.md), and
how often differs from one CPU to another ("lip sing" here, "loop sync" on a CI machine without the hint)."""
NO_SPEECH_RECOGNITION = """
for (const name of ['SpeechRecognition', 'webkitSpeechRecognition']) {
  Object.defineProperty(window, name, { value: undefined, configurable: true, writable: true });
}
"""
FAKE_RECOGNITION = """
window.fakeRecognition = { started: 0, stopped: 0 };
window.SpeechRecognition = class FakeRecognition {
  // Like Chrome's recogniser: interim results while "speaking", then one final result, then the end.
  start() {
    window.fakeRecognition.started += 1;
    const result = (text, isFinal) => Object.assign([{ transcript: text, confidence: 0.9 }], { isFinal });
    const steps = [
      () => this.onspeechstart && this.onspeechstart(),
      () => this.onresult({ resultIndex: 0, results: [result('how does the', false)] }),
      () => this.onresult({ resultIndex: 0, results: [result('how does the lip sync', false)] }),
      () => this.onresult({ resultIndex: 0, results: [result('How does the lip sync work?', true)] }),
      () => this.onend && this.onend(),
    ];
    steps.forEach((step, i) => setTimeout(step, 700 * (i + 1)));
  }
  stop() { window.fakeRecognition.stopped += 1; }
  abort() { window.fakeRecognition.stopped += 1; }
};
"""


def write_wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    """Write mono float audio as 16-bit PCM (what Chromium's fake capture device reads)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


def spoken_question(tmp_path: Path) -> Path:
    """espeak-ng speaking the question, then 2 s of silence for the pause that ends a hands-free turn."""
    raw = tmp_path / "raw.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), SPOKEN_QUESTION], check=True)
    with wave.open(str(raw)) as src:
        rate = src.getframerate()
        speech = np.frombuffer(src.readframes(src.getnframes()), dtype=np.int16).astype(np.float32) / 32767
    silence = np.zeros(2 * rate, dtype=np.float32)
    return write_wav(tmp_path / "question.wav", np.concatenate([silence[: rate // 2], speech, silence]), rate)


def open_page(browser, url: str, init_script: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.add_init_script(init_script)
    console = console_collector(page)
    page.goto(url)
    page.wait_for_function("window.avatarState && window.avatarState.ready && window.voiceState", timeout=60_000)
    return page, console


def wait_for_spoken_answer(page, timeout_s: float = 120) -> None:
    """Until the turn is over: its reply has played (or is playing) and the emotion of the reply is shown."""
    page.wait_for_function("window.avatarState.playing || window.avatarState.clipsPlayed > 0",
                           timeout=timeout_s * 1000)
    page.wait_for_function("document.querySelector('#emotion textarea').value !== ''", timeout=timeout_s * 1000)


def test_without_speech_recognition_the_page_records_for_the_server(pipeline, artifacts, tmp_path):
    """A fake microphone plays espeak speech; hands-free mode ends the turn at the pause; whisper.cpp transcribes."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM_PATH.exists():
        pytest.skip(f"{CHROMIUM_PATH} is missing")
    mic_args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={spoken_question(tmp_path)}%noloop"]
    with sync_api.sync_playwright() as playwright, serve_blocks(build_app(pipeline)) as url:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM_PATH), args=[*CHROMIUM_ARGS, *mic_args])
        try:
            page, console = open_page(browser, url, NO_SPEECH_RECOGNITION)
            status = page.locator("#voice .voice-status").inner_text()
            assert "no speech recognition" in status and "server recording" in status, status
            page.locator("#voice .voice-handsfree input").check()
            started = time.perf_counter()
            page.locator("#voice .voice-mic").click()
            page.wait_for_function("window.voiceState.utterances >= 1", timeout=30_000)
            turn_end_s = time.perf_counter() - started
            page.locator("#voice .voice-handsfree input").uncheck()  # stop listening: one question is enough
            page.wait_for_function("document.querySelector('#chat').innerText.includes('🎤')", timeout=60_000)
            wait_for_spoken_answer(page)
            page.screenshot(path=str(artifacts / "voice_server_recording.png"))
            chat = page.locator("#chat").inner_text()
            state = page.evaluate("window.voiceState")
        finally:
            browser.close()
    assert state["engine"] == "server" and state["speechStarts"] >= 1, (state, console)
    question, _, reply = chat.split("🎤", 1)[1].strip().partition("\n")
    assert word_error_rate(SPOKEN_QUESTION, question) <= HEARD_WER_CEILING, chat
    answer = reply.strip().split("\n")[0]
    assert answer and not answer.startswith("Model:"), chat  # a reply, before the line saying which model wrote it
    print(f"speech + pause ended the turn {turn_end_s:.1f} s after the click (speech lasts ~2.3 s + 0.8 s pause)")


def test_browser_speech_recognition_shows_interim_text_and_sends_the_final(chromium, pipeline, artifacts,  # noqa: F811
                                                                            monkeypatch):
    read_ahead = pipeline.read_ahead
    heard: list[str] = []  # what the model was asked to read ahead
    monkeypatch.setattr(pipeline, "read_ahead",
                        lambda history, text, options=None: heard.append(text) or read_ahead(history, text, options))
    with serve_blocks(build_app(pipeline)) as url:
        page, console = open_page(chromium, url, FAKE_RECOGNITION)
        assert "live in your browser" in page.locator("#voice .voice-status").inner_text()
        page.locator("#voice .voice-mic").click()
        page.wait_for_function("window.voiceState.interim.includes('lip sync')", timeout=10_000)
        # the final result may already have replaced the interim words on a slow machine: compare without case
        interim_shown = page.locator("#voice .voice-interim").inner_text().lower()
        page.screenshot(path=str(artifacts / "voice_browser_interim.png"))
        page.wait_for_function("window.voiceState.utterances === 1", timeout=10_000)
        page.wait_for_function("document.querySelector('#chat').innerText.includes('🎤 How does the lip sync work?')",
                               timeout=60_000)
        wait_for_spoken_answer(page)
        page.screenshot(path=str(artifacts / "voice_browser_answered.png"))
        chat = page.locator("#chat").inner_text()
        state = page.evaluate("window.voiceState")
    assert "how does the lip sync" in interim_shown, interim_shown
    assert state["engine"] == "browser" and state["speechStarts"] == 1 and not state["listening"], (state, console)
    assert chat.count("How does the lip sync work?") == 1, chat  # sent once, as the user's turn
    assert "how does the lip sync" in heard, heard  # the interim transcript was read ahead


def test_a_failing_recogniser_switches_to_server_recording_and_says_so(chromium, pipeline):  # noqa: F811
    failing = FAKE_RECOGNITION.replace("const steps = [", "const steps = [() => this.onerror({ error: 'network' }),")
    with serve_blocks(build_app(pipeline)) as url:
        page, _ = open_page(chromium, url, failing)
        page.locator("#voice .voice-mic").click()
        page.wait_for_function("window.voiceState.engine === 'server'", timeout=10_000)
        page.wait_for_function("!window.voiceState.listening", timeout=10_000)
        status = page.locator("#voice .voice-status").inner_text()
    assert "failed (network)" in status and "server recording" in status, status
    # This browser has no microphone at all: the page says so and offers the upload instead.
    assert "microphone is not available" in status and "upload" in status, status


def test_silence_and_a_corrupt_file_get_clear_messages_and_the_next_turn_works(
    chromium, pipeline, artifacts, tmp_path  # noqa: F811
):
    silence = write_wav(tmp_path / "silence.wav", np.random.default_rng(0).normal(0, 0.002, 32000), 16000)
    corrupt = tmp_path / "question.webm"
    corrupt.write_bytes(b"this is not audio at all " * 40)
    turns_before = len(pipeline.turn_log.export_rows())
    with serve_blocks(build_app(pipeline)) as url:
        page, console = open_page(chromium, url, NO_SPEECH_RECOGNITION)
        chat = page.locator("#chat")
        page.locator("#voice .voice-file").set_input_files(str(silence))
        page.wait_for_function("document.querySelector('#chat').innerText.includes(\"didn't catch that\")",
                               timeout=30_000)
        page.locator("#voice .voice-file").set_input_files(str(corrupt))
        page.wait_for_function("document.querySelector('#chat').innerText.includes('not audio I can read')",
                               timeout=30_000)
        after_bad = chat.inner_text()
        page.screenshot(path=str(artifacts / "voice_bad_input.png"))
        page.locator("#question textarea").fill("Can it run without internet?")
        page.locator("#send").click()
        wait_for_spoken_answer(page)
        final = chat.inner_text()
    rows = pipeline.turn_log.export_rows()[turns_before:]
    assert "…" not in after_bad and after_bad.count("⚠️") == 2, after_bad  # two messages, no reply started
    assert [r["llm_backend"] for r in rows[:2]] == [None, None], rows[:2]  # no LLM call for either
    assert "didn't catch that" in rows[0]["error"] and "not audio" in rows[1]["error"], rows[:2]
    assert "Can it run without internet?" in final and rows[2]["reply"], (final, console)
