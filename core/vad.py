"""Voice activity detection with Silero VAD: find speech, trim silence, and tell when a speaker has finished.

All functions take 16 kHz mono float32 audio. The Silero model (ONNX, shipped inside the ``silero-vad`` package)
loads once, on first use, and is shared; each end-of-turn detector keeps its own copy because the model is
stateful while streaming.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import Any

import numpy as np

from core.errors import ModelNotFoundError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 512
"""Silero scores 32 ms windows at 16 kHz."""
SPEECH_THRESHOLD = 0.5
SILENCE_MARGIN = 0.15
"""Hysteresis: a window counts as silence only below ``threshold - SILENCE_MARGIN`` (Silero's own convention)."""

_shared_lock = threading.Lock()


def _load_silero() -> Any:
    """Load a fresh Silero VAD model (ONNX); importing silero_vad sets torch to one thread, which is undone."""
    try:
        import torch
    except ImportError as exc:
        raise ModelNotFoundError("VAD", "silero", "torch is not installed (see requirements.txt).") from exc
    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    except ImportError as exc:
        raise ModelNotFoundError("VAD", "silero", "the silero-vad package is not installed "
                                 "(pip install silero-vad==6.2.3).") from exc
    finally:
        torch.set_num_threads(threads)
    return load_silero_vad(onnx=True)


@lru_cache(maxsize=1)
def _shared_model() -> Any:
    model = _load_silero()
    log.info("Silero VAD loaded")
    return model


def _as_16k(audio16k: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio16k, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {audio.shape}")
    return audio


def speech_segments(
    audio16k: np.ndarray,
    *,
    threshold: float = SPEECH_THRESHOLD,
    min_speech_s: float = 0.25,
    min_silence_s: float = 0.1,
    pad_s: float = 0.03,
) -> list[tuple[float, float]]:
    """Return ``(start_s, end_s)`` of every stretch of speech, in order; an empty list means no speech."""
    audio = _as_16k(audio16k)
    if audio.size < WINDOW_SAMPLES:
        return []
    import torch
    from silero_vad import get_speech_timestamps

    model = _shared_model()
    with _shared_lock:
        stamps = get_speech_timestamps(
            torch.from_numpy(audio),
            model,
            threshold=threshold,
            sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=int(min_speech_s * 1000),
            min_silence_duration_ms=int(min_silence_s * 1000),
            speech_pad_ms=int(pad_s * 1000),
        )
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def trim_silence(audio16k: np.ndarray, pad_s: float = 0.2) -> np.ndarray:
    """Cut leading and trailing silence, keeping ``pad_s`` around the speech; empty if there is no speech."""
    audio = _as_16k(audio16k)
    segments = speech_segments(audio)
    if not segments:
        return audio[:0]
    start = max(0, int((segments[0][0] - pad_s) * SAMPLE_RATE))
    end = min(audio.size, int(np.ceil((segments[-1][1] + pad_s) * SAMPLE_RATE)))
    return audio[start:end]


class EndOfTurnDetector:
    """Streaming end-of-turn detection for hands-free mode.

    Responsibilities: score incoming 16 kHz audio in 32 ms windows, note when the user starts speaking
    (at least ``min_speech_s`` of speech), and report the turn as over once a pause of ``pause_s`` follows.
    Feed chunks of any length; leftover samples wait for the next chunk. One detector per audio stream.
    """

    def __init__(self, pause_s: float = 0.8, *, threshold: float = SPEECH_THRESHOLD, min_speech_s: float = 0.2) -> None:
        if pause_s <= 0:
            raise ValueError(f"pause_s must be positive, got {pause_s}")
        self.pause_s = pause_s
        self.threshold = threshold
        self.min_speech_s = min_speech_s
        self._model = _load_silero()
        self.reset()

    def reset(self) -> None:
        """Forget the current turn (model state, buffered samples, counters) to start listening afresh."""
        self._model.reset_states()
        self._pending = np.zeros(0, dtype=np.float32)
        self._in_speech = False
        self.speech_s = 0.0
        self.silence_s = 0.0
        self.ended = False

    @property
    def heard_speech(self) -> bool:
        """Whether the user has spoken long enough for a pause to end the turn."""
        return self.speech_s >= self.min_speech_s

    def feed(self, chunk16k: np.ndarray) -> bool:
        """Add audio; return True once the user has spoken and then paused for ``pause_s`` (stays True until reset)."""
        import torch

        audio = np.concatenate([self._pending, _as_16k(chunk16k)])
        n_windows = audio.size // WINDOW_SAMPLES
        self._pending = audio[n_windows * WINDOW_SAMPLES :]
        window_s = WINDOW_SAMPLES / SAMPLE_RATE
        for i in range(n_windows):
            if self.ended:
                break
            window = torch.from_numpy(audio[i * WINDOW_SAMPLES : (i + 1) * WINDOW_SAMPLES].copy())
            prob = float(self._model(window, SAMPLE_RATE).item())
            if prob >= self.threshold:
                self._in_speech = True
            elif prob < self.threshold - SILENCE_MARGIN:
                self._in_speech = False
            if self._in_speech:
                self.speech_s += window_s
                self.silence_s = 0.0
            else:
                self.silence_s += window_s
                self.ended = self.heard_speech and self.silence_s >= self.pause_s
        return self.ended
