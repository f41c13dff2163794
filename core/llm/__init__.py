"""The LLM stage: stream a short spoken-style answer from a local GGUF model, Databricks or an OpenAI-compatible API.

``LLMBackend.stream(messages, passages)`` yields text deltas as they are generated and, last, one ``Reply`` with the
whole text, its token usage, the route taken and any notice; ``complete(...)`` returns just the Reply.
``create_llm(config)`` builds a ``RoutedLLM``: simple questions go to the small backend (``AVATAR_LLM_SMALL``),
complex ones to the large (``AVATAR_LLM_LARGE``), and a failing remote backend falls back to the local model in the
same turn. Backends are named by descriptors: "auto" (Databricks when its credentials are in the environment, then
an OpenAI-compatible server when OPENAI_BASE_URL is set, else the local model), "local", "databricks",
"databricks/<endpoint>", "openai" or "openai/<model>". ``spoken_text`` turns a markdown answer into what the TTS
says. Backends import their libraries (llama_cpp, databricks.sdk, requests) only when constructed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from core.backend import pick_backend
from core.config import AppConfig, LLMConfig
from core.errors import BackendError, PipelineError
from core.llm.base import STAGE, GeneratingLLM, LLMBackend, Usage
from core.llm.chat_completions import ChatCompletionsLLM
from core.llm.databricks import DatabricksLLM
from core.llm.local import LocalGGUFLLM, load_examples
from core.llm.openai_compatible import OpenAICompatibleLLM
from core.llm.quotes import KnowledgeBaseQuotes
from core.llm.router import RouteDecision, RoutedLLM, RoutingRule
from core.llm.spoken import spoken_text

__all__ = [
    "LLM_BACKENDS",
    "DatabricksLLM",
    "GeneratingLLM",
    "KnowledgeBaseQuotes",
    "LLMBackend",
    "LocalGGUFLLM",
    "OpenAICompatibleLLM",
    "RouteDecision",
    "RoutedLLM",
    "RoutingRule",
    "Usage",
    "create_backend",
    "create_llm",
    "load_examples",
    "spoken_text",
]

log = logging.getLogger(__name__)

LLM_BACKENDS: dict[str, type[GeneratingLLM]] = {
    "local": LocalGGUFLLM,
    "databricks": DatabricksLLM,
    "openai": OpenAICompatibleLLM,
}
NOTE_CHARS = 160
AUTO_PREFERRED: tuple[type[ChatCompletionsLLM], ...] = (DatabricksLLM, OpenAICompatibleLLM)


def _short(reason: str) -> str:
    """The gist of a startup error for the status line: databricks-sdk appends a long "Config: ..." dump."""
    return reason.split(". Config:")[0].splitlines()[0][:NOTE_CHARS]


def create_llm(config: AppConfig) -> RoutedLLM:
    """Build the router over the small and large backends (``config.llm.small``/``large``; by default both are
    ``config.llm.backend``, i.e. "auto", so offline both are the local model and the status line says so).

    Raises:
        ConfigError: a descriptor names an unknown backend or lacks a setting it needs.
        BackendError: a named backend (or the local model under "auto") cannot start.
    """
    llm = config.llm
    small_name = llm.small or llm.backend
    large_name = llm.large or small_name
    small = _startable(llm, small_name)
    large = small if large_name == small_name else _startable(llm, large_name)
    if isinstance(small, LocalGGUFLLM) and isinstance(large, LocalGGUFLLM) and small.path == large.path:
        large = small  # one llama.cpp context, whichever descriptors led to it
    router = RoutedLLM(llm, small, large, make_local=lambda: LocalGGUFLLM(llm))
    router.note = "; ".join(dict.fromkeys(n for n in (small.note, large.note) if n))
    log.info("LLM: %s", router.status().line())
    return router


def _startable(config: LLMConfig, descriptor: str) -> LLMBackend:
    """The backend a descriptor names; if it is the local model and it cannot start (no weights, a llama.cpp build
    that crashes on this CPU), the knowledge-base quotes backend, whose note says why: the app still answers."""
    try:
        return create_backend(config, descriptor)
    except BackendError as exc:
        if exc.backend != LocalGGUFLLM.name:
            raise
        log.error("LLM: the local model cannot start (%s); answers will quote the knowledge base", exc)
        return KnowledgeBaseQuotes(config, _short(str(exc)))


def create_backend(config: LLMConfig, descriptor: str) -> LLMBackend:
    """One backend from a descriptor: "auto", "local", "local/<gguf path>", "databricks", "databricks/<endpoint>",
    "openai" or "openai/<model>"."""
    kind, _, detail = descriptor.strip().partition("/")
    if kind == "auto" and not detail:
        return _auto(config)
    cls = pick_backend(STAGE, LLM_BACKENDS, kind)
    if detail:
        setting = {"local": "model_path", "databricks": "databricks_endpoint", "openai": "openai_model"}[kind]
        config = replace(config, **{setting: detail})
    return cls(config)


def _auto(config: LLMConfig) -> LLMBackend:
    """Databricks, then OpenAI-compatible, then the local model: a remote backend without credentials, or failing
    to start, is passed over and the chosen backend's ``note`` says why (e.g. "Databricks: DATABRICKS_HOST/TOKEN not
    set"). The local model's failure is raised."""
    notes: list[str] = []
    for cls in AUTO_PREFERRED:
        reason = cls.unavailable_reason(config, os.environ)
        if not reason:
            try:
                backend: LLMBackend = cls(config)
            except PipelineError as exc:
                reason = _short(str(exc))
            else:
                backend.note = "; ".join(notes)
                return backend
        log.info("LLM auto: passing over %s (%s)", cls.label, reason)
        notes.append(f"{cls.label}: {reason}")
    backend = LocalGGUFLLM(config)
    backend.note = "; ".join(notes)
    return backend
