"""The model router: simple questions to the small model, complex ones to the large, with a same-turn fallback.

``RoutingRule.decide(question, passages)`` is a short, explainable rule (length, question type, retrieval
confidence) read from ``data/router/rules.json``. ``RoutedLLM`` is the LLM backend the pipeline uses: it routes each
turn, streams the chosen backend, and when a remote backend fails before its first word it answers with the local
model in the same turn. The final ``Reply`` says which model answered (``backend``, ``model``), why (``route``) and
what went wrong (``notice``); a failure after words were spoken ends the reply there instead of repeating it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from core.config import DATA_DIR, LLMConfig
from core.errors import BackendError, ConfigError
from core.llm.base import LLMBackend, without_notes
from core.llm.chat_completions import estimate_tokens
from core.types import ChatMessage, Passage, Reply
from core.words import content_stems

log = logging.getLogger(__name__)

RULES_PATH = DATA_DIR / "router" / "rules.json"
TIERS = ("small", "large")


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Which tier answers a question ("small" or "large") and the rule that decided it, in words."""

    tier: str
    reason: str


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """The routing rule's thresholds and cue phrases (see ``data/router/rules.json`` for the order of checks)."""

    max_simple_words: int
    confident_score: float
    max_open_content_words: int
    complex_cues: tuple[str, ...]

    @classmethod
    def load(cls, path: Path = RULES_PATH) -> RoutingRule:
        """Read and validate the rule.

        Raises:
            ConfigError: the file is missing, not JSON, or a field is missing or of the wrong type.
        """
        try:
            data = {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if not k.startswith("_")}
            rule = cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: cannot read the routing rule ({type(exc).__name__}: {exc})") from exc
        numbers_ok = isinstance(rule.max_simple_words, int) and isinstance(rule.max_open_content_words, int)
        numbers_ok = numbers_ok and isinstance(rule.confident_score, (int, float))
        cues = rule.complex_cues
        cues_ok = isinstance(cues, list) and all(isinstance(c, str) and c.strip() for c in cues)
        if not (numbers_ok and cues_ok):
            raise ConfigError(f"{path}: word limits must be whole numbers, confident_score a number, "
                              "complex_cues a list of phrases")
        return replace(rule, complex_cues=tuple(c.lower() for c in rule.complex_cues))

    def decide(self, question: str, passages: Sequence[Passage] = ()) -> RouteDecision:
        """Route one question, given the knowledge-base passages found for it (best first)."""
        words = len(question.split())
        if words > self.max_simple_words:
            return RouteDecision("large", f"long question ({words} words)")
        lowered = " ".join(question.lower().split())
        for cue in self.complex_cues:
            if re.search(rf"(?<!\w){re.escape(cue)}(?:e?s)?(?!\w)", lowered):  # plurals count
                return RouteDecision("large", f"asks for reasoning ('{cue}')")
        top = max((p.score for p in passages), default=None)  # a document's context comes in document order
        if top is not None and top >= self.confident_score:
            return RouteDecision("small", f"the knowledge base covers it (score {top:.2f})")
        content = len(content_stems(question))
        if content > self.max_open_content_words:
            found = "no knowledge-base match" if top is None else f"weak knowledge-base match ({top:.2f})"
            return RouteDecision("large", f"open question ({content} content words, {found})")
        return RouteDecision("small", f"short, simple question ({words} words)")


def failure_summary(exc: BackendError) -> str:
    """What went wrong, in a few words safe to show and log: no server text, URLs or credentials."""
    cause = exc.__cause__
    if "timeout" in type(cause).__name__.lower() or "timed out" in str(exc).lower():
        return "timed out"
    status = getattr(cause, "status", None) or getattr(cause, "status_code", None)
    if status is None:
        found = re.search(r"\bHTTP (\d{3})\b", str(exc))
        status = found.group(1) if found else None
    return f"failed (HTTP {status})" if status else f"failed ({type(cause or exc).__name__})"


