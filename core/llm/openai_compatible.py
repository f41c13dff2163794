"""The OpenAI-compatible LLM: any server offering ``POST {base}/chat/completions`` with SSE streaming."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import urlsplit

from core.config import LLMConfig
from core.errors import ConfigError
from core.llm.base import StreamGen
from core.llm.chat_completions import ChatCompletionsLLM
from core.types import ChatMessage


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
    def runtime(self) -> str:
        return f"the {self.model} model behind an OpenAI-compatible API"

    @property
    def description(self) -> str:
        return f"OpenAI-compatible {self.model} at {urlsplit(self.base_url).hostname}"

    def _stream(self, messages: list[ChatMessage], temperature: float) -> StreamGen:
        headers = {"Authorization": f"Bearer {self.config.openai_api_key}"} if self.config.openai_api_key else {}
        body = {**self._body(messages, self.model, temperature), "stream_options": {"include_usage": True}}
        return (yield from self._stream_sse(f"{self.base_url}/chat/completions", headers, body))
