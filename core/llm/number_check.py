"""A grounded answer states only the numbers its sources hold.

Small models answer a question their documents do not cover by inventing the specific part: a phone number, a
price, a head count. The numbers are the checkable part of such an answer, so a grounded answer is screened clause
by clause: a clause is released when it is complete and every number in it appears in the prompt (system prompt,
passages or conversation). The words of a clause that has no digit yet are released as they come, so speech can
start at a phrase break (``core.clauses``); from its first digit on, the rest of the clause waits. At the first
clause whose number appears nowhere, the answer ends there and the ``unsupported_number`` line of
``data/guard.json`` is said instead.

Numbers compare by value as written: "1,200" is 1200, "3.50" is 3.5, "9:00" is 9; each group of digits in the
sources also counts on its own, so "3 dollars 50" matches "$3.50". Numbers spelled as words are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_THOUSANDS = re.compile(r",(?=\d{3}(?!\d))")
_ZERO_FRACTION = re.compile(r"[.:]0+$")
_CLAUSE_BREAK = re.compile(r"[.!?;:…]+[\"')\]]*\s|,\s|\n")
_DIGIT = re.compile(r"\d")
_LAST_SPACE = re.compile(r".*\s", re.DOTALL)


def _value(number: str) -> str:
    """A number's written value: thousands separators and an all-zero fraction removed."""
    plain = _ZERO_FRACTION.sub("", _THOUSANDS.sub("", number))
    if "." in plain:
        plain = plain.rstrip("0")
    return plain


def numbers_in(text: str) -> list[str]:
    """The numbers written with digits in ``text``, as values."""
    return [_value(n) for n in _NUMBER.findall(text)]


@dataclass(frozen=True, slots=True)
class Screened:
    """What may be released of an answer: ``text`` (possibly cut and ended with the fallback line), the index up
    to which it may be said now, and the unsupported number that ended it ("" if none)."""

    text: str
    release: int
    unsupported: str = ""


class NumberCheck:
    """The numbers a grounded answer may state, and the screening of an answer as it grows."""

    def __init__(self, sources: Iterable[str], fallback: str) -> None:
        known: set[str] = set()
        for source in sources:
            for number in _NUMBER.findall(source):
                known.add(_value(number))
                known.update(_value(group) for group in re.findall(r"\d+", number))
        self.known = frozenset(known)
        self.fallback = fallback

    def unsupported(self, clause: str) -> str:
        """The first number of ``clause`` that no source holds, or ""."""
        return next((n for n in numbers_in(clause) if n not in self.known), "")

    def screen(self, text: str, checked: int, final: bool) -> Screened:
        """Screen ``text`` from index ``checked`` (everything before was released already). Of an incomplete last
        clause, the whole words before any digit are released; the rest is held, since a number may still come.
        ``final``: the answer is complete, so its last clause is complete too."""
        start = checked
        while start < len(text):
            clause_break = _CLAUSE_BREAK.search(text, start)
            if clause_break is None and not final:
                pending = text[start:]
                if not _DIGIT.search(pending) and (words := _LAST_SPACE.match(pending)):
                    start += words.end()
                break
            end = clause_break.end() if clause_break else len(text)
            if number := self.unsupported(text[start:end]):
                said = text[:start].rstrip()
                ended = f"{said} {self.fallback}" if said else self.fallback
                return Screened(ended, len(ended), number)
            start = end
        return Screened(text, start)
