"""Browser tests of the Avatar component: rendering, audio-clocked lip-sync playback, emotions, idle life, upload.

A tiny Gradio app (Avatar + a Send button that builds a frame from a JSON command) runs in a thread and headless
Chromium (SwiftShader WebGL) drives it. The default avatar here is a small generated GLB whose morphs are the ARKit
names the viseme and expression maps use, so it exercises the viseme→ARKit path; the real default avatar (Oculus
visemes) is loaded through the upload button when it has been built.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
import wave
from pathlib import Path

import gradio as gr
import numpy as np
import pygltflib
import pytest

from components.avatar import (
    DEFAULT_EXPRESSIONS,
    DEFAULT_VISEME_MAP,
    Avatar,
    avatar_clip,
    avatar_frame,
    default_glb,
    load_pose_map,
)
from core.types import EMOTION_LABELS, Emotion, MouthCue, VisemeKey, VisemeTrack
from tests.browser import chromium, console_collector, serve_blocks  # noqa: F401 - chromium is a fixture

VISEMES = load_pose_map(
    DEFAULT_VISEME_MAP,
    [f"viseme_{v}" for v in ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U")],
)
EXPRESSIONS = load_pose_map(DEFAULT_EXPRESSIONS, EMOTION_LABELS)
BLINK_AND_GAZE = (
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeLookUpLeft",
    "eyeLookUpRight",
    "eyeLookDownLeft",
    "eyeLookDownRight",
    "eyeLookInLeft",
    "eyeLookInRight",
    "eyeLookOutLeft",
    "eyeLookOutRight",
    "eyeWideLeft",
    "eyeWideRight",
    "browInnerUp",
    "browDownLeft",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthRollLower",
    "eyeSquintRight",
    "mouthSmileLeft",
    "mouthSmileRight",
)
ARKIT_MORPHS = sorted({m for pose in (*VISEMES.values(), *EXPRESSIONS.values()) for m in pose} | set(BLINK_AND_GAZE))
SPEECH_TEXT = "Hello there, I am your avatar."
LONG_TEXT = "Good morning! The weather is lovely today, and I would be glad to help you plan a walk in the park."
WAIT_MS = 15_000
DEFAULT_GLB = default_glb()


# ------------------------------------------------------------------------------------------------ fixtures
def write_head_glb(path: Path, morph_names: list[str], jaw_node: bool = False) -> Path:
    """Write an ellipsoid 'head' GLB (1.6 m high) with one morph target per name (each bulges its own patch),
    optionally with an empty child node named "Jaw" standing in for a jaw bone."""
    rings, segments = 24, 32
    theta = np.linspace(0, np.pi, rings + 1)[:, None]
    phi = np.linspace(0, 2 * np.pi, segments + 1)[None, :]
    unit = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta) * np.ones_like(phi), np.sin(theta) * np.cos(phi)], -1)
    unit = unit.reshape(-1, 3).astype(np.float32)
    positions = unit * np.array([0.085, 0.115, 0.1], np.float32) + np.array([0, 1.6, 0], np.float32)
    quads = [
        (
            r * (segments + 1) + s,
            r * (segments + 1) + s + 1,
            (r + 1) * (segments + 1) + s,
            (r + 1) * (segments + 1) + s + 1,
        )
        for r in range(rings)
        for s in range(segments)
    ]
    indices = np.array([[a, c, b, b, c, d] for a, b, c, d in quads], np.uint16).reshape(-1)
    deltas = []
    for i, _ in enumerate(morph_names):  # patches spread over the front of the face
        anchor = np.array([np.sin(i * 2.4) * 0.6, np.cos(i * 1.7) * 0.6, 0.8], np.float32)
        weight = np.clip(1 - np.linalg.norm(unit - anchor / np.linalg.norm(anchor), axis=1) / 0.5, 0, 1)
        deltas.append((unit * weight[:, None] * 0.012).astype(np.float32))
    blobs = [positions, unit, indices, *deltas]
    blob, views, offset = b"", [], 0
    for arr in blobs:
        data = arr.tobytes()
        views.append(pygltflib.BufferView(buffer=0, byteOffset=offset, byteLength=len(data)))
        blob += data + b"\0" * (-len(data) % 4)
        offset = len(blob)

    def vec3(view: int, arr: np.ndarray) -> pygltflib.Accessor:
        return pygltflib.Accessor(
            bufferView=view,
            componentType=pygltflib.FLOAT,
            count=len(arr),
            type="VEC3",
            min=arr.min(0).tolist(),
            max=arr.max(0).tolist(),
        )

    accessors = [
        vec3(0, positions),
        vec3(1, unit),
        pygltflib.Accessor(bufferView=2, componentType=pygltflib.UNSIGNED_SHORT, count=len(indices), type="SCALAR"),
        *[vec3(3 + i, d) for i, d in enumerate(deltas)],
    ]
    primitive = pygltflib.Primitive(
        attributes=pygltflib.Attributes(POSITION=0, NORMAL=1),
        indices=2,
        material=0,
        targets=[{"POSITION": 3 + i} for i in range(len(deltas))],
    )
    gltf = pygltflib.GLTF2(
        scene=0,
        scenes=[pygltflib.Scene(nodes=[0])],
        nodes=[
            pygltflib.Node(mesh=0, name="head", children=[1] if jaw_node else []),
            *([pygltflib.Node(name="Jaw", translation=[0, 1.52, 0.03])] if jaw_node else []),
        ],
        meshes=[pygltflib.Mesh(primitives=[primitive], extras={"targetNames": morph_names} if morph_names else {})],
        materials=[
            pygltflib.Material(
                pbrMetallicRoughness=pygltflib.PbrMetallicRoughness(
                    baseColorFactor=[0.8, 0.6, 0.5, 1.0], metallicFactor=0.0, roughnessFactor=0.6
                )
            )
        ],
        accessors=accessors,
        bufferViews=views,
        buffers=[pygltflib.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(blob)
    gltf.save_binary(str(path))
    return path


def espeak_wav(path: Path, text: str) -> tuple[Path, float]:
    """Speak ``text`` into a WAV with espeak-ng; return the path and the duration in seconds."""
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, timeout=30)
    with wave.open(str(path)) as w:
        return path, w.getnframes() / w.getframerate()


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A short real spoken WAV (about 2 s)."""
    return espeak_wav(tmp_path_factory.mktemp("speech") / "hello.wav", SPEECH_TEXT)


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A longer real spoken WAV (over 6 s): for screenshots during speech and the frame-rate measurement."""
    return espeak_wav(tmp_path_factory.mktemp("speech") / "long.wav", LONG_TEXT)


def hand_track(duration_s: float, silent: bool = False, hold: str = "") -> dict:
    """A hand-made keyframe track: 'aa' and 'O' alternating every 0.25 s (or only 'sil', or one held viseme),
    rest at the end."""
    keyframes, t, k = [], 0.0, 0
    while t < duration_s - 0.3:
        viseme = hold or ("viseme_sil" if silent else ("viseme_aa" if k % 2 == 0 else "viseme_O"))
        keyframes.append({"t": round(t, 3), "w": {viseme: 1.0}})
        t, k = t + 0.25, k + 1
    keyframes.append({"t": round(duration_s - 0.1, 3), "w": {"viseme_sil": 1.0}})
    return {"mouth_cues": [{"start": 0.0, "end": duration_s, "value": "X"}], "keyframes": keyframes}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, speech_wav, long_wav):
    """The test app: Avatar (generated ARKit head) + command box + Send; playback_end is echoed into a box."""
    glb = write_head_glb(tmp_path_factory.mktemp("glb") / "arkit_head.glb", ARKIT_MORPHS)

    def send(command: str) -> dict:
        cmd = json.loads(command)
        wav, duration = long_wav if cmd.get("long") else speech_wav
        clips = [
            {
                "audio": str(wav),
                "offset_s": i * duration,
                "duration_s": duration,
                "track": hand_track(duration, silent=cmd.get("silent", False), hold=cmd.get("hold", "")),
                "emotion": {"label": cmd.get("emotion", "neutral"), "scores": {}, "intensity": 1.0},
            }
            for i in range(cmd.get("clips", 0))
        ]
        return avatar_frame(cmd["turn_id"], cmd["state"], clips)

    def playback_ended(evt: gr.EventData) -> str:
        return json.dumps({k: getattr(evt, k) for k in ("turn_id", "clips_played", "duration_s", "clock")})

    with gr.Blocks() as demo:
        avatar = Avatar(glb_path=glb, height=360, elem_id="avatar")
        # These tests time the player against the audio clock: let SwiftShader render at the rate a GPU would get
        # (30 fps cap), not at the low cap the app uses on CPU rasterisers, or samples fall between sparse frames.
        avatar.props["motion"]["idle"]["software_max_fps"] = avatar.props["motion"]["idle"]["max_fps"]
        command = gr.Textbox(elem_id="command")
        send_btn = gr.Button("Send", elem_id="send")
        ended = gr.Textbox(elem_id="ended")
        send_btn.click(send, command, avatar)
        avatar.playback_end(playback_ended, None, ended)
    with serve_blocks(demo) as url:
        yield url


@pytest.fixture(scope="module")
def page(chromium, app_url: str):  # noqa: F811 - chromium is the imported fixture
    """One page on the test app, with the avatar loaded."""
    page = chromium.new_page(viewport={"width": 900, "height": 800})
    page.console_lines = console_collector(page)
    page.goto(app_url)
    page.wait_for_function("window.avatarState && window.avatarState.ready", timeout=30_000)
    yield page
    page.close()


def send(page, **command) -> None:
    """Type a command into the app and click Send (the click also unlocks audio)."""
    page.fill("#command textarea", json.dumps(command))
    page.click("#send")


def state(page) -> dict:
    return page.evaluate("JSON.parse(JSON.stringify(window.avatarState))")


# ------------------------------------------------------------------------------------------------- tests
def _arrays_without_items(schema: object, path: str = "$") -> list[str]:
    if isinstance(schema, dict):
        bad = [path] if schema.get("type") == "array" and "items" not in schema else []
        return bad + [p for k, v in schema.items() for p in _arrays_without_items(v, f"{path}.{k}")]
    if isinstance(schema, list):
        return [p for i, v in enumerate(schema) for p in _arrays_without_items(v, f"{path}[{i}]")]
    return []


def test_payload_contract(speech_wav, app_url: str) -> None:
    wav, duration = speech_wav
    avatar = Avatar(glb_path=DEFAULT_GLB, render=False)
    assert _arrays_without_items(avatar.api_info()) == []
    track = VisemeTrack(
        duration, (MouthCue(0.0, duration, "X"),), (VisemeKey(0.0, {"aa": 0.8}), VisemeKey(0.5, {"sil": 1.0}))
    )
    emotion = Emotion("joy", {label: 0.1 for label in EMOTION_LABELS} | {"joy": 0.7}, "test")
    frame = avatar.postprocess(avatar_frame("t1", "speaking", [avatar_clip(wav, track, emotion=emotion)]))
    clip = frame["clips"][0]
    assert clip["audio"]["path"] == str(wav) and clip["audio"]["meta"] == {"_type": "gradio.FileData"}
    assert clip["track"]["keyframes"][0] == {"t": 0.0, "w": {"viseme_aa": 0.8}}
    assert clip["emotion"]["label"] == "joy" and clip["emotion"]["intensity"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="state"):
        avatar.postprocess(avatar_frame("t2", "dancing"))
    with pytest.raises(ValueError, match="does not exist"):
        avatar.postprocess(avatar_frame("t3", "speaking", [avatar_clip(wav.with_name("missing.wav"), track)]))
    for route in ("", "gradio_api/info"):  # an incomplete schema makes these return 500
        with urllib.request.urlopen(app_url + route, timeout=30) as response:
            assert response.status == 200


def test_renders_with_report(page, artifacts: Path) -> None:
    before = state(page)["framesRendered"]
    page.wait_for_function(f"window.avatarState.framesRendered > {before + 20}", timeout=WAIT_MS)
    s = state(page)
    assert s["threeSource"] == "bundle"
    assert s["morphReport"]["mode"] == "arkit"
    assert s["errors"] == [], page.console_lines
    assert page.locator("#avatar canvas").count() == 1
    page.locator("#avatar").screenshot(path=str(artifacts / "avatar_test_head.png"))


def test_blink_within_7s_idle(page) -> None:
    blinks = state(page)["blinks"]
    page.wait_for_function("window.avatarState.morphs.eyeBlinkLeft > 0.9", timeout=7_000, polling=10)
    assert state(page)["blinks"] > blinks


def test_playback_follows_keyframes_and_returns_to_rest(page, speech_wav) -> None:
    _, duration = speech_wav
    played = state(page)["clipsPlayed"]
    send(page, turn_id="speak-1", state="speaking", clips=1, emotion="neutral")
    page.wait_for_function("window.avatarState.playing && window.avatarState.playbackTime > 0.1", timeout=WAIT_MS)
    s = state(page)
    assert s["clock"] == "audio" and s["state"] == "speaking" and s["turnId"] == "speak-1"
    # sample the face against the keyframes ('aa' then 'O' every 0.25 s): jawOpen (aa 0.6, O 0.4) and mouthFunnel
    # (O 0.6 only) must swing with the track while the audio clock advances.
    samples = []
    for _ in range(40):
        s = state(page)
        samples.append((s["playbackTime"], s["morphs"]["jawOpen"], s["morphs"]["mouthFunnel"], s["viseme"]))
        page.wait_for_timeout(40)
    times = [t for t, *_ in samples]
    assert times == sorted(times) and times[-1] - times[0] > 1.0, times
    jaw = [j for _, j, _, _ in samples]
    funnel = [f for _, _, f, _ in samples]
    assert max(jaw) > 0.4 and max(funnel) > 0.35 and min(funnel) < 0.2, samples
    assert {"aa", "O"} <= {v for *_, v in samples}, samples
    page.wait_for_function("!window.avatarState.playing", timeout=int(duration * 1000) + WAIT_MS)
    page.wait_for_function("document.querySelector('#ended textarea').value.includes('speak-1')", timeout=WAIT_MS)
    ended = json.loads(page.input_value("#ended textarea"))
    assert ended["clips_played"] == 1 and abs(ended["duration_s"] - duration) < 0.2, ended
    assert state(page)["clipsPlayed"] == played + 1
    page.wait_for_timeout(600)
    rest = state(page)
    assert rest["morphs"]["jawOpen"] < 0.02 and rest["morphs"]["mouthFunnel"] < 0.02, rest["morphs"]
    assert rest["state"] == "idle"


def test_appended_clips_play_back_to_back(page, speech_wav) -> None:
    _, duration = speech_wav
    send(page, turn_id="append", state="speaking", clips=1, silent=True)
    page.wait_for_function("window.avatarState.playing && window.avatarState.playbackTime > 0.3", timeout=WAIT_MS)
    before = state(page)["playbackTime"]
    # the same turn, now with two clips: the first keeps playing (not restarted), the second follows it
    send(page, turn_id="append", state="speaking", clips=2, silent=True)
    page.wait_for_timeout(300)
    assert state(page)["playbackTime"] > before
    page.wait_for_function(
        "document.querySelector('#ended textarea').value.includes('append')", timeout=int(2 * duration * 1000) + WAIT_MS
    )
    ended = json.loads(page.input_value("#ended textarea"))
    assert ended["clips_played"] == 2 and abs(ended["duration_s"] - 2 * duration) < 0.05, ended


@pytest.mark.parametrize("emotion", EMOTION_LABELS)
def test_emotion_raises_its_morphs(page, emotion: str) -> None:
    send(page, turn_id=f"emo-{emotion}", state="speaking", clips=1, emotion=emotion, silent=True)
    page.wait_for_function(f"window.avatarState.emotion === '{emotion}' && window.avatarState.playing", timeout=WAIT_MS)
    page.wait_for_timeout(700)
    morphs = state(page)["morphs"]
    pose = EXPRESSIONS[emotion]
    blink_names = {"eyeBlinkLeft", "eyeBlinkRight"}  # may also be mid-blink: skip
    for name, weight in pose.items():
        if name not in blink_names:
            assert morphs[name] > 0.5 * weight, (emotion, name, weight, morphs[name])
    others = {
        m: w for m, w in morphs.items() if m not in pose and m.startswith(("mouthSmile", "mouthFrown", "noseSneer"))
    }
    assert all(w < 0.05 for w in others.values()), (emotion, others)


def test_states_switch(page) -> None:
    send(page, turn_id="listen", state="listening")
    page.wait_for_function("window.avatarState.state === 'listening'", timeout=WAIT_MS)
    page.wait_for_function("window.avatarState.morphs.browInnerUp > 0.2", timeout=WAIT_MS)
    send(page, turn_id="think", state="thinking")
    page.wait_for_function("window.avatarState.state === 'thinking'", timeout=WAIT_MS)
    page.wait_for_function(
        "window.avatarState.morphs.eyeLookUpLeft > 0.3 && window.avatarState.morphs.browDownLeft > 0.2", timeout=WAIT_MS
    )
    send(page, turn_id="rest", state="idle")
    page.wait_for_function("window.avatarState.state === 'idle'", timeout=WAIT_MS)
    assert page.locator("#avatar canvas").count() == 1  # value updates never re-render the canvas away


def test_upload_no_morphs_and_corrupt(page, tmp_path: Path) -> None:
    bare = write_head_glb(tmp_path / "bare.glb", [])
    page.set_input_files("#avatar .avatar-file", str(bare))
    page.wait_for_function("window.avatarState.avatarSource === 'bare.glb'", timeout=WAIT_MS)
    report = state(page)["morphReport"]
    assert report["mode"] == "none" and report["morphCount"] == 0
    assert any("will not move" in w for w in report["warnings"]), report
    frames = state(page)["framesRendered"]
    page.wait_for_function(f"window.avatarState.framesRendered > {frames + 10}", timeout=WAIT_MS)

    corrupt = tmp_path / "corrupt.glb"
    corrupt.write_bytes(b"glTF" + b"\x02\x00\x00\x00" + b"\xff" * 64)
    errors = len(state(page)["errors"])
    page.set_input_files("#avatar .avatar-file", str(corrupt))
    page.wait_for_function(f"window.avatarState.errors.length > {errors}", timeout=WAIT_MS)
    s = state(page)
    assert s["avatarSource"] == "bare.glb" and "Keeping the current avatar" in s["errors"][-1]
    assert "error" in page.get_attribute("#avatar .avatar-status", "class")

    errors += 1
    page.evaluate("""() => {  // a 31 MB file over the 30 MB cap, made in the page
        const input = document.querySelector('#avatar .avatar-file');
        const files = new DataTransfer();
        files.items.add(new File([new Uint8Array(31 * 1024 * 1024)], 'huge.glb'));
        input.files = files.files;
        input.dispatchEvent(new Event('change'));
    }""")
    page.wait_for_function(f"window.avatarState.errors.length > {errors}", timeout=WAIT_MS)
    s = state(page)
    assert "limit is 30.0 MB" in s["errors"][-1] and s["avatarSource"] == "bare.glb", s["errors"]

    jawed = write_head_glb(tmp_path / "jawed.glb", [], jaw_node=True)
    page.set_input_files("#avatar .avatar-file", str(jawed))
    page.wait_for_function("window.avatarState.avatarSource === 'jawed.glb'", timeout=WAIT_MS)
    report = state(page)["morphReport"]
    assert report["mode"] == "jaw" and report["jawBone"] == "Jaw", report

    page.click("#avatar .avatar-reset")
    page.wait_for_function("window.avatarState.avatarSource === 'default'", timeout=WAIT_MS)
    assert state(page)["morphReport"]["mode"] == "arkit"


@pytest.mark.skipif(not DEFAULT_GLB.is_file(), reason="the default avatar has not been built")
def test_default_avatar_oculus(page, artifacts: Path) -> None:
    page.set_input_files("#avatar .avatar-file", str(DEFAULT_GLB))
    page.wait_for_function(f"window.avatarState.avatarSource === '{DEFAULT_GLB.name}'", timeout=WAIT_MS)
    report = state(page)["morphReport"]
    assert report["mode"] == "oculus" and len(report["visemesFound"]) == 15 and report["warnings"] == [], report
    page.wait_for_function(
        "window.avatarState.morphs.jawOpen < 0.01 && window.avatarState.morphs.eyeBlinkLeft < 0.05", timeout=WAIT_MS
    )
    page.locator("#avatar").screenshot(path=str(artifacts / "avatar_default_idle.png"))

    send(page, turn_id="real-joy", state="speaking", clips=1, emotion="joy", hold="viseme_aa", long=True)
    page.wait_for_function(
        "window.avatarState.morphs.viseme_aa > 0.6 && window.avatarState.morphs.mouthSmileLeft > 0.1",
        timeout=WAIT_MS,
        polling=10,
    )
    start = state(page)
    # Frame rate over 5 s of playback (or what is left of the clip on a slow machine), before any screenshot stalls it.
    page.wait_for_function(
        f"!window.avatarState.playing || window.avatarState.playbackTime >= {start['playbackTime'] + 5}",
        timeout=WAIT_MS,
    )
    end = state(page)
    assert end["playbackTime"] - start["playbackTime"] > 1.0, (start, end)
    fps = (end["framesRendered"] - start["framesRendered"]) / (end["playbackTime"] - start["playbackTime"])
    (artifacts / "avatar_fps.json").write_text(
        json.dumps(
            {"fps_during_playback": round(fps, 1), "seconds": round(end["playbackTime"] - start["playbackTime"], 2)}
        )
    )
    # The speaking screenshot, on a fresh clip held on "aa" with a smile.
    send(page, turn_id="real-joy-shot", state="speaking", clips=1, emotion="joy", hold="viseme_aa", long=True)
    page.wait_for_function("window.avatarState.morphs.viseme_aa > 0.6", timeout=WAIT_MS, polling=10)
    page.locator("#avatar").screenshot(path=str(artifacts / "avatar_default_speaking_joy.png"))
    # Frames kept coming during playback; the rate itself depends on the machine's load and is only recorded.
    assert end["framesRendered"] > start["framesRendered"], (start, end)

    send(page, turn_id="real-think", state="thinking")
    page.wait_for_function("window.avatarState.morphs.eyeLookUpLeft > 0.4", timeout=WAIT_MS)
    page.wait_for_timeout(400)
    page.locator("#avatar").screenshot(path=str(artifacts / "avatar_default_thinking.png"))
