"""Avatar component: a three.js talking head rendered in the browser, as a Gradio 6 ``gr.HTML`` subclass.

Python sends one *frame* (a JSON dict, see ``avatar_frame``) as the component's value; the browser side
(``static/avatar.js``) plays its audio clips, drives the face's morph targets from the clips' viseme keyframes on
the audio clock, blends the emotion into the face, and triggers ``playback_end`` when a turn's clips have played.

Payload (``value``)::

    {"turn_id": str, "state": "idle" | "listening" | "thinking" | "speaking",
     "clips": [{"audio": FileData, "offset_s": float, "duration_s": float,
                "track": {"mouth_cues": [{"start": s, "end": s, "value": "A".."X"}],
                          "keyframes": [{"t": s, "w": {"viseme_aa": 0.8, ...}}]},
                "emotion": {"label": str, "scores": {label: float}, "intensity": 0..1} | None}],
     "avatar_url": str | FileData | None, "avatar_name": str | None}

Keyframe times are relative to the clip start. Clips of one ``turn_id`` play back to back, a clip starting at
``offset_s`` (seconds from the turn's start) or right after the previous clip, whichever is later; an update with
the same ``turn_id`` may append clips (already-known clips are recognised by audio file and offset and not
replayed); a new ``turn_id`` stops the current playback. A frame with ``avatar_url`` switches the avatar (a
character's GLB, see ``character_frame``), labelled ``avatar_name``; "Default avatar" then returns to it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from components.static_files import STATIC_DIR, html_component_files
from core.characters import CharacterBook
from core.config import PROJECT_ROOT
from core.datafiles import read_json
from core.errors import ConfigError
from core.types import EMOTION_LABELS, OCULUS_VISEMES, Emotion, VisemeTrack

logger = logging.getLogger(__name__)

COMPONENT_DIR = Path(__file__).resolve().parent
BUNDLE_PATH = STATIC_DIR / "vendor" / "three-bundle.js"
MOTION_PATH = STATIC_DIR / "avatar_motion.json"
PACKAGE_JSON = COMPONENT_DIR / "package.json"
ASSETS_DIR = PROJECT_ROOT / "avatar_assets"
DEFAULT_VISEME_MAP = ASSETS_DIR / "oculus_to_arkit.json"
DEFAULT_EXPRESSIONS = ASSETS_DIR / "expressions.json"

AVATAR_STATES: tuple[str, ...] = ("idle", "listening", "waiting", "thinking", "speaking")
VISEME_MORPHS: tuple[str, ...] = tuple(f"viseme_{v}" for v in OCULUS_VISEMES)
CDN_ROOT = "https://esm.sh/three@{version}"
"""CDN fallback when the esbuild bundle is missing; esm.sh rewrites the addons' bare ``three`` imports."""
DEFAULT_MAX_UPLOAD_MB = 30.0
DEFAULT_HEIGHT_PX = 420


def _check_pose(pose: Any, where: str) -> dict[str, float]:
    """A pose is ``{morph name: weight in [0, 1]}``."""
    if not isinstance(pose, dict):
        raise ConfigError(f"{where}: expected an object of morph weights, got {type(pose).__name__}")
    for name, weight in pose.items():
        if not isinstance(weight, int | float) or isinstance(weight, bool) or not 0.0 <= weight <= 1.0:
            raise ConfigError(f"{where}: weight of {name!r} must be a number in [0, 1], got {weight!r}")
    return {name: float(weight) for name, weight in pose.items()}


def load_pose_map(path: Path, allowed_keys: Sequence[str]) -> dict[str, dict[str, float]]:
    """Load a ``{key: {morph: weight}}`` table (viseme→ARKit or emotion→ARKit) and validate its shape.

    Keys starting with ``_`` (comments) are skipped.
    """
    table = read_json(path)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level")
    table = {key: pose for key, pose in table.items() if not key.startswith("_")}  # "_comment" etc.
    unknown = sorted(set(table) - set(allowed_keys))
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; allowed: {list(allowed_keys)}")
    return {key: _check_pose(pose, f"{path}[{key!r}]") for key, pose in table.items()}


