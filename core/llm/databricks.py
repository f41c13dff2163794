"""The Databricks LLM: a model serving endpoint, streamed through the workspace's OpenAI-compatible route."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import ClassVar

from core.backend import backend_errors
from core.config import LLMConfig
from core.llm.base import STAGE, StreamGen, Usage
from core.llm.chat_completions import ChatCompletionsLLM, HTTPStatusError, content_text, estimate_tokens
from core.types import ChatMessage

log = logging.getLogger(__name__)


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

    @property
    def runtime(self) -> str:
        return f"the {self.endpoint} model on Databricks Model Serving"

    def _stream(self, messages: list[ChatMessage], temperature: float) -> StreamGen:
        if self._chat_route:
            url = f"{self._client.config.host.rstrip('/')}/serving-endpoints/chat/completions"
            try:
                headers = self._client.config.authenticate()
                return (yield from self._stream_sse(url, headers, self._body(messages, self.endpoint, temperature)))
            except HTTPStatusError as exc:
                if exc.status != 404:
                    raise
                log.warning("LLM databricks: no OpenAI-compatible route (%s); using non-streaming queries", exc)
                self._chat_route = False
        return (yield from self._query(messages, temperature))

    def _query(self, messages: list[ChatMessage], temperature: float) -> StreamGen:
        from databricks.sdk.service.serving import ChatMessage as ServingMessage
        from databricks.sdk.service.serving import ChatMessageRole

        response = self._client.serving_endpoints.query(
            name=self.endpoint,
            messages=[ServingMessage(role=ChatMessageRole(m.role), content=m.content) for m in messages],
            max_tokens=self.config.max_tokens,
            temperature=temperature,
        )
        if not response.choices or response.choices[0].message is None:
            raise RuntimeError(f"endpoint {self.endpoint} returned no choices")
        text = content_text(response.choices[0].message.content)
        yield text
        prompt = response.usage.prompt_tokens if response.usage else None
        completion = response.usage.completion_tokens if response.usage else None
        prompt = prompt if prompt is not None else estimate_tokens("".join(m.content for m in messages))
        completion = completion if completion is not None else estimate_tokens(text)
        # The SDK drops the snake_case finish_reason of the response; a full token budget means it was cut off.
        return Usage(prompt, completion, "length" if completion >= self.config.max_tokens else "stop")

    def _is_retryable(self, exc: BaseException) -> bool:
        from databricks.sdk.errors import DeadlineExceeded, InternalError, TemporarilyUnavailable, TooManyRequests

        transient = (DeadlineExceeded, InternalError, TemporarilyUnavailable, TooManyRequests)
        return isinstance(exc, transient) or super()._is_retryable(exc)
