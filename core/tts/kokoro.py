"""Kokoro-82M (torch): optional offline voices with word timings; needs the kokoro package and hub weights."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

import numpy as np

from core.backend import backend_errors
from core.config import TTSConfig
from core.models import resolve_model
from core.tts.base import SPEAKABLE, TTSBackend, TTSCapabilities, missing_module, require_module
from core.types import Speech, WordTiming

KOKORO_REPO = "hexgrad/Kokoro-82M"
KOKORO_DEFAULT_VOICE = "af_heart"
KOKORO_SAMPLE_RATE = 24_000
KOKORO_INSTALL_HINT = "pip install kokoro==0.9.4; it also needs torch"
KOKORO_FILES = ("kokoro-v1_0.pth", "config.json")


class KokoroTTS(TTSBackend):
    """Kokoro-82M (StyleTTS2 on torch): word timings per sentence; needs ``kokoro`` and the hub weights."""

    name: ClassVar[str] = "kokoro"
    capabilities: ClassVar[TTSCapabilities] = TTSCapabilities(phoneme_timings=False, word_timings=True, streaming=False)

    def __init__(self, config: TTSConfig, voice: str = "") -> None:
        kokoro = require_module("kokoro", self.stage, self.name, KOKORO_INSTALL_HINT)
        self._voice = voice or KOKORO_DEFAULT_VOICE
        weights, model_config = (self._hub_file(filename) for filename in KOKORO_FILES)
        with backend_errors(self.stage, self.name):
            model = kokoro.KModel(repo_id=KOKORO_REPO, config=str(model_config), model=str(weights)).eval()
            # The voice's first letter is its language: "a" American, "b" British English.
            self._pipeline = kokoro.KPipeline(lang_code=self._voice[0], repo_id=KOKORO_REPO, model=model)
        self._lock = threading.Lock()

    @classmethod
    def unavailable_reason(cls, voice: str = "") -> str | None:
        """Missing ``kokoro``, or its weights not in the local hub cache (no download is attempted here)."""
        missing = missing_module("kokoro", KOKORO_INSTALL_HINT)
        if missing:
            return missing
        from huggingface_hub import try_to_load_from_cache

        absent = [f for f in KOKORO_FILES if not isinstance(try_to_load_from_cache(KOKORO_REPO, f), str)]
        if absent:
            return f"the weights {absent} of {KOKORO_REPO} are not in the local hub cache"
        return None

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
                    if t.start_ts is not None and t.end_ts is not None and SPEAKABLE.search(t.text)
                )
                parts.append(audio)
                offset_s += len(audio) / self.sample_rate
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return Speech(text, audio, self.sample_rate, words=tuple(words), backend=self.name)
