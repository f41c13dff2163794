"""A grounded answer states only the numbers its sources hold.

Small models answer a question their documents do not cover by inventing the specific part: a phone number, a
price, a head count. The numbers are the checkable part of such an answer, so a grounded answer is screened clause
by clause: a clause is released when it is complete and every number in it appears in the prompt (system prompt,
passages or conversation). An incomplete clause is released word by word as long as each number in it is
finished and found, so speech can start at a phrase break (``core.clauses``); a number that may still grow ("1"
before ",200") holds the rest. At the first number that appears nowhere, the answer ends before the words that
hold it and the ``unsupported_number`` line of ``data/guard.json`` is said instead; when the words already said
stop mid-sentence ("The support line is"), its ``unsupported_number_midway`` line corrects them ("... sorry, I
don't know that exactly").

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
_NUMBER_DONE = re.compile(r"[^\d.,:]|[.,:][^\d]")
"""What follows a number that is finished: a character that cannot continue it, or a separator not followed by a
digit ("9." then a space); at the end of the text so far, or after a bare separator, it may still grow."""
_LAST_SPACE = re.compile(r".*\s", re.DOTALL)
_SENTENCE_DONE = re.compile(r"[.!?…][\"')\]]*$")
_PHRASE_PUNCTUATION = ",;: "


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

    def __init__(self, sources: Iterable[str], fallback: str, midway: str) -> None:
        known: set[str] = set()
        for source in sources:
            for number in _NUMBER.findall(source):
                known.add(_value(number))
                known.update(_value(group) for group in re.findall(r"\d+", number))
        self.known = frozenset(known)
        self.fallback = fallback
        self.midway = midway

    def unsupported(self, clause: str) -> str:
        """The first number of ``clause`` that no source holds, or ""."""
        return next((n for n in numbers_in(clause) if n not in self.known), "")

    def screen(self, text: str, checked: int, final: bool) -> Screened:
        """Screen ``text`` from index ``checked`` (everything before was released already). Of an incomplete last
        clause, the whole words up to a number that may still grow are released (see ``_incomplete``).
        ``final``: the answer is complete, so its last clause is complete too."""
        start = checked
        while start < len(text):
            clause_break = _CLAUSE_BREAK.search(text, start)
            if clause_break is None and not final:
                released, number = self._incomplete(text[start:])
                if number:
                    return self._ended(text, checked, start, number)
                start += released
                break
            end = clause_break.end() if clause_break else len(text)
            if number := self.unsupported(text[start:end]):
                return self._ended(text, checked, start, number)
            start = end
        return Screened(text, start)

    def _incomplete(self, pending: str) -> tuple[int, str]:
        """How much of an incomplete clause may be said now: its whole words up to the first number that may still
        grow ("1" before ",200"); and the first finished number in it that no source holds ("" if none)."""
        limit = len(pending)
        for match in _NUMBER.finditer(pending):
            if not _NUMBER_DONE.match(pending, match.end()):
                limit = match.start()
                break
            if number := self.unsupported(match.group()):
                return 0, number
        words = _LAST_SPACE.match(pending[:limit])
        return (words.end() if words else 0), ""

    def _ended(self, text: str, checked: int, start: int, number: str) -> Screened:
        """The answer ended before the unreleased part that holds ``number``, with the fallback line (its midway
        form after words that stop mid-sentence); what was released before ``checked`` stays as it was."""
        said = text[:start].rstrip()
        if not said:
            ended = self.fallback
        elif _SENTENCE_DONE.search(said):
            ended = f"{said} {self.fallback}"
        else:
            kept = said.rstrip(_PHRASE_PUNCTUATION)
            ended = (kept if len(kept) >= checked else text[:checked]) + self.midway
        return Screened(ended, len(ended), number)
