"""Audio/visual sync in the browser: how late the page applies each viseme against the audio clock, over real replies.

The real app (``app.build_app`` on the default offline pipeline) is served on port 7891 and opened in headless
Chromium (software WebGL). A question is typed and sent; while the reply plays, the avatar logs every frame
(``avatarState.lipLog``: the clip, its time on the AudioContext clock, the dominant viseme it sampled from the track
and the one the smoothed mouth shows) and each clip's keyframes (``avatarState.lipClips``).

A viseme is *due* at the time of each keyframe whose dominant viseme differs from the previous keyframe's (track
time, which already leads the sound by the track's anticipation). It is *applied* in the first frame whose audio
clock has reached that time (the frame samples it), and *shown* in the first frame from then on whose smoothed
mouth has it dominant (visemes shorter than the smoothing may never dominate: counted apart). Offsets are measured
at the GPU frame cap (``max_fps``, forced here on the software rasteriser, as the component tests do) and at the
CPU-rasteriser cap the app really uses here (``software_max_fps``). Writes ``av_sync.md``; screenshots go to
test-artifacts/.
Run: ``flock /tmp/avatar-heavy.lock python bench/lipsync/av_sync.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import components.avatar as avatar_component  # noqa: E402 - the project root must be on sys.path first
from core.lipsync.track import ANTICIPATION_S  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = 7891
QUESTIONS = ("Hello! Can you tell me what you are and what you can do?", "What can you tell me about the avatar?")
REPLY_TIMEOUT_S = 240
QUIET_S = 4.0
POLL_MS = 200
PERCENTILE = 95
READING = (
    'Reading: the page samples the track on the audio clock in every frame it draws, so the applied '
    'offset is the wait for the next frame; here SwiftShader on the loaded 2-core machine drew only ~2 '
    'frames per second under either cap, so the offset is about half a frame interval at the median and '
    "one interval at p95. The goal (p95 <= 40 ms at a GPU's 30 fps cap) needs a real GPU to be shown; at "
    "30 fps the same mechanism bounds the applied offset by one frame (33 ms). 'Shown' counts only the "
    'changes the smoothed mouth reached; at 2 fps most were never dominant.'
)
"""How to read the table (written under it)."""


def due_events(keys: list[dict]) -> list[tuple[float, str]]:
    """(time, viseme) of every keyframe whose dominant viseme differs from the previous keyframe's."""
    events, previous = [], None
    for key in keys:
        top = max(key["w"].items(), key=lambda kv: kv[1])[0].removeprefix("viseme_")
        if top != previous:
            events.append((float(key["t"]), top))
        previous = top
    return events


def offsets(log: list[dict], clips: list[dict]) -> tuple[list[float], list[float], int, int]:
    """(applied offsets, shown offsets, events, events never shown) in ms over every clip of the log."""
    applied, shown, total, missed = [], [], 0, 0
    for clip in clips:
        frames = sorted((f for f in log if f["start"] == clip["start"]), key=lambda f: f["t"])
        events = due_events(clip["keys"])
        for k, (due, viseme) in enumerate(events):
            after = [f for f in frames if f["t"] >= due]
            if not after:
                continue  # the clip ended (or the turn stopped) before this time
            total += 1
            applied.append((after[0]["t"] - due) * 1000)
            until = events[k + 1][0] if k + 1 < len(events) else float("inf")
            hit = next((f for f in after if f["t"] <= until + 1e-9 and f["shown"] == viseme), None)
            if hit is None:
                missed += 1
            else:
                shown.append((hit["t"] - due) * 1000)
    return applied, shown, total, missed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def wait_until_reply_played(page, clips_before: int) -> None:
    """Until the avatar has played a clip of this reply and stayed silent for ``QUIET_S`` (streamed clips of one
    reply can leave short gaps between them)."""
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    quiet_since = None
    while time.monotonic() < deadline:
        playing, played = page.evaluate("[avatarState.playing, avatarState.clipsPlayed]")
        if playing or played <= clips_before:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_S:
            return
        page.wait_for_timeout(POLL_MS)
    raise TimeoutError(f"the reply did not finish playing within {REPLY_TIMEOUT_S} s")


