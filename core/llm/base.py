"""The LLM stage's contract: ``LLMBackend.stream`` yields text deltas, then one ``Reply`` with the token usage.

``GeneratingLLM`` is the base of the backends that run one model; ``core.llm.router.RoutedLLM`` composes them.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from core.backend import StageBackend, backend_errors
from core.config import LLMConfig
from core.errors import InputError, PipelineError
from core.retrieval import format_context
from core.types import ChatMessage, Passage, Reply

log = logging.getLogger(__name__)

STAGE = "LLM"
ROLES = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True, slots=True)
class Usage:
    """What a backend reports when its stream ends: token counts and why generation stopped ("stop"/"length")."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"


StreamGen = Generator[str, None, Usage]
"""What a backend's ``_stream`` is: text deltas, then the Usage as the generator's return value."""


class LLMBackend(StageBackend, ABC):
    """Base of every LLM backend: what the pipeline calls (``stream``, ``complete``) and the conversation checks."""

    stage: ClassVar[str] = STAGE
    label: ClassVar[str] = ""  # how notes name the backend, e.g. "Databricks"

    def __init__(self, config: LLMConfig) -> None:
        self.config = config

    @property
    @abstractmethod
    def model(self) -> str:
        """The model (or serving endpoint) answering, as reported in each Reply."""

    @abstractmethod
    def stream(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> Iterator[str | Reply]:
        """Yield the answer's text deltas as they are generated, then one ``Reply`` as the last item.

        ``passages`` are knowledge-base passages to answer from (best first); each backend lays them out for its
        model. Grounded turns use ``config.grounded_temperature``.

        Raises:
            InputError: the conversation is empty, has an unknown role or does not end with the user.
            BackendError: the backend failed; ``retryable`` is set for timeouts, dropped connections, 429 and 5xx.
        """

    def complete(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> Reply:
        """Return the whole answer (consumes ``stream``)."""
        *_, reply = self.stream(messages, passages)
        return reply  # type: ignore[return-value]  # stream always ends with its Reply

    def _conversation(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """Check the messages and make sure the system prompt comes first."""
        if not messages:
            raise InputError("There is nothing to answer: the conversation is empty.")
        for message in messages:
            if message.role not in ROLES:
                raise InputError(f"Unknown chat role {message.role!r}; use one of: {', '.join(sorted(ROLES))}.")
        if messages[-1].role != "user" or not messages[-1].content.strip():
            raise InputError("The conversation must end with a non-empty user message.")
        if messages[0].role == "system":
            return list(messages)
        return [ChatMessage("system", self.config.system_prompt), *messages]


class GeneratingLLM(LLMBackend, ABC):
    """Base of the backends that run one model.

    Responsibilities: lay the passages out in the prompt (``_prompt``: by default quoted in the system message);
    time and log each stream; turn library errors into ``BackendError`` (retryable for timeouts and transient
    failures); assemble the final ``Reply``. A backend implements ``_stream``: a generator of text deltas that
    returns a ``Usage``.
    """

    def stream(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> Iterator[str | Reply]:
        prompt = self._prompt(self._conversation(messages), passages)
        temperature = self.config.grounded_temperature if passages else self.config.temperature
        started = time.perf_counter()
        first_token_s: float | None = None
        parts: list[str] = []
        try:
            deltas = self._stream(prompt, temperature)
            while True:
                try:
                    delta = next(deltas)
                except StopIteration as end:
                    usage: Usage = end.value
                    break
                if not delta:
                    continue
                if first_token_s is None:
                    first_token_s = time.perf_counter() - started
                parts.append(delta)
                yield delta
        except PipelineError:
            raise
        except Exception as exc:  # classified here, wrapped into a BackendError by backend_errors just below
            with backend_errors(STAGE, self.name, retryable=self._is_retryable(exc)):
                raise
        elapsed = time.perf_counter() - started
        log.info(
            "LLM %s (%s): %d prompt + %d completion tokens in %.2f s (first token %.2f s), finish=%s",
            self.name, self.model, usage.prompt_tokens, usage.completion_tokens, elapsed,
            first_token_s if first_token_s is not None else elapsed, usage.finish_reason,
        )
        yield Reply(
            text="".join(parts).strip(),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            backend=self.name,
            model=self.model,
            finish_reason="length" if usage.finish_reason == "length" else "stop",
        )

    def _prompt(self, conversation: list[ChatMessage], passages: Sequence[Passage]) -> list[ChatMessage]:
        """The messages the model sees: by default the passages quoted after the system prompt."""
        if not passages:
            return conversation
        system = ChatMessage("system", f"{conversation[0].content}\n\n{format_context(passages)}")
        return [system, *conversation[1:]]

    @abstractmethod
    def _stream(self, messages: list[ChatMessage], temperature: float) -> StreamGen:
        """Yield text deltas for the prompt ``messages`` (system prompt first) and return the Usage."""

    def _is_retryable(self, exc: BaseException) -> bool:
        """Whether the same call may succeed later."""
        return isinstance(exc, TimeoutError)
