"""Lays a transcript over its audio: CMUdict phonemes, word windows from heard or TTS word timings, forced alignment.

1. Each word of the transcript becomes ARPAbet phonemes (CMUdict's first pronunciation, else letter by letter)
   and then Oculus visemes (diphthongs give two).
2. Word windows: the transcript's words are matched to timed words (whisper's, or a TTS's word boundaries) by
   edit distance; matched words take that word's time, unmatched ones the gap between their matched neighbours.
3. Forced alignment: a left-to-right chain of the visemes, with an optional rest between words, is laid over
   the frames by Viterbi. A frame's cost is the audio classifier's log-probability of the viseme
   (``core.lipsync.acoustic``), plus a cost per frame that a word lies outside its window. Every viseme lasts at
   least ``MIN_FRAMES`` frames when the audio is long enough, and nothing has to match exactly, so a wrong
   transcript still gives a valid track.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from core.lexicon import pronunciation
from core.lipsync.acoustic import ShapeModel, shape_model
from core.lipsync.audio import FRAME_S, Frames
from core.lipsync.phonemes import SILENCE, VisemeSegment
from core.lipsync.tables import letter_table, phoneme_table
from core.types import WordTiming

MIN_FRAMES = 2
"""Shortest viseme in the alignment (20 ms)."""
WINDOW_SLACK_S = 0.08
"""A word may start or end this much outside its window at no cost (word timestamps are approximate)."""
OUTSIDE_COST = 0.5
"""Log-probability lost per frame (per frame further away) that a word lies outside its slackened window."""
LOG_FLOOR = -12.0
"""The classifier's log-probabilities are clipped here, so one confident frame cannot veto a path."""

_WORD = re.compile(r"[a-z0-9']+")


def words_of(text: str) -> list[str]:
    """The transcript's words, lower-case, punctuation removed."""
    return [w.strip("'") for w in _WORD.findall(text.lower()) if w.strip("'")]


def word_phonemes(word: str) -> list[str]:
    """ARPAbet phonemes of one word: CMUdict's first pronunciation (stress stripped, unstressed AH read as the
    schwa AX, as espeak says it), else letter by letter."""
    entry = pronunciation(word)
    if entry:
        return ["AX" if p == "AH0" else re.sub(r"\d", "", p) for p in entry]
    letters = letter_table()
    return [p for ch in word for p in letters.get(ch, ())]