def load_motion(path: Path = MOTION_PATH) -> dict[str, Any]:
    """Load the state poses and idle-motion parameters (``static/avatar_motion.json``) and validate them."""
    motion = read_json(path)
    states = motion.get("states") if isinstance(motion, dict) else None
    if not isinstance(states, dict) or set(states) != set(AVATAR_STATES):
        raise ConfigError(f"{path}: 'states' must have exactly the keys {list(AVATAR_STATES)}")
    for name, state in states.items():
        _check_pose(state.get("pose"), f"{path} states.{name}.pose")
        gaze = state.get("gaze")
        if not (isinstance(gaze, list) and len(gaze) == 2 and all(isinstance(g, int | float) for g in gaze)):
            raise ConfigError(f"{path} states.{name}.gaze must be [x, y]")
        for key in ("nod_amplitude_rad", "nod_period_s", "tilt_rad"):
            if not isinstance(state.get(key), int | float):
                raise ConfigError(f"{path} states.{name}.{key} must be a number")
        for key in ("saccade_scale", "look_at_camera"):  # eye contact: fewer saccades, eyes on the camera
            if not isinstance(state.get(key), int | float) or not 0.0 <= state[key] <= 1.0:
                raise ConfigError(f"{path} states.{name}.{key} must be a number in [0, 1]")
    idle = motion.get("idle")
    if not isinstance(idle, dict) or not idle:
        raise ConfigError(f"{path}: 'idle' must be an object of motion parameters")
    for key, val in idle.items():
        numbers = val if isinstance(val, list) and len(val) == 2 else [val]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in numbers):
            raise ConfigError(f"{path} idle.{key} must be a non-negative number or a [low, high] range")
    channels = motion.get("channels")
    if not isinstance(channels, dict) or not all(
        isinstance(names, str) or (isinstance(names, list) and all(isinstance(n, str) for n in names))
        for names in channels.values()
    ):
        raise ConfigError(f"{path}: 'channels' must map each channel to a morph name or a list of names")
    return motion


def three_version(package_json: Path = PACKAGE_JSON) -> str:
    """The exact three.js version pinned in ``components/package.json``."""
    return str(read_json(package_json)["dependencies"]["three"])


def static_url(path: Path) -> str:
    """URL (relative to the page) under which Gradio serves a file registered with ``gr.set_static_paths``."""
    return f"gradio_api/file={path.resolve()}"


def _file_payload(audio: Any, where: str) -> dict[str, Any]:
    if isinstance(audio, str | Path):
        if not Path(audio).is_file():
            raise ValueError(f"{where}: audio file {audio} does not exist")
        return gr.FileData(path=str(audio)).model_dump()
    if isinstance(audio, Mapping) and "path" in audio:
        return gr.FileData(**audio).model_dump()
    raise ValueError(f"{where}: audio must be a file path or a FileData dict, got {type(audio).__name__}")


def track_payload(track: VisemeTrack) -> dict[str, Any]:
    """A viseme track as the player reads it: Rhubarb mouth cues and keyframes of ``viseme_*`` morph weights."""
    return {
        "mouth_cues": [{"start": c.start_s, "end": c.end_s, "value": c.shape} for c in track.mouth_cues],
        "keyframes": [
            {"t": k.time_s, "w": {f"viseme_{v}": float(w) for v, w in k.weights.items()}} for k in track.keyframes
        ],
    }


def emotion_payload(emotion: Emotion, intensity: float | None = None) -> dict[str, Any]:
    """An emotion as the player reads it; ``intensity`` defaults to the emotion's confidence."""
    return {
        "label": emotion.label,
        "scores": {label: float(s) for label, s in emotion.scores.items()},
        "intensity": float(emotion.confidence if intensity is None else intensity),
    }


