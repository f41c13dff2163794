"""The LLM stage's contract: ``LLMBackend.stream`` yields text deltas, then one ``Reply`` with the token usage.

``GeneratingLLM`` is the base of the backends that run one model; ``core.llm.router.RoutedLLM`` composes them.
Every generating backend gets the same grounding: the persona's system prompt, a note on what model answers and
where it runs, and the retrieved passages quoted as data (or a note that none matched).
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from core.backend import StageBackend, backend_errors
from core.clauses import sentence_end
from core.config import LLMConfig
from core.errors import InputError, PipelineError
from core.guard import default_guard
from core.llm.number_check import NumberCheck
from core.persona import runtime_note
from core.retrieval import CONTEXT_OPEN, NO_CONTEXT_NOTE, format_context
from core.retrieval.vocabulary import NOTE_FORM
from core.types import ChatMessage, Passage, Reply

log = logging.getLogger(__name__)

STAGE = "LLM"
ROLES = frozenset({"system", "user", "assistant"})
NOTE_SEPARATOR = "\n\n"
TRAILING_NOTES = re.compile(f"(?:{re.escape(NOTE_SEPARATOR)}{NOTE_FORM.pattern})+\\Z")
"""The pipeline's notes after a question (what no document mentions, the user's mood): each one line in
parentheses (``NOTE_FORM``), after a blank line."""


def with_notes(question: str, notes: Sequence[str]) -> str:
    """The user turn: the question, then each note (one parenthesised line) after a blank line."""
    return NOTE_SEPARATOR.join([question, *(note for note in notes if note)])


def without_notes(content: str) -> str:
    """The question of a user turn made by ``with_notes``: what the user asked, for judging the question itself."""
    return TRAILING_NOTES.sub("", content)


@dataclass(frozen=True, slots=True)
class Usage:
    """What a backend reports when its stream ends: token counts and why generation stopped ("stop"/"length")."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"


