"""Lip-sync timing sources behind one entry point: TTS phoneme timings, Rhubarb, transcript + audio, audio alone.

Each source is a ``LipsyncBackend`` that turns a ``Speech`` into viseme segments (``_segments``); the shared
``track()`` adds timing, error wrapping and the cue/keyframe building. ``LipsyncEngine`` tries the sources in
``AUTO_ORDER`` and uses the first that accepts the speech: exact TTS timings when the TTS gave phonemes, Rhubarb
when its binary is installed, else the transcript (or whisper's words) forced onto the audio, else the audio alone.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

from core.backend import StageBackend, backend_errors, pick_backend
from core.config import AppConfig, load_config
from core.errors import BackendError, ConfigError, InputError, ModelNotFoundError
from core.lipsync.acoustic import segments_from_audio
from core.lipsync.align import align_words, word_windows, words_of
from core.lipsync.audio import analyse
from core.lipsync.phonemes import VisemeSegment, segments_from_phonemes
from core.lipsync.rhubarb import RECOGNIZERS, find_rhubarb, parse_rhubarb, run_rhubarb, time_budget
from core.lipsync.threads import one_blas_thread
from core.lipsync.track import build_track
from core.lipsync.whisper import WhisperWords
from core.types import Speech, VisemeTrack

log = logging.getLogger(__name__)

STAGE = "lipsync"


class LipsyncBackend(StageBackend, ABC):
    """A timing source: says whether it can handle a Speech and turns it into viseme segments."""

    stage: ClassVar[str] = "Lip-sync"

    def accepts(self, speech: Speech) -> bool:
        """Whether this source has what it needs in ``speech`` (override to require phonemes or text)."""
        return True

    def track(self, speech: Speech, offset_s: float = 0.0) -> VisemeTrack:
        """Lip-sync for ``speech`` with every time shifted by ``offset_s``; ``track.source`` names who made it.

        Raises:
            InputError: the speech holds no audio and no phoneme timings.
            BackendError: the source failed.
        """
        if speech.duration_s <= 0 and not speech.phonemes:
            raise InputError("Lip-sync needs audio or phoneme timings; the speech is empty.")
        started = time.perf_counter()
        with one_blas_thread():
            source, segments = self.segments_by(speech)
            track = build_track(segments, speech.duration_s, offset_s=offset_s, source=source.name)
        log.debug("lip-sync %s: %.2f s of speech in %.1f ms", source.name, speech.duration_s,
                  (time.perf_counter() - started) * 1000)
        return track

    def segments_by(self, speech: Speech) -> tuple[LipsyncBackend, list[VisemeSegment]]:
        """The source that made the segments (this one; for the engine, the one that succeeded) and the segments.

        Raises:
            BackendError: the source failed (library errors are wrapped).
        """
        with backend_errors(STAGE, self.name):
            return self, self._segments(speech)

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

    Word windows come from the TTS's word timings when the Speech has them. Without a transcript, whisper.cpp's
    words (when this source was given one) stand in for it and give the windows too; with a transcript, whisper
    runs only if ``whisper_windows`` asks (its windows add little and cost ~100x the alignment). Otherwise the
    alignment relies on the audio alone, still constrained to the transcript's visemes.
    """

    name: ClassVar[str] = "transcript"

    def __init__(self, whisper: WhisperWords | None = None, *, whisper_windows: bool = False) -> None:
        self.whisper = whisper
        self.whisper_windows = whisper_windows

    @property
    def description(self) -> str:
        heard = "whisper.cpp's words when there is no transcript" if self.whisper else "no ASR"
        return f"transcript forced onto the audio (CMUdict + the audio classifier); {heard}"

    def accepts(self, speech: Speech) -> bool:
        has_words = bool(speech.text.strip() or speech.words or self.whisper)
        return has_words and speech.duration_s > 0

    def _segments(self, speech: Speech) -> list[VisemeSegment]:
        words = words_of(speech.text)
        listen = self.whisper is not None and (not words or self.whisper_windows)
        heard = speech.words or (self.whisper.words(speech.audio, speech.sample_rate) if listen else ())
        words = words or words_of(" ".join(w.word for w in heard))
        windows = word_windows(words, heard, speech.duration_s) if heard else None
        return align_words(analyse(speech.audio, speech.sample_rate), words, windows)


class AudioLipsync(LipsyncBackend):
    """Lip-sync from the sound alone: a trained per-frame shape classifier, smoothed by Viterbi."""

    name: ClassVar[str] = "audio"

    @property
    def description(self) -> str:
        return "audio frame classifier (neural, mel cepstra + level, hiss, ZCR) + Viterbi"

    def accepts(self, speech: Speech) -> bool:
        return speech.duration_s > 0

    def _segments(self, speech: Speech) -> list[VisemeSegment]:
        return segments_from_audio(speech.audio, speech.sample_rate)


