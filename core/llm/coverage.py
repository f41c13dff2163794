"""Does the knowledge base cover a question? Words no document uses, and the question the model is asked then.

A small model handed the nearest document answers from it even when the question is about something the
documents never mention ("Is there Wi-Fi on board?" → "No Wi-Fi on the ferries."). Retrieval always finds a
nearest document, so its score cannot tell. Two cheap steps can (a question about the assistant itself, "Who
made you?", is answered from the persona and not checked):

1. ``Vocabulary.unknown_words``: the question's content words (stopwords left out, words compared by their first
   letters as in ``core.words``) that appear in no document of the knowledge base, nor in the persona. Most
   questions have none, and they are answered from their document at no extra cost.
2. For a question with such a word, the model reads the prompt it is about to answer (its document, the history
   and the question; the document's evaluation is saved, and the answer reuses all of it) followed by one more
   user turn asking whether the answer is in the reference material (``CoverageQuestion``); the probability it
   gives "Yes" against "No" decides. When it is not, the reply is the coverage file's "I don't know" sentence:
   handed no document, the model answers from general knowledge instead ("Yes, the avatar can speak French.",
   measured on every one of the tuning set's twelve unanswerable questions).

The wording, the threshold, the reply and the words of a question about the assistant live in
``data/llm_coverage.json``; they were tuned on the tuning sets (``data/llm_grounding_eval.jsonl`` with its
unanswerable questions u01–u12, and ``data/llm_persona_dev.jsonl``), never on the held-out set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.config import DATA_DIR
from core.errors import ConfigError
from core.types import Passage
from core.words import WORD, content_stems

COVERAGE_PATH = DATA_DIR / "llm_coverage.json"


@dataclass(frozen=True, slots=True)
class CoverageQuestion:
    """How the model is asked whether its material answers a question, and how sure it must be."""

    ask: str
    """The user turn after the question; the model's first word is read as its verdict."""
    yes: str
    no: str
    min_yes: float
    """The share P(yes) / (P(yes) + P(no)) at or above which the material counts as answering."""
    reply: str
    """What the assistant says when it does not."""
    about_you: frozenset[str]
    """Words that make a question one about the assistant itself ("Who made you?"): its answer is in the persona,
    not in a document, so such a question is not checked."""

    def checks(self, question: str) -> bool:
        """Whether the question is one to check (it is not about the assistant itself)."""
        return not self.about_you & set(WORD.findall(question.lower()))


def load_coverage_question(path: Path = COVERAGE_PATH) -> CoverageQuestion:
    """Read and validate the coverage question.

    Raises:
        ConfigError: the file is missing or malformed, the question or the reply is empty, the answers are not two
            different words, or ``min_yes`` is not a share between 0 and 1.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        asked = CoverageQuestion(data["ask"], data["yes"], data["no"], float(data["min_yes"]), data["reply"],
                                 frozenset(data["about_you"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read the coverage question ({type(exc).__name__}: {exc})") from exc
    words = (asked.yes, asked.no)
    if not all(isinstance(text, str) and text.strip() for text in (asked.ask, asked.reply)):
        raise ConfigError(f"{path}: 'ask' and 'reply' must be non-empty text")
    if not all(isinstance(w, str) and w.isalpha() for w in words) or asked.yes == asked.no:
        raise ConfigError(f"{path}: 'yes' and 'no' must be two different words")
    if not all(isinstance(w, str) and WORD.fullmatch(w) for w in asked.about_you):
        raise ConfigError(f"{path}: 'about_you' must be a list of lower-case words")
    if not 0.0 <= asked.min_yes <= 1.0:
        raise ConfigError(f"{path}: 'min_yes' must be between 0 and 1")
    return asked


class Vocabulary:
    """The content-word stems of a knowledge base (and of the persona), for telling which words it never uses."""

    def __init__(self) -> None:
        self._stems: set[str] = set()

    def add(self, texts: Iterable[str]) -> None:
        for text in texts:
            self._stems |= content_stems(text)

    def add_documents(self, documents: Sequence[Sequence[Passage]]) -> None:
        self.add(f"{p.title}\n{p.text}" for passages in documents for p in passages)

    @property
    def known(self) -> bool:
        """Whether any document was added (without them nothing can be called unknown)."""
        return bool(self._stems)

    def unknown_words(self, question: str) -> list[str]:
        """The question's content-word stems that no added text uses, in sorted order ([] before any was added)."""
        return sorted(content_stems(question) - self._stems) if self._stems else []


def yes_share(yes_logit: float, no_logit: float) -> float:
    """P(yes) / (P(yes) + P(no)) from the two tokens' logits (a softmax over the pair)."""
    return 1.0 / (1.0 + math.exp(no_logit - yes_logit))
