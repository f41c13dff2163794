"""Values that cross pipeline stages: immutable dataclasses with units in their field names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

EMOTION_LABELS: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
"""The 7 emotion classes every emotion backend scores (j-hartmann's label set)."""

OCULUS_VISEMES: tuple[str, ...] = (
    "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U",
)
"""The 15 Oculus viseme IDs; avatars name their morphs ``viseme_<id>``."""

RHUBARB_SHAPES: tuple[str, ...] = ("A", "B", "C", "D", "E", "F", "G", "H", "X")
"""Rhubarb Lip Sync mouth shapes (A-F basic, G-H extended, X rest)."""


@dataclass(frozen=True, slots=True)
class Transcript:
    """What the user said, as recognised by an ASR backend."""

    text: str
    audio_duration_s: float
    backend: str


@dataclass(frozen=True, slots=True)
class Emotion:
    """An emotion judgement: the top label and the score of every class in ``EMOTION_LABELS``."""

    label: str
    scores: Mapping[str, float]
    backend: str

    @property
    def confidence(self) -> float:
        """Score of the top label."""
        return float(self.scores.get(self.label, 0.0))


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation as sent to an LLM; ``role`` is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete LLM answer with its token usage."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    backend: str
    model: str
    finish_reason: str = "stop"  # "stop", "length" (hit max_tokens) or "error" (the backend failed mid-answer)
    route: str = ""  # which model tier answered and why, e.g. "small: short factual question (9 words)"
    notice: str = ""  # what the user should know, e.g. "Databricks timed out; answered with the local model"


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved piece of the knowledge base: its text, where it comes from (file and heading) and its score."""

    text: str
    source: str
    title: str
    score: float

    def citation(self) -> str:
        """``file › heading``, e.g. ``costs.md › Why pay per token``."""
        return f"{self.source} › {self.title}" if self.title else self.source


@dataclass(frozen=True, slots=True)
class PhonemeTiming:
    """One phoneme and where it sits in a piece of speech.

    ``alphabet`` is "ipa" (espeak/Piper phonemes) or "arpabet" (CMUdict).
    """

    phoneme: str
    start_s: float
    end_s: float
    alphabet: str = "ipa"


@dataclass(frozen=True, slots=True)
class WordTiming:
    """One word and where it sits in a piece of speech."""

    word: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True, eq=False)
class Speech:
    """Synthesised audio (float32 mono in [-1, 1]) with whatever timings the TTS knows."""

    text: str
    audio: np.ndarray
    sample_rate: int
    phonemes: tuple[PhonemeTiming, ...] = ()
    words: tuple[WordTiming, ...] = ()
    backend: str = ""

    @property
    def duration_s(self) -> float:
        """Length of the audio in seconds."""
        return len(self.audio) / float(self.sample_rate)


@dataclass(frozen=True, slots=True)
class MouthCue:
    """One Rhubarb mouth cue: a shape held from ``start_s`` to ``end_s``."""

    start_s: float
    end_s: float
    shape: str


@dataclass(frozen=True, slots=True)
class VisemeKey:
    """A keyframe of Oculus viseme weights (only non-zero weights are listed); the player interpolates."""

    time_s: float
    weights: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class VisemeTrack:
    """Lip-sync for one piece of audio: Rhubarb mouth cues plus Oculus viseme keyframes."""

    duration_s: float
    mouth_cues: tuple[MouthCue, ...]
    keyframes: tuple[VisemeKey, ...]
    source: str = ""

    def shifted(self, offset_s: float) -> VisemeTrack:
        """The same track with every time moved later by ``offset_s``."""
        return VisemeTrack(
            self.duration_s,
            tuple(MouthCue(c.start_s + offset_s, c.end_s + offset_s, c.shape) for c in self.mouth_cues),
            tuple(VisemeKey(k.time_s + offset_s, k.weights) for k in self.keyframes),
            self.source,
        )

    def to_rhubarb(self, sound_file: str = "") -> dict:
        """Return the track in Rhubarb Lip Sync's JSON layout."""
        return {
            "metadata": {"soundFile": sound_file, "duration": round(self.duration_s, 3)},
            "mouthCues": [
                {"start": round(c.start_s, 3), "end": round(c.end_s, 3), "value": c.shape} for c in self.mouth_cues
            ],
        }


@dataclass(frozen=True, slots=True)
class StageMetrics:
    """How long one stage took in one turn and what it consumed (``units``: tokens, characters, seconds...)."""

    stage: str
    backend: str
    duration_s: float
    first_output_s: float | None = None
    units: Mapping[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Turn events: what the pipeline yields to the UI while a turn runs.
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnOptions:
    """Per-turn choices that override the configuration (a user's character, an experiment's variant).

    Empty fields keep the configured value. ``tts`` and ``llm`` are backend descriptors as in the configuration
    ("edge/en-US-JennyNeural", "databricks/<endpoint>"); ``llm`` answers for both router tiers. ``experiment`` and
    ``variant`` name the A/B variant that chose these options (``core.experiments``); the turn log records them.
    """

    tts: str = ""
    llm: str = ""
    system_prompt: str = ""
    streaming: bool | None = None
    top_k: int | None = None
    experiment: str = ""
    variant: str = ""


@dataclass(frozen=True, slots=True)
class UserTurn:
    """The user's side of a turn: their text (typed, or the transcript of their speech) and its emotion."""

    text: str
    emotion: Emotion
    transcript: Transcript | None = None


@dataclass(frozen=True, slots=True)
class ReplyDelta:
    """New reply text from the LLM, as it streams."""

    text: str


@dataclass(frozen=True, slots=True)
class SpokenClip:
    """One spoken piece of the reply, ready to play: audio file, lip-sync (times relative to the clip) and emotion."""

    turn_id: str
    index: int
    text: str
    wav_path: str
    offset_s: float
    duration_s: float
    track: VisemeTrack
    emotion: Emotion


@dataclass(frozen=True, slots=True)
class TurnComplete:
    """The end of a turn: the whole reply, its emotion, the whole audio and track, and what each stage took."""

    reply: Reply
    emotion: Emotion
    wav_path: str
    track: VisemeTrack
    timings_s: Mapping[str, float]
    metrics: tuple[StageMetrics, ...] = ()
    passages: tuple[Passage, ...] = ()
    cache: str = "miss"  # "miss", or how a cached reply was found: "exact" or "semantic"
    costs_usd: Mapping[str, float] = field(default_factory=dict)  # the turn's cost under each price preset
    turn_key: str = ""  # the turn's key in the turn log: what feedback on this answer refers to


TurnEvent = UserTurn | ReplyDelta | SpokenClip | TurnComplete
