"""What every TTS backend shares: capabilities as data, text validation, timing and error wrapping."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import ModuleType
from typing import ClassVar

import numpy as np

from core.backend import StageBackend, backend_errors
from core.errors import ModelNotFoundError
from core.types import Speech

log = logging.getLogger(__name__)

PAUSE = "_"
"""Phoneme marker for silence: sentence start/end and punctuation (Piper's pad symbol, read as rest by lip-sync)."""
WORD_GAP = " "
"""Phoneme marker for the joint between two words (Piper gives it a few milliseconds)."""
SPEAKABLE = re.compile(r"[^\W_]")
"""A letter or digit in any script: text without one has nothing to say."""


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

    @classmethod
    def unavailable_reason(cls, voice: str = "") -> str | None:
        """Why this backend cannot speak ``voice`` right now, or None when it can. Cheap: loads no model (a
        character's voice is checked before it is offered)."""
        return None

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Sample rate of the audio this backend produces, in Hz."""

    def synthesize(self, text: str) -> Speech:
        """Speak ``text``; text without a letter or digit (empty, punctuation only) gives zero-length Speech.

        Raises:
            BackendError: the backend failed (``retryable`` set for network backends).
        """
        if not SPEAKABLE.search(text):
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


def missing_module(module: str, install_hint: str) -> str | None:
    """Say that a backend's library is not installed (with how to install it), or None when it is."""
    if importlib.util.find_spec(module) is None:
        return f"the {module!r} package is not installed ({install_hint})"
    return None


def require_module(module: str, stage: str, backend: str, install_hint: str) -> ModuleType:
    """Import a backend's library, or raise ModelNotFoundError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelNotFoundError(
            stage, backend, f"the {module!r} package is not installed ({install_hint}): {exc}"
        ) from exc
