"""In-process fakes of the stage backends for orchestration tests: the same base classes as the real backends, with
latency and failure knobs (as livekit's ``tests/fake_tts.py``). They test how the pipeline and the app handle a
stage, never what a model says; the app never uses them.

``fake_pipeline(config, ...)`` builds a Pipeline on them (the caches still embed questions with the real MiniLM).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np

from core.config import AppConfig, LLMConfig
from core.emotion import EmotionBackend
from core.lipsync import LipsyncBackend
from core.lipsync.phonemes import VisemeSegment
from core.llm import LLMBackend
from core.llm.base import GeneratingLLM, StreamGen, Usage
from core.pipeline import Pipeline
from core.retrieval import RetrievalBackend
from core.stages import Stages
from core.tts import TTSBackend
from core.tts.base import TTSCapabilities
from core.types import EMOTION_LABELS, ChatMessage, Passage, Reply, Speech

FAKE_ANSWER = "Hello there. I am a test double. I speak three sentences."
SAMPLE_RATE = 16000
SECONDS_PER_CHARACTER = 0.01
TONE_HZ = 220.0


GATE_TIMEOUT_S = 120.0
"""A gated fake goes on anyway after this long, so a test that forgets to open its gate fails instead of hanging."""


class FakeLLM(LLMBackend):
    """Streams ``answer`` word by word, ``latency_s`` apart; after ``fail_after`` words raises ``failure`` (any
    exception, as a backend or library that does not wrap its errors would). With a ``gate``, every stream waits
    for it before its first word (a test holds a turn in the middle for as long as it needs). ``streams_open``
    counts the streams started and not yet closed (a stream closed early must not stay open)."""

    name: ClassVar[str] = "fake"
    label: ClassVar[str] = "fake"

    def __init__(self, config: AppConfig, *, answer: str = FAKE_ANSWER, latency_s: float = 0.0,
                 fail_after: int | None = None, failure: BaseException | None = None,
                 gate: threading.Event | None = None) -> None:
        super().__init__(config.llm)
        self.answer = answer
        self.gate = gate
        self.latency_s = latency_s
        self.fail_after = fail_after
        self.failure = failure or RuntimeError("fake LLM crashed")
        self.calls: list[list[ChatMessage]] = []
        self.streams_open = 0
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return "fake-model"

    def stream(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> Iterator[str | Reply]:
        self.calls.append(list(messages))
        with self._lock:
            self.streams_open += 1
        try:
            if self.gate is not None:
                self.gate.wait(GATE_TIMEOUT_S)
            words = self.answer.split(" ") if self.answer else []
            for i, word in enumerate(words):
                if self.fail_after is not None and i >= self.fail_after:
                    raise self.failure
                time.sleep(self.latency_s)
                yield word if i == 0 else f" {word}"
            yield Reply(self.answer, prompt_tokens=len(messages), completion_tokens=len(words), backend=self.name,
                        model=self.model)
        finally:
            with self._lock:
                self.streams_open -= 1


class FakeTTS(TTSBackend):
    """A tone as long as the text (``SECONDS_PER_CHARACTER``), after ``latency_s``; the ``fail_on``-th call (1 is
    the first) and every later one raises ``failure``. With a ``gate``, every call after the first ``gate_after``
    waits for it (a test holds a turn between two of its clips)."""

    name: ClassVar[str] = "fake"
    capabilities: ClassVar[TTSCapabilities] = TTSCapabilities(phoneme_timings=False, word_timings=False,
                                                              streaming=False)

    def __init__(self, *, latency_s: float = 0.0, fail_on: int | None = None,
                 failure: BaseException | None = None, gate: threading.Event | None = None,
                 gate_after: int = 0) -> None:
        self.latency_s = latency_s
        self.gate = gate
        self.gate_after = gate_after
        self.fail_on = fail_on
        self.failure = failure or RuntimeError("fake voice crashed")
        self.texts: list[str] = []

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    def _synthesize(self, text: str) -> Speech:
        self.texts.append(text)
        if self.fail_on is not None and len(self.texts) >= self.fail_on:
            raise self.failure
        if self.gate is not None and len(self.texts) > self.gate_after:
            self.gate.wait(GATE_TIMEOUT_S)
        time.sleep(self.latency_s)
        t = np.arange(int(len(text) * SECONDS_PER_CHARACTER * SAMPLE_RATE)) / SAMPLE_RATE
        audio = (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
        return Speech(text, audio, SAMPLE_RATE, backend=self.name)


class FakeEmotion(EmotionBackend):
    """Every text is ``label`` with certainty."""

    name: ClassVar[str] = "fake"

    def __init__(self, label: str = "neutral") -> None:
        self.label = label

    def _classify(self, texts: Sequence[str]) -> np.ndarray:
        row = np.array([float(label == self.label) for label in EMOTION_LABELS])
        return np.tile(row, (len(texts), 1))


class FakeLipsync(LipsyncBackend):
    """The mouth open ("aa") for the whole clip."""

    name: ClassVar[str] = "fake"

    def _segments(self, speech: Speech) -> list[VisemeSegment]:
        return [VisemeSegment("aa", 0.0, speech.duration_s)]


class FakeRetrieval(RetrievalBackend):
    """A knowledge base with ``passages`` for every question (none by default)."""

    name: ClassVar[str] = "fake"

    def __init__(self, passages: Sequence[Passage] = ()) -> None:
        self.passages = list(passages)

    def _search(self, query: str, k: int) -> list[Passage]:
        return self.passages[:k]

    def fingerprint(self) -> str:
        return "fake:" + str(len(self.passages))

    def documents(self) -> list[list[Passage]]:
        return [self.passages] if self.passages else []


def fake_pipeline(config: AppConfig, *, llm: LLMBackend | None = None, tts: TTSBackend | None = None,
                  passages: Sequence[Passage] = ()) -> Pipeline:
    """A Pipeline on fake stages (``llm``/``tts`` as given, else default fakes; a knowledge base of ``passages``);
    ASR is never needed."""
    stages = Stages(config, llm=llm or FakeLLM(config), tts=tts or FakeTTS(), emotion=FakeEmotion(),
                    lipsync=FakeLipsync(), retrieval=FakeRetrieval(passages))
    return Pipeline(config, stages)


class ScriptedLLM(GeneratingLLM):
    """A backend that streams a fixed answer word by word, recording whether it was told to stop."""

    name = "scripted"

    def __init__(self, answer: str) -> None:
        super().__init__(LLMConfig(max_sentences=3))
        self.answer = answer
        self.stopped_early = False

    @property
    def model(self) -> str:
        return "scripted"

    def _stream(self, messages: list[ChatMessage], temperature: float) -> StreamGen:
        words = self.answer.split(" ")
        for i, word in enumerate(words):
            if (yield word + (" " if i < len(words) - 1 else "")):
                self.stopped_early = i < len(words) - 1
                break
        return Usage(10, len(words))
