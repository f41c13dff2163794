"""Per-frame analysis of speech audio: loudness, where the speech is, and spectral features for the shape model.

Every 10 ms a 25 ms Hann window gives: loudness (dBFS), 12 mel cepstra (24 mel bands up to 8 kHz, the utterance
mean removed so the voice and channel matter less), loudness relative to the utterance's loud frames, spectral
centroid, the share of energy above 4 kHz (sibilants) and the zero-crossing rate (fricatives). ``stacked`` adds
the same features 30 and 60 ms before and after each frame, so a frame also sees the transitions around it.
The speech mask (loudness gate, short gaps bridged, clicks dropped) marks pauses for the transcript aligner.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from core.errors import InputError

FRAME_S = 0.010
WINDOW_S = 0.025
SILENT_PEAK_DB = -55.0
"""An utterance whose loud frames stay below this (dBFS) is treated as silence."""
GATE_BELOW_PEAK_DB = 35.0
GATE_ABOVE_FLOOR_DB = 8.0
"""A frame is speech when louder than both ``peak - 35 dB`` and ``noise floor + 8 dB``."""
BRIDGE_GAP_S = 0.12
"""Quiet stretches shorter than this inside speech are stop closures, not pauses."""
MIN_SPEECH_S = 0.05
"""Louder stretches shorter than this are clicks, not speech."""
MEL_BANDS = 24
CEPSTRA = 12
TOP_HZ = 8000.0
"""Features ignore everything above 8 kHz, so 16 kHz microphones and 22-24 kHz TTS voices look alike."""
HISS_FROM_HZ = 4000.0
CONTEXT_FRAMES = (-6, -3, 0, 3, 6)
FEATURE_NAMES: tuple[str, ...] = (*(f"c{i}" for i in range(1, CEPSTRA + 1)), "level", "centroid", "hiss", "zcr")


@dataclass(frozen=True, slots=True)
class Frames:
    """Per-frame analysis of an utterance: loudness (dBFS), the speech mask and the feature rows."""

    level_db: np.ndarray
    speech: np.ndarray
    features: np.ndarray
    peak_db: float

    @property
    def count(self) -> int:
        """Number of frames."""
        return len(self.level_db)

    @property
    def silent(self) -> bool:
        """Whether the whole utterance is too quiet to hold speech."""
        return self.peak_db <= SILENT_PEAK_DB

    def stacked(self) -> np.ndarray:
        """Each frame's features followed by those of its neighbours at ``CONTEXT_FRAMES`` (edges repeated)."""
        index = np.clip(np.arange(self.count)[:, None] + np.array(CONTEXT_FRAMES)[None, :], 0, self.count - 1)
        return self.features[index].reshape(self.count, -1)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of an audio file.

    Raises:
        InputError: the file is missing, unreadable or empty.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Audio file not found: {path}")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise InputError(f"Cannot read {path.name} as audio ({type(exc).__name__}: {exc})") from exc
    if audio.size == 0:
        raise InputError(f"{path.name} contains no audio samples")
    return audio.mean(axis=1), int(rate)


@cache
def _mel_bank(window: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangular mel filters (bands × bins), the bin frequencies, and the DCT-II rows giving cepstra 1..12."""
    def mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    top = min(TOP_HZ, sample_rate / 2)
    edges = 700.0 * (10 ** (np.linspace(mel(np.array(60.0)), mel(np.array(top)), MEL_BANDS + 2) / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(window, 1.0 / sample_rate)
    low, mid, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bank = np.clip(np.minimum((freqs - low) / (mid - low), (high - freqs) / (high - mid)), 0.0, None)
    bands = np.arange(MEL_BANDS)
    dct = np.cos(np.pi / MEL_BANDS * (bands[None, :] + 0.5) * np.arange(1, CEPSTRA + 1)[:, None])
    return bank.astype(np.float32), freqs, dct


def analyse(audio: np.ndarray, sample_rate: int) -> Frames:
    """Frame the signal every ``FRAME_S``: loudness, the speech mask and the features (see the module docstring)."""
    hop = max(round(FRAME_S * sample_rate), 1)
    window = max(round(WINDOW_S * sample_rate), hop)
    count = max(int(np.ceil(len(audio) / hop)), 1)
    padded = np.zeros(count * hop + window, dtype=np.float32)
    start = (window - hop) // 2
    padded[start : start + len(audio)] = audio
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:count]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(window).astype(np.float32), axis=1)) ** 2
    bank, freqs, dct = _mel_bank(window, sample_rate)
    cepstra = np.log(spectrum @ bank.T + 1e-10) @ dct.T
    cepstra -= cepstra.mean(axis=0)
    level_db = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    peak_db = float(np.percentile(level_db, 95))
    inside = freqs <= TOP_HZ
    total = np.maximum(spectrum[:, inside].sum(axis=1), 1e-12)
    centroid = (spectrum[:, inside] * freqs[inside]).sum(axis=1) / total
    hiss = spectrum[:, inside & (freqs >= HISS_FROM_HZ)].sum(axis=1) / total
    signs = np.signbit(frames)
    crossings = (signs[:, 1:] != signs[:, :-1]).mean(axis=1) * sample_rate
    features = np.column_stack([
        cepstra / 10.0,
        np.maximum(level_db - peak_db, -60.0) / 20.0,
        centroid / (TOP_HZ / 2),
        hiss,
        crossings / TOP_HZ,
    ]).astype(np.float32)
    floor_db = float(np.percentile(level_db, 10))
    gate_db = max(peak_db - GATE_BELOW_PEAK_DB, floor_db + GATE_ABOVE_FLOOR_DB)
    speech = level_db > gate_db if peak_db > SILENT_PEAK_DB else np.zeros(count, dtype=bool)
    speech = _fill_runs(speech, value=False, shorter_than=int(BRIDGE_GAP_S / FRAME_S), inner_only=True)
    speech = _fill_runs(speech, value=True, shorter_than=int(MIN_SPEECH_S / FRAME_S), inner_only=False)
    return Frames(level_db, speech, features, peak_db)


def _fill_runs(mask: np.ndarray, *, value: bool, shorter_than: int, inner_only: bool) -> np.ndarray:
    """Flip runs of ``value`` shorter than ``shorter_than`` frames (only those between other runs if ``inner_only``)."""
    out = mask.copy()
    edges = np.flatnonzero(np.diff(np.concatenate(([False], mask == value, [False])).astype(np.int8)))
    for begin, end in zip(edges[::2], edges[1::2], strict=True):
        if end - begin < shorter_than and not (inner_only and (begin == 0 or end == len(mask))):
            out[begin:end] = not value
    return out
