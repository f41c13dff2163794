"""Word timings heard by whisper.cpp (pywhispercpp, the ASR stage's tiny.en ggml weights): one segment per word."""

from __future__ import annotations

import logging
import math
import re
import threading
import time

import numpy as np

from core.config import AppConfig
from core.errors import ModelNotFoundError
from core.types import WordTiming

log = logging.getLogger(__name__)

WHISPER_RATE = 16000
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")


class WhisperWords:
    """Loads whisper.cpp on first use and returns the words it hears with their times.

    ``busy_s`` adds up the seconds spent recognising, so callers can report ASR time apart from the rest.
    """

    def __init__(self, config: AppConfig) -> None:
        try:
            import pywhispercpp  # noqa: F401 - only checks that the binding is installed
        except ImportError as exc:
            raise ModelNotFoundError("lipsync", "whisper", "pywhispercpp is not installed") from exc
        from core.asr import resolve_ggml

        self.path = resolve_ggml(config).path
        self.threads = config.asr.threads
        self.busy_s = 0.0
        self._model = None
        self._lock = threading.Lock()

    def words(self, audio: np.ndarray, sample_rate: int) -> list[WordTiming]:
        """Words heard in mono float32 ``audio``, times in seconds of that audio (annotations dropped)."""
        from scipy.signal import resample_poly

        divisor = math.gcd(WHISPER_RATE, sample_rate)
        samples = resample_poly(audio, WHISPER_RATE // divisor, sample_rate // divisor).astype(np.float32)
        with self._lock:
            started = time.perf_counter()
            if self._model is None:
                from pywhispercpp.model import Model

                self._model = Model(str(self.path), redirect_whispercpp_logs_to=None, n_threads=self.threads,
                                    language="en", print_progress=False, print_realtime=False, no_context=True)
            segments = self._model.transcribe(samples, token_timestamps=True, max_len=1, split_on_word=True)
            self.busy_s += time.perf_counter() - started
        words = []
        for segment in segments:
            text = _ANNOTATION.sub(" ", segment.text).strip()
            if text and segment.t1 > segment.t0:
                words.append(WordTiming(text, segment.t0 / 100.0, segment.t1 / 100.0))
        log.debug("whisper heard %d words in %.2f s of audio", len(words), len(audio) / sample_rate)
        return words