StreamGen = Generator[str, bool | None, Usage]
"""What a backend's ``_stream`` is: text deltas, then the Usage as the generator's return value. The value sent back
for a delta is True when the answer is long enough: the backend then stops generating and returns its Usage."""


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

    @property
    def cpu_threads(self) -> int:
        """CPU threads of this machine the backend keeps busy while it writes (0: it runs elsewhere)."""
        return 0

    @property
    def follows_notes(self) -> bool:
        """Whether the model acts on a note after the question (e.g. "the material never mentions ..."); a very
        small one quotes passages or repeats the note instead."""
        return True

    def yes_margin(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> float | None:
        """How much more the model leans to "Yes" than to "No" as the first word of its answer to ``messages``
        (a difference of logits, read off one evaluation of the prompt, nothing generated); None when this backend
        cannot tell. The question's last note asks the yes-or-no question.

        Raises:
            InputError: as ``stream``.
            BackendError: the backend failed.
        """
        conversation = self._conversation(messages)
        started = time.perf_counter()
        with backend_errors(STAGE, self.name):
            margin = self._yes_margin(conversation, passages)
        if margin is not None:
            log.info("LLM %s (%s): leans %+.2f to yes in %.2f s", self.name, self.model, margin,
                     time.perf_counter() - started)
        return margin

    def _yes_margin(self, conversation: list[ChatMessage], passages: Sequence[Passage]) -> float | None:
        """``yes_margin`` for a checked conversation; by default the backend cannot tell."""
        return None

    def read_ahead(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> bool:
        """Evaluate now, while the user is still typing, the start of the prompt that will answer ``messages`` (its
        last user message is the unfinished question), so that the answer pays only for what is typed after it.

        Advice only: False when the backend does not read ahead, was busy, or failed (logged); it never raises.
        """
        try:
            conversation = self._conversation(messages)
            with backend_errors(STAGE, self.name):
                return self._read_ahead(conversation, passages)
        except PipelineError as exc:
            log.info("LLM %s: no reading ahead (%s)", self.name, exc)
            return False

    def _read_ahead(self, conversation: list[ChatMessage], passages: Sequence[Passage]) -> bool:
        """``read_ahead`` for a checked conversation; by default nothing is read ahead."""
        return False

    @abstractmethod
    def stream(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> Iterator[str | Reply]:
        """Yield the answer's text deltas as they are generated, then one ``Reply`` as the last item.

        ``passages`` are knowledge-base passages to answer from (best first); each backend lays them out for its
        model. Grounded turns use ``config.grounded_temperature``.

        Raises:
            InputError: the conversation is empty, has an unknown role or does not end with the user.
            BackendError: the backend failed; ``retryable`` is set for timeouts, dropped connections, 429 and 5xx.
        """

    def prepare(self, system_prompt: str, documents: Sequence[Sequence[Passage]]) -> None:
        """Do ahead of time what the first question about each document would otherwise wait for (a local model
        evaluates the prompt's beginning); by default nothing. ``documents`` are passage lists as ``stream`` gets
        them."""

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

    Responsibilities: lay the passages out in the prompt (``_prompt``: by default quoted in the system message,
    after the note on what the model runs on); end the answer after ``config.max_sentences`` sentences (a spoken
    answer is capped by speech, not cut mid-sentence by a token limit); time and log each stream; turn library
    errors into ``BackendError`` (retryable for timeouts and transient failures); cut an answer that floods one
    symbol or word (``core.guard``) or starts copying a passage delimiter; end a grounded answer at a number its
    sources don't hold (``core.llm.number_check``); assemble the final ``Reply``. A backend implements
    ``_stream``: a generator of text deltas that returns a ``Usage`` and stops early when sent True.
    """

    @property
    def runtime(self) -> str:
        """What writes the answers, for the persona, e.g. "the databricks-gpt-oss-20b model on Databricks"."""
        return f"the {self.model} model"

    def stream(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> Iterator[str | Reply]:
        prompt = self._prompt(self._conversation(messages), passages)
        temperature = self.config.grounded_temperature if passages else self.config.temperature
        started = time.perf_counter()
        first_token_s: float | None = None
        parts: list[str] = []
        said = 0  # characters of the answer yielded so far
        enough = False
        guard = default_guard()
        numbers = NumberCheck((m.content for m in prompt), guard.unsupported_number,
                              guard.unsupported_number_midway) if passages else None
        deltas = self._stream(prompt, temperature)
        try:
            while True:
                try:
                    delta = deltas.send(enough) if parts else next(deltas)
                except StopIteration as end:
                    usage: Usage = end.value
                    break
                if not delta or enough:
                    continue
                if first_token_s is None:
                    first_token_s = time.perf_counter() - started
                parts.append(delta)
                text = "".join(parts)
                remark = guard.source_remark.check(text, final=False)
                ends = [end for end in (sentence_end(text, self.config.max_sentences) or None, guard.flood_end(text),
                                        _quote_marker(text), remark.cut) if end is not None]
                if ends:
                    enough = True  # sent back with the next request: the backend stops generating
                    text = text[: min(ends)]
                text, release, cut = _screened(numbers, text, said, final=enough)
                enough = enough or cut
                parts = [text]
                release = min(release, remark.hold if remark.hold is not None else release)
                if piece := text[said:release]:
                    said = release
                    yield piece
            text = "".join(parts)
            text = text[: guard.source_remark.check(text, final=True).cut or len(text)]
            text, release, _ = _screened(numbers, text, said, final=True)
            parts = [text]
            if piece := text[said:release]:
                yield piece
        except PipelineError:
            raise
        except Exception as exc:  # classified here, wrapped into a BackendError by backend_errors just below
            with backend_errors(STAGE, self.name, retryable=self._is_retryable(exc)):
                raise
        finally:
            deltas.close()  # a stream closed early (a cancelled turn) frees the backend's resources now
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
        """The messages the model sees: the system prompt, what the model runs on, then the passages quoted as
        data (or the note that none matched), all in the system message so that the prompt's start repeats."""
        reference = format_context(passages) if passages else NO_CONTEXT_NOTE
        system = f"{conversation[0].content} {runtime_note(self.runtime)}\n\n{reference}"
        return [ChatMessage("system", system), *conversation[1:]]

    @abstractmethod
    def _stream(self, messages: list[ChatMessage], temperature: float) -> StreamGen:
        """Yield text deltas for the prompt ``messages`` (system prompt first) and return the Usage."""

    def _is_retryable(self, exc: BaseException) -> bool:
        """Whether the same call may succeed later."""
        return isinstance(exc, TimeoutError)


def _quote_marker(text: str) -> int | None:
    """Where the answer starts writing a passage delimiter copied from the prompt ("... departure. <<<END>>>" was
    measured), or None: the answer is over there, and the marker must not be spoken."""
    at = text.find(CONTEXT_OPEN)
    return at if at >= 0 else None


def _screened(numbers: NumberCheck | None, text: str, said: int, final: bool) -> tuple[str, int, bool]:
    """The answer so far after the number check (when the turn is grounded), how much of it may be said, and
    whether the check ended it."""
    if numbers is None:
        return text, len(text), False
    screened = numbers.screen(text, said, final)
    if screened.unsupported:
        log.info("LLM: ended a grounded answer at %r, a number no source holds", screened.unsupported)
    return screened.text, screened.release, bool(screened.unsupported)
