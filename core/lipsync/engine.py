"""Lip-sync timing sources behind one entry point: TTS phoneme timings, Rhubarb, transcript + audio, audio alone.

Each source is a ``LipsyncBackend`` that turns a ``Speech`` into viseme segments (``_segments``); the shared
``track()`` adds timing, error wrapping and the cue/keyframe building. ``LipsyncEngine`` tries the sources in
``AUTO_ORDER`` and uses the first that accepts the speech: exact TTS timings when the TTS gave phonemes, Rhubarb
when its binary is installed, else the transcript (or whisper's words) forced onto the audio, else the audio alone.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from core.backend import StageBackend, backend_errors, pick_backend
from core.config import AppConfig, load_config
from core.errors import BackendError, InputError, ModelNotFoundError
from core.lipsync.acoustic import segments_from_audio
from core.lipsync.align import align_words, word_windows, words_of
from core.lipsync.audio import analyse
from core.lipsync.phonemes import VisemeSegment, segments_from_phonemes
from core.lipsync.tables import shape_table
from core.lipsync.track import build_track
from core.lipsync.whisper import WhisperWords
from core.types import RHUBARB_SHAPES, Speech, VisemeTrack

log = logging.getLogger(__name__)

STAGE = "lipsync"
RHUBARB_TIMEOUT_S = 120.0


class LipsyncBackend(StageBackend, ABC):
    """A timing source: says whether it can handle a Speech and turns it into viseme segments."""

    stage: ClassVar[str] = "Lip-sync"

    def accepts(self, speech: Speech) -> bool:
        """Whether this source has what it needs in ``speech`` (override to require phonemes or text)."""
        return True

    def select(self, speech: Speech) -> LipsyncBackend:
        """The source that will handle ``speech``: this one, or for the engine the first that accepts it."""
        return self

    def track(self, speech: Speech, offset_s: float = 0.0) -> VisemeTrack:
        """Lip-sync for ``speech`` with every time shifted by ``offset_s``.

        Raises:
            InputError: the speech holds no audio and no phoneme timings.
            BackendError: the source failed.
        """
        if speech.duration_s <= 0 and not speech.phonemes:
            raise InputError("Lip-sync needs audio or phoneme timings; the speech is empty.")
        source = self.select(speech)
        started = time.perf_counter()
        with backend_errors(STAGE, source.name):
            segments = source._segments(speech)
        track = build_track(segments, speech.duration_s, offset_s=offset_s, source=source.name)
        log.debug("lip-sync %s: %.2f s of speech in %.1f ms", source.name, speech.duration_s,
                  (time.perf_counter() - started) * 1000)
        return track

    @abstractmethod
    def _segments(self, speech: Speech) -> list[VisemeSegment]:
        """Viseme segments covering ``[0, speech.duration_s]``."""


class TTSTimingLipsync(LipsyncBackend):
    """Exact lip-sync from the phoneme timings the TTS reported (IPA from Piper, or ARPAbet)."""

    name: ClassVar[str] = "tts"

    @property
    def description(self) -> str:
        return "TTS phoneme timings"

    def accepts(self, speech: Speech) -> bool:
        return bool(speech.phonemes)

    def _segments(self, speech: Speech) -> list[VisemeSegment]:
        return segments_from_phonemes(speech.phonemes, speech.duration_s)


class TranscriptLipsync(LipsyncBackend):
    """Lip-sync from audio plus its words: CMUdict visemes forced onto the audio inside each word's time window.

    Word windows come from the TTS's word timings when the Speech has them, else from whisper.cpp when this source
    was given one; whisper's own words stand in for a missing transcript. Without either, the alignment relies on
    the audio alone (still constrained to the transcript's visemes).
    """

    name: ClassVar[str] = "transcript"

    def __init__(self, whisper: WhisperWords | None = None) -> None:
        self.whisper = whisper

    @property
    def description(self) -> str:
        timing = "whisper.cpp word timings" if self.whisper else "TTS word timings when given"
        return f"transcript (or whisper's) + {timing}, forced alignment (CMUdict)"

    def accepts(self, speech: Speech) -> bool:
        has_words = bool(speech.text.strip() or speech.words or self.whisper)
        return has_words and speech.duration_s > 0

    def _segments(self, speech: Speech) -> list[VisemeSegment]:
        heard = speech.words or (self.whisper.words(speech.audio, speech.sample_rate) if self.whisper else ())
        words = words_of(speech.text) or words_of(" ".join(w.word for w in heard))
        windows = word_windows(words, heard, speech.duration_s) if heard else None
        return align_words(analyse(speech.audio, speech.sample_rate), words, windows)


class AudioLipsync(LipsyncBackend):
    """Lip-sync from the sound alone: a trained per-frame shape classifier, smoothed by Viterbi."""

    name: ClassVar[str] = "audio"

    @property
    def description(self) -> str:
        return "audio shape classifier (mel cepstra, level, hiss, ZCR) + Viterbi"

    def accepts(self, speech: Speech) -> bool:
        return speech.duration_s > 0

    def _segments(self, speech: Speech) -> list[VisemeSegment]:
        return segments_from_audio(speech.audio, speech.sample_rate)


class RhubarbLipsync(LipsyncBackend):
    """Rhubarb Lip Sync run as a program; its cues are kept as they are, keyframes use each shape's viseme."""

    name: ClassVar[str] = "rhubarb"

    def __init__(self, binary: str = "") -> None:
        found = shutil.which(binary or "rhubarb")
        if found is None:
            raise ModelNotFoundError(
                STAGE, self.name,
                f"no rhubarb program at {binary!r}" if binary else "no 'rhubarb' program on PATH "
                "(download a release from github.com/DanielSWolf/rhubarb-lip-sync and put it on PATH)",
            )
        self.binary = found

    @property
    def description(self) -> str:
        return f"Rhubarb ({self.binary})"

    def accepts(self, speech: Speech) -> bool:
        return speech.duration_s > 0

    def _segments(self, speech: Speech) -> list[VisemeSegment]:
        import soundfile as sf

        with tempfile.TemporaryDirectory(prefix="rhubarb-") as tmp:
            wav = Path(tmp) / "speech.wav"
            sf.write(str(wav), speech.audio, speech.sample_rate, subtype="PCM_16")
            command = [self.binary, "-f", "json", "--extendedShapes", "GHX", "--machineReadable", str(wav)]
            if speech.text.strip():
                dialog = Path(tmp) / "dialog.txt"
                dialog.write_text(speech.text, encoding="utf-8")
                command[1:1] = ["-d", str(dialog)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=RHUBARB_TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise BackendError(STAGE, self.name, f"rhubarb exited with {done.returncode}: {done.stderr[-300:]}")
        return parse_rhubarb(json.loads(done.stdout))


def parse_rhubarb(document: dict) -> list[VisemeSegment]:
    """Segments from Rhubarb's JSON output, each keeping Rhubarb's own shape."""
    representative = shape_table().representative
    segments = []
    for cue in document.get("mouthCues", []):
        shape = cue["value"]
        if shape not in RHUBARB_SHAPES:
            raise ValueError(f"Rhubarb returned unknown mouth shape {shape!r}")
        segments.append(VisemeSegment(representative[shape], float(cue["start"]), float(cue["end"]), shape))
    return segments


LIPSYNC_BACKENDS: dict[str, type[LipsyncBackend]] = {
    TTSTimingLipsync.name: TTSTimingLipsync,
    RhubarbLipsync.name: RhubarbLipsync,
    TranscriptLipsync.name: TranscriptLipsync,
    AudioLipsync.name: AudioLipsync,
}
AUTO_ORDER: tuple[str, ...] = ("tts", "rhubarb", "transcript", "audio")
"""Preference of the engine: exact timings first, the cheapest audio-only analysis last."""


class LipsyncEngine(LipsyncBackend):
    """The one entry point: per Speech, the first source in ``AUTO_ORDER`` that accepts it."""

    name: ClassVar[str] = "auto"

    def __init__(self, sources: Sequence[LipsyncBackend]) -> None:
        if not sources:
            raise ValueError("LipsyncEngine needs at least one timing source")
        self.sources = tuple(sources)

    @property
    def description(self) -> str:
        return " > ".join(source.name for source in self.sources)

    def accepts(self, speech: Speech) -> bool:
        return any(source.accepts(speech) for source in self.sources)

    def select(self, speech: Speech) -> LipsyncBackend:
        for source in self.sources:
            if source.accepts(speech):
                return source
        raise InputError("No lip-sync source can use this speech: it has no audio, text or phoneme timings.")

    def _segments(self, speech: Speech) -> list[VisemeSegment]:
        return self.select(speech)._segments(speech)


def create_lipsync(name: str = "auto", *, rhubarb_path: str = "", config: AppConfig | None = None) -> LipsyncBackend:
    """The lip-sync source called ``name``, or for "auto" an engine over every available source.

    The transcript source gets whisper.cpp word timings (``config.asr``, default: the environment's config) when
    pywhispercpp and its weights are available; otherwise it aligns without them and ``note`` says so.

    Raises:
        ConfigError: unknown name.
        ModelNotFoundError: "rhubarb" was asked for and no binary is found.
    """
    cls = pick_backend(STAGE, {**LIPSYNC_BACKENDS, LipsyncEngine.name: LipsyncEngine}, name)
    if cls is not LipsyncEngine:
        return _create(cls, rhubarb_path, config)
    sources: list[LipsyncBackend] = []
    notes: list[str] = []
    for key in AUTO_ORDER:
        try:
            source = _create(LIPSYNC_BACKENDS[key], rhubarb_path, config)
        except ModelNotFoundError as exc:
            log.info("lip-sync source %s unavailable: %s", key, exc)
            notes.append(f"{key}: not available")
            continue
        sources.append(source)
        if source.note:
            notes.append(f"{key}: {source.note}")
    engine = LipsyncEngine(sources)
    engine.note = "; ".join(notes)
    return engine


def _create(cls: type[LipsyncBackend], rhubarb_path: str, config: AppConfig | None) -> LipsyncBackend:
    if cls is RhubarbLipsync:
        return cls(rhubarb_path)
    if cls is not TranscriptLipsync:
        return cls()
    try:
        return cls(WhisperWords(config or load_config()))
    except ModelNotFoundError as exc:
        log.warning("lip-sync without whisper word timings: %s", exc)
        source = cls()
        source.note = f"no whisper word timings ({exc})"
        return source