class RoutedLLM(LLMBackend):
    """Routes each turn to the small or the large backend and falls back to the local model when a remote one fails.

    Responsibilities: decide the tier (``RoutingRule``); stream the chosen backend; on a failure before the first
    delta, answer with the local model in the same turn and say so in ``Reply.notice``; on a failure after some
    text, end the reply with what was said (``finish_reason="error"``) rather than speak it twice. The local fallback
    is built on first need unless a tier already is the local model. Backend errors are logged by type and HTTP
    status only, so no credential or server message reaches the logs or the user.
    """

    name: ClassVar[str] = "router"
    label: ClassVar[str] = "router"

    def __init__(
        self,
        config: LLMConfig,
        small: LLMBackend,
        large: LLMBackend,
        make_local: Callable[[], LLMBackend],
        rule: RoutingRule | None = None,
    ) -> None:
        super().__init__(config)
        self.small = small
        self.large = large
        self.rule = rule or RoutingRule.load()
        self._make_local = make_local
        self._local = next((b for b in (small, large) if b.name == "local"), None)
        self._local_lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.small.model if self.small is self.large else f"{self.small.model} | {self.large.model}"

    @property
    def cpu_threads(self) -> int:
        return max(self.small.cpu_threads, self.large.cpu_threads)

    @property
    def follows_notes(self) -> bool:
        return self.small.follows_notes and self.large.follows_notes

    @property
    def description(self) -> str:
        if self.small is self.large:
            return f"{self.small.description} (small and large)"
        return f"small: {self.small.description}; large: {self.large.description}"

    def yes_margin(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> float | None:
        """The judgement of the model that would answer (a failure counts as no judgement: it is only advice)."""
        conversation = self._conversation(messages)
        try:
            return self._route(conversation, passages)[1].yes_margin(conversation, passages)
        except BackendError as exc:
            log.warning("LLM router: no yes-or-no judgement (%s)", failure_summary(exc))
            return None

    def _read_ahead(self, conversation: list[ChatMessage], passages: Sequence[Passage]) -> bool:
        """The model that would answer the question as typed so far reads ahead."""
        return self._route(conversation, passages)[1].read_ahead(conversation, passages)

    def _route(self, conversation: list[ChatMessage], passages: Sequence[Passage]) -> tuple[RouteDecision, LLMBackend]:
        """Which tier's model answers this conversation, and why (notes after the question do not count)."""
        decision = self.rule.decide(without_notes(conversation[-1].content), passages)
        return decision, self.large if decision.tier == "large" else self.small

    def stream(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> Iterator[str | Reply]:
        conversation = self._conversation(messages)
        decision, chosen = self._route(conversation, passages)
        only = ", the only model configured" if self.small is self.large else ""
        route = f"{decision.tier} ({chosen.description}{only}): {decision.reason}"
        log.info("LLM router: %s -> %s", route, chosen.description)
        notice = ""
        backend = chosen
        while True:
            said: list[str] = []
            try:
                with contextlib.closing(backend.stream(conversation, passages)) as stream:
                    for item in stream:
                        if isinstance(item, Reply):
                            yield replace(item, route=route, notice="; ".join(filter(None, (notice, item.notice))))
                            return
                        said.append(item)
                        yield item
            except BackendError as exc:
                failure = f"{backend.label or backend.name} {failure_summary(exc)}"
                if said:
                    log.warning("LLM router: %s after %d deltas; ending the reply there", failure, len(said))
                    yield self._partial(backend, conversation, said, route, f"{failure}; the answer is incomplete")
                    return
                fallback = self._fallback_for(backend)
                if fallback is None:
                    raise
                log.warning("LLM router: %s; answering with the local model", failure)
                notice = f"{failure}; answered with the local model"
                route = f"{route}; fallback: local"
                backend = fallback

    def prepare(self, system_prompt: str, documents: Sequence[Sequence[Passage]]) -> None:
        for backend in dict.fromkeys((self.small, self.large)):
            backend.prepare(system_prompt, documents)

    def _fallback_for(self, failed: LLMBackend) -> LLMBackend | None:
        """The local model, unless it is what failed (or cannot be built, which is logged)."""
        if failed.name == "local":
            return None
        with self._local_lock:
            if self._local is None:
                try:
                    self._local = self._make_local()
                except BackendError as exc:
                    log.warning("LLM router: no local fallback (%s)", failure_summary(exc))
                    return None
            return self._local

    @staticmethod
    def _partial(backend: LLMBackend, conversation: list[ChatMessage], said: list[str], route: str, notice: str
                 ) -> Reply:
        """The Reply for an answer cut off by a failure: what was said, with estimated token counts."""
        prompt = estimate_tokens("".join(m.content for m in conversation))
        return Reply("".join(said).strip(), prompt, len(said), backend.name, backend.model, "error", route, notice)
