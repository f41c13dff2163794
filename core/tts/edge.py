"""Microsoft Edge's online neural voices (edge-tts): MP3 audio with word boundaries; needs the internet."""

from __future__ import annotations

import asyncio
import io
import socket
from typing import ClassVar

import numpy as np

from core.config import TTSConfig
from core.errors import BackendError
from core.tts.base import TTSBackend, TTSCapabilities, missing_module, require_module
from core.types import Speech, WordTiming

EDGE_DEFAULT_VOICE = "en-US-AriaNeural"
EDGE_SAMPLE_RATE = 24_000
EDGE_TICKS_PER_S = 10_000_000  # WordBoundary offsets and durations are in 100-ns ticks
EDGE_INSTALL_HINT = "pip install edge-tts==7.3.1"
EDGE_SERVICE = ("speech.platform.bing.com", 443)
"""Where edge-tts connects (its WebSocket endpoint); reachability is checked before a voice is offered."""
EDGE_PROBE_TIMEOUT_S = 2.0


def decode_audio(data: bytes, rate: int) -> np.ndarray:
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
        self._edge = require_module("edge_tts", self.stage, self.name, EDGE_INSTALL_HINT)
        self._voice = voice or EDGE_DEFAULT_VOICE

    @classmethod
    def unavailable_reason(cls, voice: str = "") -> str | None:
        """Missing ``edge-tts``, or no connection to Microsoft's speech service (name lookup and TCP connect)."""
        missing = missing_module("edge_tts", EDGE_INSTALL_HINT)
        if missing:
            return missing
        try:
            socket.create_connection(EDGE_SERVICE, timeout=EDGE_PROBE_TIMEOUT_S).close()
        except OSError as exc:
            return f"Microsoft's speech service ({EDGE_SERVICE[0]}) cannot be reached, internet needed ({exc})"
        return None

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
            text, decode_audio(mp3, self.sample_rate), self.sample_rate, words=tuple(words), backend=self.name
        )
