"""The last resort when no language model can start: answers that quote the knowledge base, and say why.

If the local model cannot load on this machine (a llama.cpp build that crashes on this CPU, missing weights) and no
cloud model is configured, the app still starts and every turn still gets a spoken answer: the best sentences of
the best passage, or, when nothing matches, a sentence saying what is wrong. The status panel and each answer's
notice carry the reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import ClassVar

from core.config import LLMConfig
from core.llm.base import LLMBackend
from core.llm.grounding import extractive_answer, split_sentences
from core.retrieval import model_text
from core.types import ChatMessage, Passage, Reply

QUOTED_SENTENCES = 2
NOTHING_TO_QUOTE = ("My language model could not start on this computer, so I can only read from my documents, and "
                    "none of them covers that. Ask me about something they describe.")


class KnowledgeBaseQuotes(LLMBackend):
    """Answers without a model: the knowledge base's best sentences for the question, or an explanation."""

    name: ClassVar[str] = "quotes"
    label: ClassVar[str] = "knowledge-base quotes"

    def __init__(self, config: LLMConfig, reason: str) -> None:
        super().__init__(config)
        self.reason = reason
        self.note = reason

    @property
    def model(self) -> str:
        return "none"

    @property
    def description(self) -> str:
        return "no language model: answers quote the knowledge base"

    def stream(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> Iterator[str | Reply]:
        question = self._conversation(messages)[-1].content
        ranked = sorted(passages, key=lambda p: -p.score)
        quotes = (extractive_answer(question, replace(p, text=model_text(p.text)), QUOTED_SENTENCES) for p in ranked)
        text = next((q for q in quotes if q), NOTHING_TO_QUOTE)
        for sentence in split_sentences(text):
            yield sentence + " "
        yield Reply(text, 0, 0, self.name, self.model, notice=f"No language model is running: {self.reason}")
