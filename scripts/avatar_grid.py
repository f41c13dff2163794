"""Screenshot the real Avatar component (three.js in headless Chromium) in every emotion and a few visemes as one grid.

``python scripts/avatar_grid.py`` writes ``docs/avatar_grid_<character>.png`` for every character of
``data/characters.json``; ``--character NAME`` makes one, ``--glb PATH --out PNG`` any GLB. It serves a tiny
Gradio app with ``components.avatar.Avatar``, poses the avatar by sending it frames (a silent clip that holds one
viseme, with an emotion at intensity 1), screenshots the canvas once the pose has blended in, and composes the
labelled shots into one PNG. Blinks, saccades, head sway and breathing are switched off in this app only, so every
still is sharp and looks at the camera. Needs Debian's ``/usr/bin/chromium``, playwright and Pillow.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.avatar import Avatar, avatar_clip, avatar_frame, character_frame  # noqa: E402
from core.characters import CharacterBook  # noqa: E402
from core.types import EMOTION_LABELS, Emotion, MouthCue, VisemeKey, VisemeTrack  # noqa: E402
from tests.browser import launch_chromium, serve_blocks  # noqa: E402

log = logging.getLogger(__name__)

DOCS = ROOT / "docs"
CLIP_S = 60.0
"""Length of the silent clip that holds a pose (the next pose's new turn stops it)."""
SETTLE_S = 1.3
"""Time after playback starts before the shot: the mood (0.5 s) and viseme (18 Hz) blends have converged..."""
SETTLE_FRAMES = 15
"""...and at least this many frames were drawn since (the player caps a frame's blend step, so a slow software
renderer needs frames, not just time)."""
SPEECH_SHOTS: tuple[tuple[str, str], ...] = (
    ("aa", "neutral"),
    ("O", "neutral"),
    ("PP", "neutral"),
    ("FF", "neutral"),
    ("E", "joy"),
)
"""(viseme, emotion) of the mid-speech shots."""
STILL_MOTION = {"blink_interval_s": [1e6, 1e6], "saccade_amplitude": 0.0, "head_sway_rad": 0.0, "breath_amplitude": 0.0}
TILE_PX, LABEL_PX, GAP_PX, COLUMNS = 400, 34, 6, 4
HIDE_OVERLAYS = ".avatar-status, .avatar-toolbar, .avatar-report { display: none !important; }"


def silent_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    """Write a mono 16-bit WAV of silence."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return path


def pose_frame(turn_id: str, wav: Path, viseme: str, emotion: str) -> dict:
    """A speaking frame whose one clip holds ``viseme`` at weight 1 and shows ``emotion`` at intensity 1."""
    track = VisemeTrack(
        CLIP_S, (MouthCue(0.0, CLIP_S, "X"),), (VisemeKey(0.0, {viseme: 1.0}), VisemeKey(CLIP_S, {viseme: 1.0}))
    )
    mood = Emotion(emotion, {label: float(label == emotion) for label in EMOTION_LABELS}, "avatar_grid")
    return avatar_frame(turn_id, "speaking", [avatar_clip(wav, track, emotion=mood, intensity=1.0)])


def build_app(glbs: list[Path], wav: Path):
    """The Gradio app: the avatar (still motion), a box whose Load switches it to a GLB, and a hidden command box
    whose Send poses it."""
    import gradio as gr

    def send(command: str) -> dict:
        cmd = json.loads(command)
        return pose_frame(cmd["turn_id"], wav, cmd["viseme"], cmd["emotion"])

    def load(path: str) -> dict:
        return character_frame(Path(path).name, Path(path))

    with gr.Blocks() as demo:
        avatar = Avatar(glb_path=glbs[0], glbs=glbs, height=TILE_PX, allow_upload=False, elem_id="avatar")
        avatar.props["motion"]["idle"].update(STILL_MOTION)
        command = gr.Textbox(elem_id="command")
        gr.Button("Send", elem_id="send").click(send, command, avatar)
        glb = gr.Textbox(elem_id="glb")
        gr.Button("Load", elem_id="load").click(load, glb, avatar)
    return demo


def shoot(page, turn_id: str, viseme: str, emotion: str, path: Path) -> None:
    """Pose the avatar, wait for the blend, and screenshot its canvas."""
    page.fill("#command textarea", json.dumps({"turn_id": turn_id, "viseme": viseme, "emotion": emotion}))
    page.click("#send")
    page.wait_for_function(
        f"window.avatarState.turnId === {json.dumps(turn_id)} && window.avatarState.playing", timeout=60_000
    )
    frames = page.evaluate("window.avatarState.framesRendered")
    page.wait_for_function(
        f"window.avatarState.framesRendered > {frames + SETTLE_FRAMES} && window.avatarState.playbackTime > {SETTLE_S}",
        timeout=120_000,
    )
    page.locator("#avatar canvas").screenshot(path=str(path))


def compose(shots: list[tuple[str, Path]], out: Path) -> None:
    """Lay the shots out in a labelled grid."""
    from PIL import Image, ImageDraw, ImageFont

    rows = -(-len(shots) // COLUMNS)
    cell_h = TILE_PX + LABEL_PX
    sheet = Image.new("RGB", (COLUMNS * (TILE_PX + GAP_PX) + GAP_PX, rows * (cell_h + GAP_PX) + GAP_PX), "#101318")
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 20)
    except OSError:
        font = ImageFont.load_default()
    for i, (label, path) in enumerate(shots):
        r, c = divmod(i, COLUMNS)
        x, y = GAP_PX + c * (TILE_PX + GAP_PX), GAP_PX + r * (cell_h + GAP_PX)
        tile = Image.open(path).convert("RGB")
        side = min(tile.size)
        left, top = (tile.width - side) // 2, (tile.height - side) // 2
        sheet.paste(tile.crop((left, top, left + side, top + side)).resize((TILE_PX, TILE_PX)), (x, y + LABEL_PX))
        draw.text((x + TILE_PX / 2, y + LABEL_PX / 2), label, fill="#e5e9f0", font=font, anchor="mm")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)


def grid_path(character: str) -> Path:
    """Where a character's grid goes (the README shows these)."""
    return DOCS / f"avatar_grid_{character.lower()}.png"


def make_grid(page, glb: Path, out: Path, wav: Path) -> None:
    """Load ``glb`` into the page's avatar, take every shot of the plan, and compose the grid at ``out``."""
    page.evaluate("() => { window.avatarState.ready = false; }")
    page.fill("#glb textarea", str(glb))
    page.click("#load")
    page.wait_for_function(
        f"window.avatarState.ready && window.avatarState.avatarSource === {json.dumps(glb.name)}", timeout=60_000
    )
    errors = page.evaluate("window.avatarState.errors")
    if errors:
        raise RuntimeError(f"the avatar reported errors: {errors}")
    emotions = sorted(EMOTION_LABELS, key=lambda e: e != "neutral")  # neutral first, then the rest in order
    plan = [(emotion, "sil", emotion) for emotion in emotions]
    plan += [(f"speaking '{v}'" + ("" if e == "neutral" else f" + {e}"), v, e) for v, e in SPEECH_SHOTS]
    shots = []
    for i, (label, viseme, emotion) in enumerate(plan):
        path = wav.parent / f"{glb.stem}_{i:02d}.png"
        started = time.monotonic()
        shoot(page, f"grid-{glb.stem}-{i}", viseme, emotion, path)
        log.info("%s %-28s %.1f s", glb.stem, label, time.monotonic() - started)
        shots.append((label, path))
    compose(shots, out)
    log.info("wrote %s", out)


def main(argv: list[str] | None = None) -> None:
    """Serve the avatar, take the shots, write one grid per character (or for the GLB given)."""
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--character", action="append", help="a character's name (repeatable; default: all)")
    parser.add_argument("--glb", type=Path, help="any GLB instead of the characters' (with --out)")
    parser.add_argument("--out", type=Path, help="the grid's path for --glb")
    args = parser.parse_args(argv)
    if bool(args.glb) != bool(args.out):
        parser.error("--glb and --out go together")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    book = CharacterBook.load()
    jobs = [(args.glb.resolve(), args.out)] if args.glb else [
        (book.get(name).glb, grid_path(book.get(name).name)) for name in (args.character or book.names)]
    with tempfile.TemporaryDirectory(prefix="avatar_grid_") as tmp:
        wav = silent_wav(Path(tmp) / "silence.wav", CLIP_S)
        demo = build_app([glb for glb, _ in jobs], wav)
        with serve_blocks(demo) as url, sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": TILE_PX + 40, "height": TILE_PX + 300})
            page.goto(url)
            page.wait_for_function("window.avatarState && window.avatarState.ready", timeout=60_000)
            page.add_style_tag(content=HIDE_OVERLAYS)
            for glb, out in jobs:
                make_grid(page, glb, out, wav)
            browser.close()


if __name__ == "__main__":
    main()
