"""What the model is told after a question, from the knowledge base's wording; and the speech hint from it.

A request to act gets ``core.action_requests``' note; a grounded question with topic words no document uses gets the
coverage note (``core.retrieval.vocabulary``), unless the model, asked first, finds the answer in its material
anyway; a model that cannot follow notes gets the matching reply to say instead. The knowledge base's words and
headings are read once per fingerprint of the retrieval backend: the vocabulary for the coverage check, the headings
for Whisper's prompt (``core.asr.hint``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.action_requests import action_requests
from core.asr.hint import speech_hint
from core.retrieval import RetrievalBackend
from core.retrieval.vocabulary import Vocabulary, coverage_rules
from core.types import Passage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KnowledgeWords:
    """What the knowledge base's wording tells the stages: which words no document uses, and the hint that
    prepares the speech recogniser for its terms."""

    vocabulary: Vocabulary
    speech_hint: str


class QuestionNotes:
    """Notes after a question and the speech hint, for the knowledge base ``retrieval()`` searches (called each
    time: the pipeline creates its backend on first use)."""

    def __init__(self, retrieval: Callable[[], RetrievalBackend], hint_words: int) -> None:
        self._retrieval = retrieval
        self._hint_words = hint_words
        self._words: tuple[str, KnowledgeWords] | None = None
        self._lock = threading.Lock()

    def words(self) -> KnowledgeWords:
        """The knowledge base's words and headings, rebuilt when its fingerprint changes (a backend that cannot
        list its documents gives none: no word is unmentioned, no hint)."""
        retrieval = self._retrieval()
        fingerprint = retrieval.fingerprint()
        with self._lock:
            if self._words is None or self._words[0] != fingerprint:
                passages = [p for document in retrieval.documents() for p in document]
                self._words = (fingerprint, KnowledgeWords(
                    Vocabulary(f"{p.title}\n{p.text}" for p in passages),
                    speech_hint((p.title for p in passages), self._hint_words),
                ))
            return self._words[1]

    def note(self, question: str, passages: Sequence[Passage], *, system_prompt: str, follows_notes: bool,
             judge: Callable[[str], float | None] = lambda check: None) -> tuple[str, str]:
        """The note to put after the question, or, for a model that cannot follow a note, the reply to give
        instead: for a request to act, else for a grounded question whose words the knowledge base does not use
        unless ``judge`` (the model's lean to "Yes" with a check after the question, or None) says that the
        material still answers it; ("", "") when none applies."""
        requests = action_requests()
        if requests.matches(question):
            log.info("The question asks the assistant to act")
            return (requests.note, "") if follows_notes else ("", requests.reply)
        rules = coverage_rules()
        if not passages or max(p.score for p in passages) >= rules.paraphrase_score or rules.is_statement(question):
            return "", ""  # ungrounded, close enough to a passage to be its paraphrase, or a statement
        vocabulary = self.words().vocabulary
        words = vocabulary.unmentioned(question, also_known=(system_prompt,))
        if not words:
            return "", ""
        if not follows_notes:
            log.info("Coverage: the knowledge base never uses %s", ", ".join(words))
            return "", vocabulary.reply(words)
        margin = judge(vocabulary.check(words))
        if margin is not None and margin >= vocabulary.rules.still_answers_margin:
            log.info("Coverage: the knowledge base never uses %s, but the model finds the answer (%+.2f)",
                     ", ".join(words), margin)
            return "", ""
        log.info("Coverage: the knowledge base never uses %s", ", ".join(words))
        return vocabulary.note(words), ""
