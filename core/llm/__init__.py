"""The LLM stage: stream a short spoken-style answer from a local GGUF model, Databricks or an OpenAI-compatible API.

``LLMBackend.stream(messages)`` yields text deltas as they are generated and, last, one ``Reply`` with the whole
text and its token usage; ``complete(messages)`` returns just the Reply. ``create_llm(config)`` picks the backend
("auto": Databricks when its credentials are in the environment, then an OpenAI-compatible server when
OPENAI_BASE_URL is set, else the local SmolLM2-135M). ``spoken_text`` turns a markdown answer into what the TTS says.
Backends import their libraries (llama_cpp, databricks.sdk, requests) only when constructed.
"""

from __future__ import annotations

import logging
import os

from core.backend import pick_backend
from core.config import AppConfig
from core.errors import PipelineError
from core.llm.base import STAGE, LLMBackend, Usage
from core.llm.chat_completions import ChatCompletionsLLM
from core.llm.databricks import DatabricksLLM
from core.llm.local import LocalGGUFLLM, load_examples
from core.llm.openai_compatible import OpenAICompatibleLLM
from core.llm.spoken import spoken_text

__all__ = [
    "LLM_BACKENDS",
    "DatabricksLLM",
    "LLMBackend",
    "LocalGGUFLLM",
    "OpenAICompatibleLLM",
    "Usage",
    "create_llm",
    "load_examples",
    "spoken_text",
]

log = logging.getLogger(__name__)

LLM_BACKENDS: dict[str, type[LLMBackend]] = {
    "local": LocalGGUFLLM,
    "databricks": DatabricksLLM,
    "openai": OpenAICompatibleLLM,
}
NOTE_CHARS = 160
AUTO_PREFERRED: tuple[type[ChatCompletionsLLM], ...] = (DatabricksLLM, OpenAICompatibleLLM)


def _short(reason: str) -> str:
    """The gist of a startup error for the status line: databricks-sdk appends a long "Config: ..." dump."""
    return reason.split(". Config:")[0].splitlines()[0][:NOTE_CHARS]


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
                reason = _short(str(exc))
            else:
                backend.note = "; ".join(notes)
                return backend
        log.info("LLM auto: passing over %s (%s)", cls.label, reason)
        notes.append(f"{cls.label}: {reason}")
    backend = LocalGGUFLLM(config.llm)
    backend.note = "; ".join(notes)
    return backend
