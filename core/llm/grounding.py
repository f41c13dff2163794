"""Grounding for a small model: pick the passage sentences that answer a question and put them right before it.

SmolLM2-135M cannot read three long passages in a system message and find the answer (measured: it invents one).
It does far better with one or two sentences placed in the user turn next to the question, after an example of
answering from a passage. ``best_sentences`` ranks a passage's sentences by how many of the question's content
words (crudely stemmed) they contain; ``grounded_question`` builds that user turn; ``extractive_answer`` states the
best sentences themselves, for when even that is too much for the model. Words are compared as ``core.words``
does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.config import DATA_DIR
from core.errors import ConfigError
from core.types import ChatMessage, Passage
from core.words import content_stems

GROUNDING_PATH = DATA_DIR / "llm_grounding.json"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])")
_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|[-*+]\s+|\d{1,3}[.)]\s+)")
_HEADING = re.compile(r"^\s*#{1,6}\s+")


@dataclass(frozen=True, slots=True)
class GroundedExample:
    """A few-shot turn that shows the local model how to answer from a passage."""

    passage: str
    source: str
    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class GroundingData:
    """The grounded examples from ``data/llm_grounding.json``."""

    examples: tuple[GroundedExample, ...]


def load_grounding(path: Path = GROUNDING_PATH) -> GroundingData:
    """Read and validate the grounding data file.

    Raises:
        ConfigError: the file is missing or malformed (an example with other fields, or an empty one).
    """
    try:
        examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read the grounding data ({type(exc).__name__}: {exc})") from exc
    fields = set(GroundedExample.__slots__)
    parsed = []
    for i, example in enumerate(examples if isinstance(examples, list) else [None]):
        if not isinstance(example, dict) or set(example) != fields:
            raise ConfigError(f"{path}: example {i} must have exactly the fields {sorted(fields)}")
        if not all(isinstance(v, str) and v.strip() for v in example.values()):
            raise ConfigError(f"{path}: example {i} has an empty or non-text field")
        parsed.append(GroundedExample(**example))
    return GroundingData(tuple(parsed))


@lru_cache(maxsize=1)
def grounding_data() -> GroundingData:
    """The default grounding data, read once."""
    return load_grounding()


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage, markup removed; a heading is a sentence, a list item (even wrapped) starts a new one."""
    blocks: list[list[str]] = [[]]
    for raw in text.splitlines():
        line = _MARKUP.sub("", raw).strip()
        if not line or _MARKUP.match(raw):
            blocks.append([])  # a blank line, heading or list item ends the block before it
        if line:
            blocks[-1].append(line)
        if _HEADING.match(raw):
            blocks.append([])
    return [s.strip() for block in blocks for s in _SENTENCE_END.split(" ".join(block)) if s.strip()]


def best_sentences(question: str, text: str, limit: int) -> list[str]:
    """Up to ``limit`` sentences of ``text`` sharing most content words with ``question``, best first.

    A sentence is chosen only if it shares at least half as many words as the best one (and at least one); ties go
    to the earlier sentence.
    """
    wanted = content_stems(question)
    sentences = split_sentences(text)
    scores = [len(wanted & content_stems(s)) for s in sentences]
    floor = max(1, (max(scores, default=0) + 1) // 2)
    ranked = sorted((i for i, score in enumerate(scores) if score >= floor), key=lambda i: (-scores[i], i))
    return [sentences[i] for i in ranked[:limit]]


def passage_sentences(question: str, passage: Passage, limit: int) -> list[str]:
    """The passage's best sentences for ``question``; when none shares a word with it but the passage's heading
    does (a section titled "Lip-sync" answers "How does the lip-sync work?"), the section's first sentences."""
    chosen = best_sentences(question, passage.text, limit)
    if not chosen and content_stems(question) & content_stems(passage.title):
        chosen = split_sentences(passage.text)[:limit]
    return chosen


def question_overlap(question: str, text: str) -> float:
    """Share of the question's content words found in ``text`` (0 when the question has none)."""
    wanted = content_stems(question)
    return len(wanted & content_stems(text)) / len(wanted) if wanted else 0.0


def grounded_question(question: str, passages: Sequence[Passage], sentences: int) -> str:
    """The user turn for a small model: each passage cut to its best sentences, quoted, then the question.

    A passage with no sentence sharing a word with the question is left out; with none left, the plain question.
    """
    quotes = []
    for passage in passages:
        chosen = passage_sentences(question, passage, sentences)
        if chosen:
            quotes.append(f"Use this passage from {passage.citation()}: {' '.join(chosen)}")
    return "\n".join([*quotes, "", f"Question: {question}"]) if quotes else question


def example_turns(examples: Sequence[GroundedExample]) -> list[ChatMessage]:
    """The grounded few-shot examples as user/assistant turns in the same layout as ``grounded_question``."""
    turns = []
    for example in examples:
        user = f"Use this passage from {example.source}: {example.passage}\n\nQuestion: {example.question}"
        turns += [ChatMessage("user", user), ChatMessage("assistant", example.answer)]
    return turns


def extractive_answer(question: str, passage: Passage, sentences: int) -> str:
    """An answer made only of the passage's best sentences, introduced by where they come from; "" if none match.

    E.g. "According to the privacy page: Your voice recording is never uploaded: it is transcribed locally, ...".
    """
    chosen = passage_sentences(question, passage, sentences)
    if not chosen:
        return ""
    page = Path(passage.source).stem.replace("_", " ").replace("-", " ")
    return " ".join([f"According to the {page} page: {chosen[0]}", *chosen[1:]])