def avatar_clip(
    audio_path: str | Path,
    track: VisemeTrack,
    *,
    offset_s: float = 0.0,
    emotion: Emotion | None = None,
    intensity: float | None = None,
) -> dict[str, Any]:
    """Build one clip of the payload from a WAV file, its viseme track and (optionally) an emotion."""
    return {
        "audio": str(audio_path),
        "offset_s": float(offset_s),
        "duration_s": float(track.duration_s),
        "track": track_payload(track),
        "emotion": None if emotion is None else emotion_payload(emotion, intensity),
    }


def avatar_frame(
    turn_id: str,
    state: str,
    clips: Sequence[Mapping[str, Any]] = (),
    *,
    avatar_url: str | None = None,
    avatar_name: str | None = None,
) -> dict[str, Any]:
    """Build the component's value: a turn id, the avatar's state and the clips to play."""
    return {"turn_id": turn_id, "state": state, "clips": [dict(c) for c in clips], "avatar_url": avatar_url,
            "avatar_name": avatar_name}


def character_frame(name: str, glb: Path) -> dict[str, Any]:
    """A frame that switches the avatar to a character's GLB (served statically: pass it in ``Avatar(glbs=...)``)."""
    return avatar_frame(f"character-{name}", "idle", avatar_url=static_url(glb), avatar_name=name)


def default_glb() -> Path:
    """The default character's avatar (``data/characters.json``)."""
    return CharacterBook.load().default.glb


_NUMBER = {"type": "number"}
_WEIGHTS = {"type": "object", "additionalProperties": _NUMBER}
_FILE_DATA_SCHEMA = gr.FileData.model_json_schema()
_API_SCHEMA: dict[str, Any] = {
    "$defs": {**_FILE_DATA_SCHEMA.pop("$defs"), "FileData": _FILE_DATA_SCHEMA},
    "title": "AvatarFrame",
    "type": "object",
    "properties": {
        "turn_id": {"type": "string"},
        "state": {"type": "string", "enum": list(AVATAR_STATES)},
        "clips": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "audio": {"$ref": "#/$defs/FileData"},
                    "offset_s": _NUMBER,
                    "duration_s": _NUMBER,
                    "track": {
                        "type": "object",
                        "properties": {
                            "mouth_cues": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {"start": _NUMBER, "end": _NUMBER, "value": {"type": "string"}},
                                },
                            },
                            "keyframes": {
                                "type": "array",
                                "items": {"type": "object", "properties": {"t": _NUMBER, "w": _WEIGHTS}},
                            },
                        },
                    },
                    "emotion": {
                        "anyOf": [
                            {
                                "type": "object",
                                "properties": {"label": {"type": "string"}, "scores": _WEIGHTS, "intensity": _NUMBER},
                            },
                            {"type": "null"},
                        ]
                    },
                },
                "required": ["audio", "track"],
            },
        },
        "avatar_url": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/FileData"}, {"type": "null"}]},
        "avatar_name": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["turn_id", "state"],
}


