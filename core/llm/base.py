"""The LLM stage's contract: ``LLMBackend.stream`` yields text deltas, then one ``Reply`` with the token usage."""

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
from core.types import ChatMessage, Reply

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
    """Base of every LLM backend.

    Responsibilities: validate the conversation and put the configured system prompt first; time and log each
    stream; turn library errors into ``BackendError`` (retryable for timeouts and transient failures); assemble the
    final ``Reply``. A backend implements ``_stream``: a generator of text deltas that returns a ``Usage``.
    """

    stage: ClassVar[str] = STAGE
    label: ClassVar[str] = ""  # how notes name the backend, e.g. "Databricks"

    def __init__(self, config: LLMConfig) -> None:
        self.config = config

    @property
    @abstractmethod
    def model(self) -> str:
        """The model (or serving endpoint) answering, as reported in each Reply."""

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str | Reply]:
        """Yield the answer's text deltas as they are generated, then one ``Reply`` as the last item.

        Raises:
            InputError: the conversation is empty, has an unknown role or does not end with the user.
            BackendError: the backend failed; ``retryable`` is set for timeouts, dropped connections, 429 and 5xx.
        """
        conversation = self._conversation(messages)
        started = time.perf_counter()
        first_token_s: float | None = None
        parts: list[str] = []
        try:
            deltas = self._stream(conversation)
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

    def complete(self, messages: Sequence[ChatMessage]) -> Reply:
        """Return the whole answer (consumes ``stream``)."""
        *_, reply = self.stream(messages)
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

    @abstractmethod
    def _stream(self, messages: list[ChatMessage]) -> StreamGen:
        """Yield text deltas for ``messages`` (system prompt first) and return the Usage."""

    def _is_retryable(self, exc: BaseException) -> bool:
        """Whether the same call may succeed later."""
        return isinstance(exc, TimeoutError)