def match_words(wanted: Sequence[str], heard: Sequence[str]) -> list[int | None]:
    """For each wanted word, the index of the heard word it aligns with (None when inserted), by edit distance."""
    n, m = len(wanted), len(heard)
    cost = np.zeros((n + 1, m + 1))
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j] + 1, cost[i, j - 1] + 1,
                             cost[i - 1, j - 1] + _word_distance(wanted[i - 1], heard[j - 1]))
    matched: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 and j > 0:
        if cost[i, j] == cost[i - 1, j - 1] + _word_distance(wanted[i - 1], heard[j - 1]):
            matched[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return matched


def _word_distance(a: str, b: str) -> float:
    """0 for the same word, up to 1 as the spelling differs (character edit distance over the longer length)."""
    if a == b:
        return 0.0
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return min(row[-1] / max(len(a), len(b)), 1.0) * 0.99


def word_windows(wanted: Sequence[str], heard: Sequence[WordTiming], duration_s: float) -> list[tuple[float, float]]:
    """A time window per wanted word: its matched heard word's, else the gap between matched neighbours."""
    matched = match_words(wanted, ["".join(words_of(w.word)) for w in heard])
    windows: list[tuple[float, float] | None] = [
        (heard[k].start_s, heard[k].end_s) if k is not None else None for k in matched
    ]
    out = []
    for i, window in enumerate(windows):
        if window is None:
            before = next((w[1] for w in reversed(windows[:i]) if w is not None), 0.0)
            after = next((w[0] for w in windows[i + 1 :] if w is not None), duration_s)
            window = (min(before, after), max(before, after))
        out.append(window)
    return out


def align_words(frames: Frames, words: Sequence[str], windows: Sequence[tuple[float, float]] | None = None,
                model: ShapeModel | None = None) -> list[VisemeSegment]:
    """Viseme segments for ``words`` forced onto ``frames`` (see the module docstring); rest elsewhere."""
    model = model or shape_model()
    units, owner = _units(words)
    if not units or frames.silent:
        return []
    log_p = np.maximum(model.class_log_probs(frames), LOG_FLOOR)
    column = np.array([model.classes.index(v) for v in units])
    optional = np.array([v == SILENCE for v in units])
    spoken = sum(1 for v in units if v != SILENCE)
    least = MIN_FRAMES if spoken * MIN_FRAMES <= frames.count else 1
    state_unit = np.repeat(np.arange(len(units)), [least if v != SILENCE else 1 for v in units])
    first = np.flatnonzero(np.diff(np.concatenate(([-1], state_unit))) != 0)  # first state of each unit
    last = np.concatenate((first[1:] - 1, [len(state_unit) - 1]))
    low, high = _frame_windows(windows, owner, state_unit, frames.count)
    path = _viterbi(log_p[:, column[state_unit]], state_unit, first, last, optional, low, high)
    segments = []
    for t, state in enumerate(path):
        viseme = units[state_unit[state]]
        if segments and segments[-1].viseme == viseme:
            segments[-1] = VisemeSegment(viseme, segments[-1].start_s, (t + 1) * FRAME_S)
        else:
            segments.append(VisemeSegment(viseme, t * FRAME_S, (t + 1) * FRAME_S))
    return segments


def _units(words: Sequence[str]) -> tuple[list[str], list[int]]:
    """The viseme chain (optional rest before, between and after words) and the word each unit belongs to (-1)."""
    table = phoneme_table("arpabet").phonemes
    units, owner = [SILENCE], [-1]
    for k, word in enumerate(words):
        visemes = [v for p in word_phonemes(word) if p in table for v in table[p]]
        if visemes:
            units += [*visemes, SILENCE]
            owner += [k] * len(visemes) + [-1]
    return (units, owner) if len(units) > 1 else ([], [])


def _frame_windows(windows: Sequence[tuple[float, float]] | None, owner: list[int], state_unit: np.ndarray,
                   count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per state, the first and last frame its word may occupy at no cost (rests and unknown words: anywhere)."""
    low, high = np.zeros(len(state_unit)), np.full(len(state_unit), float(count))
    if windows:
        for state, unit in enumerate(state_unit):
            if owner[unit] >= 0:
                start, end = windows[owner[unit]]
                low[state], high[state] = (start - WINDOW_SLACK_S) / FRAME_S, (end + WINDOW_SLACK_S) / FRAME_S
    return low, high


def _viterbi(emission: np.ndarray, state_unit: np.ndarray, first: np.ndarray, last: np.ndarray,
             optional: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Best left-to-right state path: stay in a unit's last state, step to the next state, or skip an optional rest."""
    count, states = emission.shape
    can_stay = np.zeros(states, dtype=bool)
    can_stay[last] = True
    skip_from = last[:-2][optional[1:-1]]  # the last state of unit u, when unit u+1 is an optional rest
    skip_to = first[2:][optional[1:-1]]
    frame = np.arange(count)[:, None]
    cost = emission - OUTSIDE_COST * np.maximum(np.maximum(low[None, :] - frame, frame - high[None, :]), 0.0)
    score = np.full(states, -np.inf)
    score[0] = cost[0, 0]
    if optional[0] and len(first) > 1:
        score[first[1]] = cost[0, first[1]]
    back = np.zeros((count, states), dtype=np.int32)
    index = np.arange(states)
    for t in range(1, count):
        best = np.where(can_stay, score, -np.inf)
        source = index.copy()
        step = np.concatenate(([-np.inf], score[:-1]))
        better = step > best
        best[better], source[better] = step[better], index[better] - 1
        jump = score[skip_from]
        better = jump > best[skip_to]
        best[skip_to[better]], source[skip_to[better]] = jump[better], skip_from[better]
        back[t] = source
        score = best + cost[t]
    ends = [last[-1]] + ([last[-2]] if optional[-1] and len(last) > 1 else [])
    path = np.empty(count, dtype=np.int64)
    path[-1] = max(ends, key=lambda s: score[s])
    for t in range(count - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path
