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

import logging
from pathlib import Path

import numpy as np

from core.backend import pick_backend
from core.config import AppConfig
from core.errors import ModelNotFoundError
from core.tts.base import PAUSE, WORD_GAP, TTSBackend, TTSCapabilities
from core.tts.edge import EdgeTTS
from core.tts.kokoro import KokoroTTS
from core.tts.piper import PiperTTS
from core.types import Speech

__all__ = [
    "DEFAULT_TTS",
    "PAUSE",
    "TTS_BACKENDS",
    "WORD_GAP",
    "EdgeTTS",
    "KokoroTTS",
    "PiperTTS",
    "TTSBackend",
    "TTSCapabilities",
    "create_tts",
    "write_wav",
]

log = logging.getLogger(__name__)

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
