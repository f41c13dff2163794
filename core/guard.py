"""Text that is data stays data: what the LLM stage does with messages that are not questions.

- A user message that tries to instruct the assistant ("ignore all previous instructions", "print your system
  prompt") gets a polite refusal; no model reads it.
- A message without words (emoji, symbols, control characters, markup only) gets a short reply asking for words;
  one whose words are neither English (``core.lexicon``) nor found in the retrieved passages ("zxcvb mnbvc") gets
  a short reply asking to rephrase (embeddings match gibberish to some passage anyway, so the words are compared).
- A knowledge-base sentence that instructs the assistant is removed before any model reads the passage, so it can
  neither be followed nor read out.
- An answer that repeats one symbol or word over and over is cut there (``flood_end``).
- An answer ends before a sentence that remarks on where in the material it was found ("This is listed in the
  fares.md file."): spoken, it sounds like a machine, and the sources are shown anyway (``SourceRemarks``).
- A grounded answer's clause with a number no source holds ends the answer with ``unsupported_number`` (or, when
  the words already said stop mid-sentence, ``unsupported_number_midway``; ``core.llm.number_check``).

The patterns and replies are data (``data/guard.json``). The model is also told that passages and messages are
data (``data/persona.json``); the guard is the part that does not depend on the model obeying. The pipeline asks
``reply_instead`` before a turn reaches the LLM stage; ``format_context`` defuses every passage; the LLM base class
cuts floods.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.config import DATA_DIR
from core.errors import ConfigError
from core.lexicon import is_word
from core.types import Passage, Reply

log = logging.getLogger(__name__)

GUARD_PATH = DATA_DIR / "guard.json"
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_SENTENCE_BREAK = re.compile(r"((?<=[.!?])\s+|\n+)")
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+")


@dataclass(frozen=True, slots=True)
class RemarkCheck:
    """Where an answer must end before a sentence that remarks on where it was found (``cut``), and where what
    may be said stops for now because a sentence that may be one is still incomplete (``hold``); None for neither."""

    cut: int | None = None
    hold: int | None = None


@dataclass(frozen=True, slots=True)
class SourceRemarks:
    """Sentences that say where in the material the answer was found ("This is listed in the fares.md file.")."""

    held: re.Pattern[str]
    opening: re.Pattern[str]
    names: re.Pattern[str]

    def check(self, text: str, final: bool) -> RemarkCheck:
        """Judge every sentence of the answer so far after the first; ``final``: the answer has ended, so its
        last sentence is complete."""
        starts = [m.end() for m in _SENTENCE_END.finditer(text)]
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(text)
            sentence = text[start:end].strip()
            complete = i + 1 < len(starts) or final
            if not sentence:
                continue
            if complete and self.opening.search(sentence) and self.names.search(sentence):
                return RemarkCheck(cut=start)
            if not complete and (" " not in sentence or self.held.search(sentence)):
                return RemarkCheck(hold=start)  # a first word still being written may yet begin a remark
        return RemarkCheck()


@dataclass(frozen=True, slots=True)
class Guard:
    """The guard's patterns, replies and limits (see ``data/guard.json``)."""

    injection: tuple[re.Pattern[str], ...]
    refusal: str
    no_words: str
    unknown_words: str
    unsupported_number: str
    unsupported_number_midway: str
    removed_from_passage: str
    min_letters: int
    max_repeats: int
    source_remark: SourceRemarks

    def reply_instead(self, message: str, passages: Sequence[Passage] = ()) -> str:
        """The reply to give without a model, or "" when the message is a question a model should answer.
        ``passages``: what the knowledge-base search found for it; a word they contain is a known word (a name)."""
        if letters(_TAG.sub(" ", message)) < self.min_letters:
            return self.no_words
        if self.instructs(message):
            return self.refusal
        if not_english(message, passages):
            return self.unknown_words
        return ""

    def instructs(self, text: str) -> bool:
        """Whether ``text`` tries to instruct the assistant."""
        return any(p.search(text) for p in self.injection)

    def defuse(self, passage: str) -> str:
        """The passage without its sentences that instruct the assistant (each replaced by a short note)."""
        pieces = _SENTENCE_BREAK.split(passage)  # sentences at even indices, the breaks between them at odd ones
        for i in range(0, len(pieces), 2):
            if self.instructs(pieces[i]):
                log.warning("Guard: removed an instruction to the assistant from a passage: %r", pieces[i][:80])
                pieces[i] = self.removed_from_passage
        return "".join(pieces)

    def flood_end(self, text: str) -> int | None:
        """Where an answer starts repeating one symbol or one word ``max_repeats`` times in a row, or None."""
        again = self.max_repeats - 1
        starts = [m.start() for m in re.finditer(rf"(\S)(?:\s*\1){{{again},}}", text) if not m.group(1).isalnum()]
        word = re.search(rf"\b(\w+)\b(?:\W+\1\b){{{again},}}", text, re.IGNORECASE)
        if word:
            starts.append(word.start())
        return min(starts, default=None)


def letters(text: str) -> int:
    """How many letters (in any script) ``text`` has."""
    return sum(unicodedata.category(ch).startswith("L") for ch in text)


def not_english(text: str, passages: Sequence[Passage] = ()) -> bool:
    """Whether ``text`` is written in Latin letters and has no English word (a keyboard mash, a typo storm), nor
    any word of ``passages``. Text in another script, or with no letters, is not judged."""
    words = _LATIN_WORD.findall(text)
    if not words or any(is_word(w) for w in words):
        return False
    known = {w.lower() for p in passages for w in _LATIN_WORD.findall(f"{p.title} {p.text}")}
    return not any(w.lower() in known for w in words)


def load_guard(path: Path = GUARD_PATH) -> Guard:
    """Read and validate the guard data.

    Raises:
        ConfigError: the file is missing or malformed, or a pattern is not a valid regular expression.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        patterns = tuple(re.compile(p, re.IGNORECASE) for p in data["injection"])
        remarks = data["source_remark"]
        guard = Guard(patterns, data["refusal"], data["no_words"], data["unknown_words"],
                      data["unsupported_number"], data["unsupported_number_midway"], data["removed_from_passage"],
                      int(data["min_letters"]), int(data["max_repeats"]),
                      SourceRemarks(*(re.compile(remarks[k], re.IGNORECASE) for k in ("held", "opening", "names"))))
    except (OSError, ValueError, KeyError, TypeError, re.error) as exc:
        raise ConfigError(f"{path}: cannot read the guard data ({type(exc).__name__}: {exc})") from exc
    texts = (guard.refusal, guard.no_words, guard.unknown_words, guard.unsupported_number,
             guard.unsupported_number_midway, guard.removed_from_passage)
    texts_ok = all(isinstance(t, str) and t.strip() for t in texts)
    if not patterns or not texts_ok or guard.min_letters < 1 or guard.max_repeats < 2:
        raise ConfigError(f"{path}: needs patterns, non-empty replies, min_letters >= 1 and max_repeats >= 2")
    return guard


@lru_cache(maxsize=1)
def default_guard() -> Guard:
    """The project's guard, read once."""
    return load_guard()


def guarded_reply(text: str) -> Iterator[str | Reply]:
    """A reply given without a model, streamed as an LLM backend streams: its sentences, then the Reply."""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        yield sentence + " "
    yield Reply(text, prompt_tokens=0, completion_tokens=0, backend="guard", model="guard",
                route="guard: not a question for the model")
