"""Turns timed phonemes (espeak IPA as Piper emits them, or CMUdict ARPAbet) into timed Oculus viseme segments.

Piper aligns every code point separately: ``ˈ`` and ``ː`` get their own samples, ``oʊ`` arrives as ``o`` + ``ʊ``,
a space between words lasts ~40 ms and punctuation carries the pause. The rules here put that time where the mouth
is: stress marks on the next phoneme, length marks and diacritics on the previous one, a word boundary split
between its neighbours, punctuation and the BOS/EOS markers as rest. Pre-joined input ("oʊ", "ˈaɪ") gives the
same result because every entry is first spread over its code points and then re-tokenised longest-match first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.lipsync.tables import PhonemeTable, phoneme_table
from core.types import PhonemeTiming

log = logging.getLogger(__name__)

SILENCE = "sil"
MIN_SEGMENT_S = 1e-4
"""Gaps or overlaps between input phonemes shorter than this are rounding, not pauses."""


@dataclass(frozen=True, slots=True)
class VisemeSegment:
    """One Oculus viseme held from ``start_s`` to ``end_s``; ``shape`` overrides the Rhubarb shape when known."""

    viseme: str
    start_s: float
    end_s: float
    shape: str = ""


@dataclass(slots=True)
class _Token:
    visemes: tuple[str, ...]
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class _Symbol:
    text: str
    start_s: float
    end_s: float


def _spread(phonemes: Sequence[PhonemeTiming]) -> list[_Symbol]:
    """One entry per code point, each entry's time split evenly over its code points."""
    symbols: list[_Symbol] = []
    for p in phonemes:
        start, step = float(p.start_s), (float(p.end_s) - float(p.start_s)) / max(len(p.phoneme), 1)
        symbols.extend(_Symbol(ch, start + i * step, start + (i + 1) * step) for i, ch in enumerate(p.phoneme))
    return symbols


def _match(table: PhonemeTable, symbols: list[_Symbol], i: int) -> tuple[str, int]:
    """Longest phoneme key starting at ``symbols[i]``, skipping length marks inside it; returns (key, symbols used)."""
    best, used, text, j = "", 0, "", i
    while j < len(symbols) and len(text) < table.longest_key:
        ch = symbols[j].text
        j += 1
        if ch in table.attach_previous and text:
            continue
        text += ch
        if text in table.phonemes:
            best, used = text, j - i
    return best, used


def _tokens_ipa(table: PhonemeTable, phonemes: Sequence[PhonemeTiming]) -> list[_Token]:
    symbols = _spread(phonemes)
    tokens: list[_Token] = []
    carried: float | None = None  # start time handed forward by a stress mark or the second half of a boundary
    i = 0
    while i < len(symbols):
        sym = symbols[i]
        if sym.text in table.attach_next:
            carried = sym.start_s if carried is None else carried
            i += 1
            continue
        if sym.text in table.word_boundary:
            mid = (sym.start_s + sym.end_s) / 2
            if tokens:
                tokens[-1].end_s = mid
            carried = sym.start_s if not tokens else (mid if carried is None else carried)
            i += 1
            continue
        key, used = _match(table, symbols, i) if sym.text not in table.silence else ("", 0)
        if sym.text in table.silence or used:
            visemes = (SILENCE,) if not used else table.phonemes[key]
            used = max(used, 1)
            start = sym.start_s if carried is None else carried
            tokens.append(_Token(visemes, start, symbols[i + used - 1].end_s))
            carried = None
            i += used
            continue
        if sym.text not in table.attach_previous:
            log.debug("unknown IPA symbol %r: its time goes to the previous phoneme", sym.text)
        if tokens:
            tokens[-1].end_s = sym.end_s
        elif carried is None:
            carried = sym.start_s
        i += 1
    if carried is not None and tokens and symbols:
        tokens[-1].end_s = max(tokens[-1].end_s, symbols[-1].end_s)
    return tokens


_STRESS = re.compile(r"[0-9]+$")


def _tokens_arpabet(table: PhonemeTable, phonemes: Sequence[PhonemeTiming]) -> list[_Token]:
    tokens: list[_Token] = []
    for p in phonemes:
        key = _STRESS.sub("", p.phoneme.strip().upper())
        start, end = float(p.start_s), float(p.end_s)
        if key in table.silence:
            tokens.append(_Token((SILENCE,), start, end))
        elif key in table.phonemes:
            tokens.append(_Token(table.phonemes[key], start, end))
        else:
            log.debug("unknown ARPAbet phoneme %r: its time goes to the previous phoneme", p.phoneme)
            if tokens:
                tokens[-1].end_s = end
    return tokens


def segments_from_phonemes(phonemes: Sequence[PhonemeTiming], duration_s: float) -> list[VisemeSegment]:
    """Viseme segments covering ``[0, duration_s]`` back to back: rest wherever no phoneme speaks.

    Entries may mix alphabets; each is read with its own table. Times outside ``[0, duration_s]`` are clipped.
    """
    tokens: list[_Token] = []
    run: list[PhonemeTiming] = []
    for p in [*phonemes, None]:
        if p is not None and (not run or p.alphabet == run[0].alphabet):
            run.append(p)
            continue
        if run:
            table = phoneme_table(run[0].alphabet)
            tokens.extend(_tokens_ipa(table, run) if table.alphabet == "ipa" else _tokens_arpabet(table, run))
        run = [p] if p is not None else []
    return cover(_split(tokens), duration_s)


def _split(tokens: list[_Token]) -> list[VisemeSegment]:
    """Each token's time split evenly over its visemes."""
    segments: list[VisemeSegment] = []
    for token in tokens:
        step = (token.end_s - token.start_s) / len(token.visemes)
        for k, viseme in enumerate(token.visemes):
            segments.append(VisemeSegment(viseme, token.start_s + k * step, token.start_s + (k + 1) * step))
    return segments


def cover(segments: Sequence[VisemeSegment], duration_s: float) -> list[VisemeSegment]:
    """Clip to ``[0, duration_s]``, fill gaps with rest, resolve overlaps in favour of the earlier segment,
    and merge neighbours that show the same viseme and shape."""
    out: list[VisemeSegment] = []
    cursor = 0.0
    for seg in sorted(segments, key=lambda s: s.start_s):
        start, end = max(seg.start_s, cursor), min(seg.end_s, duration_s)
        if end - start < MIN_SEGMENT_S:
            continue
        if start - cursor >= MIN_SEGMENT_S:
            _append(out, VisemeSegment(SILENCE, cursor, start))
        else:
            start = cursor
        _append(out, VisemeSegment(seg.viseme, start, end, seg.shape))
        cursor = end
    if duration_s - cursor >= MIN_SEGMENT_S or not out:
        _append(out, VisemeSegment(SILENCE, cursor, max(duration_s, cursor)))
    elif out[-1].end_s != duration_s:
        last = out[-1]
        out[-1] = VisemeSegment(last.viseme, last.start_s, duration_s, last.shape)
    return out


def _append(out: list[VisemeSegment], seg: VisemeSegment) -> None:
    if out and out[-1].viseme == seg.viseme and out[-1].shape == seg.shape:
        out[-1] = VisemeSegment(seg.viseme, out[-1].start_s, seg.end_s, seg.shape)
    else:
        out.append(seg)