class Avatar(gr.HTML):
    """A 3D talking head.

    Responsibilities: serve the three.js bundle, the default GLB and the validated pose tables to the browser;
    turn the clips' audio paths into files Gradio serves (``postprocess``); describe the payload (``api_info``).
    Events: ``playback_end`` (data: turn_id, clips_played, duration_s, clock) when a turn's clips have played,
    ``avatar_loaded`` (data: the morph report) after each GLB load.
    """

    def __init__(
        self,
        value: Mapping[str, Any] | None = None,
        *,
        glb_path: str | Path | None = None,
        glb_url: str | None = None,
        glbs: Sequence[str | Path] = (),
        glb_name: str = "default",
        height: int = DEFAULT_HEIGHT_PX,
        viseme_map_path: str | Path = DEFAULT_VISEME_MAP,
        expressions_path: str | Path = DEFAULT_EXPRESSIONS,
        allow_upload: bool = True,
        max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
        **kwargs: Any,
    ) -> None:
        """Create the avatar.

        Args:
            value: an initial frame (see the module docstring), usually None.
            glb_path: the default avatar, a local GLB served statically (ignored when ``glb_url`` is given); None:
                the default character's.
            glb_url: the default avatar as a URL instead of a local file.
            glbs: more local GLBs to serve, which ``character_frame`` frames switch to.
            glb_name: what the page calls the default avatar (its status line, ``avatarState.avatarSource``).
            height: canvas height in pixels.
            viseme_map_path: JSON ``{"viseme_aa": {"jawOpen": 0.7, ...}}`` used for avatars without Oculus morphs.
            expressions_path: JSON ``{"joy": {"mouthSmileLeft": 0.7, ...}}``, the ARKit pose of each emotion.
            allow_upload: show the "load your own GLB" and "default avatar" buttons.
            max_upload_mb: size cap of a user GLB.
            **kwargs: passed to ``gr.HTML`` (elem_id, visible, ...).
        """
        static_paths = [STATIC_DIR, *(Path(p).resolve() for p in glbs)]
        if glb_url is None:
            glb_path = Path(glb_path or default_glb()).resolve()
            if not glb_path.is_file():
                logger.warning("avatar GLB %s does not exist (yet); the browser will report it", glb_path)
            static_paths.append(glb_path)
            glb_url = static_url(glb_path)
        gr.set_static_paths(static_paths)
        version = three_version()
        if not BUNDLE_PATH.is_file():
            logger.warning(
                "%s is missing (run components/build_bundle.sh); the browser loads three@%s from %s",
                BUNDLE_PATH,
                version,
                CDN_ROOT.format(version=version),
            )
        cdn = CDN_ROOT.format(version=version)
        super().__init__(
            value=value,
            **html_component_files("avatar"),
            apply_default_css=False,
            bundle_url=static_url(BUNDLE_PATH),
            cdn_urls={
                "three": cdn,
                "GLTFLoader": f"{cdn}/examples/jsm/loaders/GLTFLoader.js",
                "RoomEnvironment": f"{cdn}/examples/jsm/environments/RoomEnvironment.js",
            },
            glb_url=glb_url,
            glb_name=glb_name,
            height=int(height),
            viseme_names=list(VISEME_MORPHS),
            viseme_map=load_pose_map(Path(viseme_map_path), VISEME_MORPHS),
            expressions=load_pose_map(Path(expressions_path), EMOTION_LABELS),
            motion=load_motion(),
            allow_upload=bool(allow_upload),
            max_upload_bytes=int(max_upload_mb * 1024 * 1024),
            **kwargs,
        )

    def preprocess(self, payload: dict[str, Any] | None) -> dict[str, Any] | None:
        """Pass the frame through unchanged (the avatar is an output; this serves API callers)."""
        return payload

    def postprocess(self, value: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Validate a frame and turn its audio (and avatar) file paths into FileData dicts Gradio serves."""
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValueError(f"Avatar value must be a dict frame, got {type(value).__name__}")
        frame = dict(value)
        if not isinstance(frame.get("turn_id"), str):
            raise ValueError("Avatar frame needs a string 'turn_id'")
        if frame.get("state") not in AVATAR_STATES:
            raise ValueError(f"Avatar frame state must be one of {AVATAR_STATES}, got {frame.get('state')!r}")
        clips = []
        for i, clip in enumerate(frame.get("clips") or ()):
            where = f"clip {i} of turn {frame['turn_id']}"
            if "track" not in clip:
                raise ValueError(f"{where}: missing 'track'")
            clips.append({**clip, "audio": _file_payload(clip.get("audio"), where)})
        frame["clips"] = clips
        avatar = frame.get("avatar_url")
        if (
            isinstance(avatar, Path)
            or (isinstance(avatar, str) and Path(avatar).is_file())
            or isinstance(avatar, Mapping)
        ):
            frame["avatar_url"] = _file_payload(avatar, "avatar_url")
        return frame

    def api_info(self) -> dict[str, Any]:
        """JSON schema of the frame (complete: every array has ``items``)."""
        return _API_SCHEMA

    def example_payload(self) -> dict[str, Any]:
        """A frame without clips."""
        return avatar_frame("example", "idle")

    def example_value(self) -> dict[str, Any]:
        """A frame without clips."""
        return avatar_frame("example", "idle")
