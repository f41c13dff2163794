"""Clause splitting: cut a stream of LLM text into pieces that can be spoken while the rest is generated."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

PIECE_MIN_WORDS = 3
"""A piece may end at a comma, or early on before a word that opens a phrase, once it has this many words."""
PHRASE_BREAK_PIECES = 2
"""The first pieces may also end before a word that opens a phrase ("The avatar speaks | with the Piper voice").
The local model writes about 8-13 tokens a second on 2 cores, so waiting for the first full stop of a 20-word
sentence costs 1.5-2.5 s before the avatar says anything, and a long second piece leaves a gap after a short first
one; later pieces are ready long before the audio before them has played."""
PHRASE_OPENERS = frozenset(
    "about after and as at because before but by during for from if in including into on or since so than that "
    "through to until using via when where which while with without".split()
)
"""Words before which an early piece may end: prepositions, conjunctions and relative words start a phrase. "of" is
left out ("The cost | of a turn" sounds cut off), and so is a break right after another opener or an article."""
NO_BREAK_AFTER = PHRASE_OPENERS | {"a", "an", "the"}

_SENTENCE_END = re.compile(r"[.!?;:…]+[\"')\]]*\s")
_COMMA = re.compile(r",\s")
_PHRASE_OPENER = re.compile(r"\s(?=([A-Za-z]+)\s)")
_SPEAKABLE = re.compile(r"\w")
_FULL_STOP = re.compile(r"[.!?…]+[\"')\]]*\s")
_LIST_NUMBER = re.compile(r"(?:^|\n)\s*\d{1,3}\.\s$")
_ABBREVIATION = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Prof|St|vs|etc|e\.g|i\.e|approx|No)\.\s$", re.IGNORECASE)


def _cut(buffer: str, piece: int) -> int:
    """Index just past the earliest allowed break in ``buffer`` (the ``piece``-th piece, from 0), or 0 when no break
    is allowed yet."""
    ends = [m.end() for m in _SENTENCE_END.finditer(buffer) if not _ABBREVIATION.search(buffer[: m.end()])]
    ends += [m.end() for m in _COMMA.finditer(buffer) if len(buffer[: m.end()].split()) >= PIECE_MIN_WORDS]
    if piece < PHRASE_BREAK_PIECES:
        for m in _PHRASE_OPENER.finditer(buffer):
            before = buffer[: m.start()].split()
            if (m.group(1).lower() in PHRASE_OPENERS and len(before) >= PIECE_MIN_WORDS
                    and before[-1].lower() not in NO_BREAK_AFTER):
                ends.append(m.end())
    return min(ends, default=0)


def split_clauses(deltas: Iterable[str]) -> Iterator[str]:
    """Yield speakable pieces from text deltas as soon as each piece is complete; the rest comes at the end.

    Pieces with nothing to say (only punctuation or spaces) are dropped.
    """
    buffer = ""
    pieces = 0
    for delta in deltas:
        buffer += delta
        while (cut := _cut(buffer, pieces)) > 0:
            piece, buffer = buffer[:cut].strip(), buffer[cut:]
            if _SPEAKABLE.search(piece):
                pieces += 1
                yield piece
    tail = buffer.strip()
    if _SPEAKABLE.search(tail):
        yield tail


def sentence_end(text: str, sentences: int) -> int:
    """Index just past the end of the ``sentences``-th complete sentence of ``text`` (its full stop followed by a
    space), or 0 when ``text`` has fewer. Abbreviations such as "e.g." and list numbers ("1. ") end no sentence."""
    ends = [m.end() for m in _FULL_STOP.finditer(text)
            if not _ABBREVIATION.search(text[: m.end()]) and not _LIST_NUMBER.search(text[: m.end()])]
    return ends[sentences - 1] if sentences > 0 and len(ends) >= sentences else 0
