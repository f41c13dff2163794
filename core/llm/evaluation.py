"""Scoring answers: key facts present, invented facts, and the pass rules of scripted persona turns.

The rules are those of ``data/llm_eval/README.md``: answers are lower-cased with runs of whitespace collapsed; a
phrase is present as a substring whose letter or digit ends do not run on into a letter or digit. The tuning set
(``data/llm_grounding_eval.jsonl``) writes some alternatives as word beginnings ("transcri"), so its facts match
at the start of a word only. An answer invents when it contains a forbidden phrase, when it answers a question the
documents do not cover instead of saying so, or when it states a number or a name that appears nowhere in the
documents, the question or the system prompt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ADMITS = ("don't know", "do not know", "doesn't say", "does not say", "no information", "not mentioned",
          "doesn't mention", "no mention", "doesn't cover", "does not cover", "not covered", "not sure",
          "can't find", "cannot find", "don't have")
"""Phrases that say the documents do not cover a question (data/llm_eval/README.md)."""
NAME_FIELD = "{name}"
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?:]\s+)([A-Z][a-z]+)")


def normalise(text: str) -> str:
    """Lower-case with runs of whitespace collapsed, curly apostrophes made straight."""
    return " ".join(text.lower().replace("\u2019", "'").split())


def present(answer: str, phrase: str, *, word_start_only: bool = False) -> bool:
    """Whether ``phrase`` occurs in ``answer`` (both normalised) without running on into letters or digits; with
    ``word_start_only``, only its start is bounded (the phrase may be the beginning of a longer word)."""
    text, wanted = normalise(answer), normalise(phrase)
    before = r"(?<![a-z0-9])" if wanted[:1].isalnum() else ""
    after = r"(?![a-z0-9])" if wanted[-1:].isalnum() and not word_start_only else ""
    return re.search(before + re.escape(wanted) + after, text) is not None


@dataclass(frozen=True, slots=True)
class GroundingCase:
    """A labelled question about a knowledge base."""

    id: str
    question: str
    source: str
    facts: tuple[tuple[str, ...], ...]
    answerable: bool = True
    forbidden: tuple[str, ...] = ()
    kind: str = "direct"


@dataclass(frozen=True, slots=True)
class GroundingScore:
    """How one answer did: facts found of the case's facts, and why it counts as inventing (if it does)."""

    found: int
    total: int
    invented: tuple[str, ...] = ()

    @property
    def correct(self) -> bool:
        return self.found == self.total

    @property
    def invents(self) -> bool:
        return bool(self.invented)


def load_cases(path: Path) -> list[GroundingCase]:
    """Labelled questions from a JSON-lines file (the tuning set's lines have no id, kind or answerable)."""
    cases = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            cases.append(GroundingCase(
                id=row.get("id", f"t{i:02d}"), question=row["question"], source=row.get("source", ""),
                facts=tuple(tuple(f) for f in row["facts"]), answerable=row.get("answerable", True),
                forbidden=tuple(row.get("forbidden", ())), kind=row.get("kind", "direct"),
            ))
    return cases


def numbers(text: str) -> set[str]:
    """The numbers of ``text`` in one form: "9,50" and "9.50" alike, times as written ("23:15")."""
    found = set()
    for raw in _NUMBER.findall(text):
        value = re.sub(r",(\d{2})$", r".\1", raw).replace(",", "")
        found.add(value.rstrip("0").rstrip(".") if "." in value and ":" not in value else value)
    return found


def names(text: str) -> set[str]:
    """Capitalised words that are not the first word of a sentence: the names an answer states."""
    starts = {m.group(1) for m in _SENTENCE_START.finditer(text)}
    return {w for w in _NAME.findall(text) if w not in starts}


def unsupported(answer: str, known: str) -> list[str]:
    """Numbers and names of ``answer`` found nowhere in ``known`` (documents, question and system prompt)."""
    known_numbers, known_lower = numbers(known), known.lower()
    missing = [f"number {n}" for n in sorted(numbers(answer) - known_numbers)]
    missing += [f"name {w}" for w in sorted(names(answer)) if w.lower() not in known_lower]
    return missing


def score_case(case: GroundingCase, answer: str, known: str, *, word_start_only: bool = False) -> GroundingScore:
    """Score one answer: facts present; forbidden phrases; for an unanswerable question, whether it says so;
    numbers and names not in ``known``."""
    found = sum(any(present(answer, alt, word_start_only=word_start_only) for alt in fact) for fact in case.facts)
    invented = [f"forbidden '{phrase}'" for phrase in case.forbidden if present(answer, phrase)]
    if not case.answerable and not any(present(answer, phrase) for phrase in ADMITS):
        invented.append("answers a question the documents do not cover")
    invented += unsupported(answer, known)
    return GroundingScore(found, len(case.facts), tuple(invented))


@dataclass(frozen=True, slots=True)
class PersonaTurn:
    """A scripted turn: earlier exchanges, the question, which knowledge base, and the pass rule."""

    id: str
    category: str
    question: str
    kb: str
    history: tuple[tuple[str, str], ...] = ()
    must_include_any: tuple[str, ...] = ()
    must_not_include: tuple[str, ...] = ()
    max_words: int = 0

    def check(self, answer: str) -> str:
        """Why the answer fails the turn's rule, or "" when it passes."""
        if self.must_include_any and not any(present(answer, p) for p in self.must_include_any):
            return f"says none of {list(self.must_include_any)}"
        if bad := [p for p in self.must_not_include if present(answer, p)]:
            return f"says {bad}"
        if self.max_words and len(answer.split()) > self.max_words:
            return f"{len(answer.split())} words (at most {self.max_words})"
        return ""


def load_turns(path: Path, name: str) -> list[PersonaTurn]:
    """Scripted turns from a JSON-lines file, with ``{name}`` replaced by the assistant's name everywhere."""
    turns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line.replace(NAME_FIELD, name))
        turns.append(PersonaTurn(
            id=row["id"], category=row["category"], question=row["question"], kb=row["kb"],
            history=tuple((u, a) for u, a in row.get("history", ())),
            must_include_any=tuple(row.get("must_include_any", ())),
            must_not_include=tuple(row.get("must_not_include", ())), max_words=int(row.get("max_words", 0)),
        ))
    return turns


@dataclass
class Tally:
    """Counts for a table row."""

    cases: int = 0
    correct: int = 0
    invented: int = 0
    answerable: int = 0

    def add(self, case: GroundingCase, score: GroundingScore) -> None:
        self.cases += 1
        self.answerable += case.answerable
        self.correct += case.answerable and score.correct
        self.invented += score.invents