def measure(cap: str, pipeline, browser, shots: Path) -> dict:
    """Ask the questions on a fresh page of the app built with frame cap ``cap`` ("gpu" or "cpu")."""
    import app

    original = avatar_component.load_motion

    def motion():
        loaded = original()
        if cap == "gpu":
            loaded["idle"]["software_max_fps"] = loaded["idle"]["max_fps"]
        return loaded

    avatar_component.load_motion = motion
    try:
        demo = app.build_app(pipeline)
    finally:
        avatar_component.load_motion = original
    demo.queue(default_concurrency_limit=1).launch(server_name="127.0.0.1", server_port=PORT,
                                                   prevent_thread_lock=True, quiet=True)
    log, clips, fps = [], [], []
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://127.0.0.1:{PORT}/")
        page.wait_for_function("window.avatarState && window.avatarState.ready", timeout=60_000)
        for n, question in enumerate(QUESTIONS):
            page.evaluate("() => { avatarState.lipLog = []; avatarState.lipClips = []; }")
            before = page.evaluate("avatarState.clipsPlayed")
            page.locator("#question textarea").fill(question)
            page.locator("#send").click()
            page.wait_for_function("window.avatarState.playing", timeout=REPLY_TIMEOUT_S * 1000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(shots / f"av_sync_{cap}_{n}.png"))
            fps.append(page.evaluate("avatarState.fps"))
            wait_until_reply_played(page, before)
            log += page.evaluate("avatarState.lipLog")
            clips += page.evaluate("avatarState.lipClips")
        clock = page.evaluate("avatarState.clock")
        page.close()
    finally:
        demo.close()
    applied, shown, total, missed = offsets(log, clips)
    audio_s = sum(max((k["t"] for k in c["keys"]), default=0.0) for c in clips)
    return {"cap": cap, "fps": statistics.median(fps), "clips": len(clips), "audio_s": audio_s, "events": total,
            "missed": missed, "clock": clock, "applied": applied, "shown": shown, "frames": len(log)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from playwright.sync_api import sync_playwright

    from core.config import load_config
    from core.pipeline import Pipeline
    from tests.browser import launch_chromium

    shots = ROOT / "test-artifacts"
    shots.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="av-sync-") as cache:
        config = load_config({**os.environ, "AVATAR_CACHE_DIR": cache, "AVATAR_RESPONSE_CACHE": "0"})
        pipeline = Pipeline(config)
        pipeline.warm_up()
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            started = time.perf_counter()
            results = []
            for cap in ("gpu", "cpu"):
                results.append(measure(cap, pipeline, browser, shots))
                print(f"{cap}: {len(results[-1]['applied'])} viseme changes measured", flush=True)
            browser.close()
        motion = avatar_component.load_motion()["idle"]
        llm = pipeline.stages.llm.description
    write(results, motion, llm, time.perf_counter() - started)


def write(results: list[dict], motion: dict, llm: str, seconds: float) -> None:
    caps = {"gpu": f"GPU frame cap ({motion['max_fps']} fps)", "cpu": f"CPU-rasteriser cap "
            f"({motion['software_max_fps']} fps, what this machine's software WebGL gets)"}
    lines = ["# Audio/visual sync in the browser", "",
             f"Written by `python bench/lipsync/av_sync.py` (under `flock /tmp/avatar-heavy.lock`, shared 2-core "
             f"machine, headless Chromium with SwiftShader, {seconds:.0f} s). The real app answers "
             f"{len(QUESTIONS)} typed questions ({llm}); offsets are frame audio-clock time minus the due track "
             "time of each viseme change, in ms (positive: the page is late). See the script's docstring.", "",
             "| frame cap | measured fps | clips, audio s | viseme changes | applied: median / p95 ms | "
             "shown (smoothed mouth): median / p95 ms | changes never dominant |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {caps[r['cap']]} | {r['fps']:.1f} | {r['clips']}, {r['audio_s']:.1f} | {r['events']} | "
                     f"{statistics.median(r['applied']):.0f} / {percentile(r['applied'], PERCENTILE):.0f} | "
                     f"{statistics.median(r['shown']):.0f} / {percentile(r['shown'], PERCENTILE):.0f} | "
                     f"{r['missed']} ({r['missed'] / max(r['events'], 1):.0%}) |")
    lines += ["", f"Clock: {results[0]['clock']} (the AudioContext's currentTime: the clips are scheduled on it). "
              f"The track's keyframes lead the sound by its anticipation ({ANTICIPATION_S * 1000:.0f} ms), so a "
              "page late by less than that still moves the mouth no later than the sound.", "", READING, ""]
    (HERE / "av_sync.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
