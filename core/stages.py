"""The backends a turn runs on: each stage created from configuration on first use, and one turn's setup."""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.action_requests import ACTION_REQUESTS_PATH
from core.asr import ASRBackend, create_asr
from core.backend import StageBackend
from core.config import AppConfig
from core.emotion import EmotionBackend, create_emotion
from core.guard import GUARD_PATH
from core.lipsync import LipsyncBackend, create_lipsync
from core.llm import LLMBackend, create_llm
from core.llm.grounding import GROUNDING_PATH
from core.llm.local import EXAMPLES_PATH
from core.llm.packaged import CATALOGUE_PATH
from core.retrieval import RetrievalBackend, create_retrieval
from core.retrieval.vocabulary import COVERAGE_PATH
from core.tts import TTSBackend, create_tts
from core.words import STOPWORDS_PATH

REPLY_RULES = (GUARD_PATH, COVERAGE_PATH, ACTION_REQUESTS_PATH, GROUNDING_PATH, EXAMPLES_PATH, CATALOGUE_PATH,
               STOPWORDS_PATH)
"""Data files whose rules shape what a model is told or what is said instead of it: a stored reply made under
other rules is stale (after an update, "Can you book me a demo?" replayed the old "I don't know")."""


@functools.lru_cache(maxsize=1)
def reply_rules_fingerprint(paths: tuple[Path, ...] = REPLY_RULES) -> str:
    """A digest of the reply rules' contents (a missing file counts as empty), read once per process."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:16]


class Stages:
    """The backends a pipeline uses, each created from configuration on first use (or given, e.g. by tests).

    ``tts_for``/``llm_for`` give the backend for a per-turn descriptor (a character's voice, a variant's model),
    created once per descriptor; an empty descriptor is the configured backend.
    """

    def __init__(self, config: AppConfig, **backends: StageBackend) -> None:
        self.config = config
        self._backends: dict[str, StageBackend] = dict(backends)
        self._lock = threading.Lock()

    def _get(self, stage: str, create: Callable[[], StageBackend]) -> Any:
        with self._lock:
            if stage not in self._backends:
                self._backends[stage] = create()
            return self._backends[stage]

    @property
    def asr(self) -> ASRBackend:
        return self._get("asr", lambda: create_asr(self.config))

    @property
    def llm(self) -> LLMBackend:
        return self._get("llm", lambda: create_llm(self.config))

    @property
    def tts(self) -> TTSBackend:
        return self._get("tts", lambda: create_tts(self.config))

    def tts_for(self, descriptor: str) -> TTSBackend:
        if not descriptor or descriptor == self.config.tts.backend:
            return self.tts
        config = replace(self.config, tts=replace(self.config.tts, backend=descriptor))
        return self._get(f"tts:{descriptor}", lambda: create_tts(config))

    def llm_for(self, descriptor: str) -> LLMBackend:
        if not descriptor:
            return self.llm
        config = replace(self.config, llm=replace(self.config.llm, small=descriptor, large=descriptor))
        return self._get(f"llm:{descriptor}", lambda: create_llm(config))

    @property
    def emotion(self) -> EmotionBackend:
        return self._get("emotion", lambda: create_emotion(self.config))

    @property
    def retrieval(self) -> RetrievalBackend:
        return self._get("retrieval", lambda: create_retrieval(self.config))

    @property
    def lipsync(self) -> LipsyncBackend:
        cfg = self.config.lipsync
        return self._get(
            "lipsync", lambda: create_lipsync(cfg.backend, rhubarb_path=cfg.rhubarb_path, config=self.config)
        )


@dataclass(frozen=True, slots=True)
class TurnSetup:
    """What one turn runs with: the configuration with the turn's options applied."""

    llm: LLMBackend
    tts: TTSBackend
    emotion: EmotionBackend
    lipsync: LipsyncBackend
    system_prompt: str
    streaming: bool
    top_k: int

    def settings_key(self) -> str:
        """Names everything besides the knowledge base that shapes a spoken reply (for the response cache): the
        model, the voice, the emotion classifier (the face of each clip), the lip-sync source, the persona and the
        reply rules (``REPLY_RULES``)."""
        backends = (self.llm, self.tts, self.emotion, self.lipsync)
        settings = "|".join((*(backend.description for backend in backends), self.system_prompt,
                             reply_rules_fingerprint()))
        return hashlib.sha256(settings.encode()).hexdigest()[:16]