class RhubarbLipsync(LipsyncBackend):
    """Rhubarb Lip Sync run as a program (``core.lipsync.rhubarb``); its cues are kept as they are, keyframes use
    each shape's viseme. The speech's text, when it has one, is Rhubarb's dialog file."""

    name: ClassVar[str] = "rhubarb"

    def __init__(self, binary: str = "", recognizer: str = RECOGNIZERS[0],
                 budget: Callable[[float], float] = time_budget) -> None:
        """Raises ModelNotFoundError when the binary or its resources are missing, ConfigError for a bad recognizer."""
        if recognizer not in RECOGNIZERS:
            raise ConfigError(f"Unknown Rhubarb recognizer {recognizer!r}; choose one of: {', '.join(RECOGNIZERS)}")
        self.binary = find_rhubarb(binary)
        self.recognizer = recognizer
        self.budget = budget

    @property
    def description(self) -> str:
        return f"Rhubarb Lip Sync ({self.recognizer}) at {self.binary}"

    def accepts(self, speech: Speech) -> bool:
        return speech.duration_s > 0

    def _segments(self, speech: Speech) -> list[VisemeSegment]:
        document = run_rhubarb(self.binary, speech, self.recognizer, self.budget(speech.duration_s))
        return parse_rhubarb(document)


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
        self.failures: dict[str, str] = {}
        """The last failure of each source that failed and handed over to the next one."""

    @property
    def description(self) -> str:
        return " > ".join(source.name for source in self.sources)

    def accepts(self, speech: Speech) -> bool:
        return any(source.accepts(speech) for source in self.sources)

    def segments_by(self, speech: Speech) -> tuple[LipsyncBackend, list[VisemeSegment]]:
        """The first source that accepts ``speech`` and succeeds; a failing source hands over to the next one.

        Raises:
            InputError: no source can use the speech.
            BackendError: every source that could use it failed (the last failure).
        """
        failure: BackendError | None = None
        for source in self.sources:
            if not source.accepts(speech):
                continue
            try:
                return source.segments_by(speech)
            except BackendError as exc:
                log.warning("lip-sync source %s failed, trying the next one: %s", source.name, exc)
                self.failures[source.name] = str(exc)
                failure = exc
        if failure is not None:
            raise failure
        raise InputError("No lip-sync source can use this speech: it has no audio, text or phoneme timings.")

    def _segments(self, speech: Speech) -> list[VisemeSegment]:
        return self.segments_by(speech)[1]


def create_lipsync(name: str = "auto", *, rhubarb_path: str = "", rhubarb_recognizer: str = "",
                   config: AppConfig | None = None, listen: bool = True) -> LipsyncBackend:
    """The lip-sync source called ``name``, or for "auto" an engine over every available source.

    ``config`` (default: the environment's) gives the Rhubarb binary and recogniser unless the arguments do, and
    the transcript source's whisper.cpp (``config.asr``) when ``listen`` and pywhispercpp and its weights are
    available; otherwise that source aligns without heard words and ``note`` says why.

    Raises:
        ConfigError: unknown name or Rhubarb recogniser.
        ModelNotFoundError: "rhubarb" was asked for and no binary (or its resources) is found.
    """
    cls = pick_backend(STAGE, {**LIPSYNC_BACKENDS, LipsyncEngine.name: LipsyncEngine}, name)
    config = config or load_config()
    rhubarb = (rhubarb_path or config.lipsync.rhubarb_path, rhubarb_recognizer or config.lipsync.rhubarb_recognizer)
    if cls is not LipsyncEngine:
        return _create(cls, config, rhubarb, listen)
    sources: list[LipsyncBackend] = []
    notes: list[str] = []
    for key in AUTO_ORDER:
        try:
            source = _create(LIPSYNC_BACKENDS[key], config, rhubarb, listen)
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


def _create(cls: type[LipsyncBackend], config: AppConfig, rhubarb: tuple[str, str], listen: bool) -> LipsyncBackend:
    """One source; ``rhubarb`` is the (binary, recogniser) pair the Rhubarb source is made with."""
    if cls is RhubarbLipsync:
        return cls(*rhubarb)
    if cls is not TranscriptLipsync:
        return cls()
    if not listen:
        return cls()
    try:
        return cls(WhisperWords(config))
    except ModelNotFoundError as exc:
        log.warning("lip-sync without whisper word timings: %s", exc)
        source = cls()
        source.note = f"no whisper word timings ({exc})"
        return source
