"""Clause splitting: cut a stream of LLM text into pieces that can be spoken while the rest is generated."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

FIRST_PIECE_MIN_WORDS = 3
"""The first piece may end at a comma once it has this many words, so the avatar starts talking sooner."""

_SENTENCE_END = re.compile(r"[.!?;:…]+[\"')\]]*\s")
_COMMA = re.compile(r",\s")
_SPEAKABLE = re.compile(r"\w")
_FULL_STOP = re.compile(r"[.!?…]+[\"')\]]*\s")
_LIST_NUMBER = re.compile(r"(?:^|\n)\s*\d{1,3}\.\s$")
_ABBREVIATION = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Prof|St|vs|etc|e\.g|i\.e|approx|No)\.\s$", re.IGNORECASE)


def _cut(buffer: str, first: bool) -> int:
    """Index just past the earliest allowed break in ``buffer``, or 0 when no break is allowed yet."""
    ends = [m.end() for m in _SENTENCE_END.finditer(buffer) if not _ABBREVIATION.search(buffer[: m.end()])]
    if first:
        ends += [m.end() for m in _COMMA.finditer(buffer) if len(buffer[: m.end()].split()) >= FIRST_PIECE_MIN_WORDS]
    return min(ends, default=0)


def split_clauses(deltas: Iterable[str]) -> Iterator[str]:
    """Yield speakable pieces from text deltas as soon as each piece is complete; the rest comes at the end.

    Pieces with nothing to say (only punctuation or spaces) are dropped.
    """
    buffer = ""
    first = True
    for delta in deltas:
        buffer += delta
        while (cut := _cut(buffer, first)) > 0:
            piece, buffer = buffer[:cut].strip(), buffer[cut:]
            if _SPEAKABLE.search(piece):
                first = False
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
