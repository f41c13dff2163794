"""What the HTTP LLM backends share: the OpenAI chat-completions request, its SSE stream, and error triage."""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from core.config import LLMConfig
from core.llm.base import GeneratingLLM, StreamGen, Usage
from core.types import ChatMessage

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # estimate used only when a server reports no usage
ERROR_DETAIL_CHARS = 300
RETRYABLE_STATUS = frozenset({408, 429})  # and every 5xx


class HTTPStatusError(Exception):
    """An HTTP error response from a model server; ``status`` decides whether a retry may help."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


def content_text(content: Any) -> str:
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


def estimate_tokens(text: str) -> int:
    """A rough token count (about 4 characters per token) for servers that report no usage."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


class ChatCompletionsLLM(GeneratingLLM, ABC):
    """Shared by backends whose server speaks the OpenAI chat-completions protocol over HTTP.

    Responsibilities: build the request body, read the SSE stream (``data:`` lines up to ``[DONE]``), take the
    token usage from the stream (or estimate it when the server sends none), and classify failures as retryable.
    """

    def __init__(self, config: LLMConfig) -> None:
        super().__init__(config)
        import requests

        self._session = requests.Session()

    def _body(self, messages: list[ChatMessage], model: str, temperature: float) -> dict[str, Any]:
        return {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": self.config.max_tokens,
            "temperature": temperature,
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
        timeout = self.config.timeout_s
        enough = False
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
                    text = content_text((choice.get("delta") or {}).get("content"))
                    if text:
                        chunks += 1
                        enough = bool((yield text))
                    finish = choice.get("finish_reason") or finish
                if enough:
                    break  # closing the response ends the server's generation; its usage never arrives
        if usage:
            return Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", chunks)), finish)
        log.debug("LLM %s: the server sent no usage; estimating prompt tokens from characters", self.name)
        prompt = "".join(m["content"] for m in body["messages"])
        return Usage(estimate_tokens(prompt), chunks, finish)

    def _is_retryable(self, exc: BaseException) -> bool:
        import requests

        if isinstance(exc, HTTPStatusError):
            return exc.status in RETRYABLE_STATUS or exc.status >= 500
        # A read timeout in the middle of a stream surfaces from requests as a ConnectionError.
        return isinstance(exc, (TimeoutError, requests.Timeout, requests.ConnectionError))
