"""The offline LLM: a GGUF model from ``data/llm_models.json`` (Qwen2.5-Coder-1.5B by default) run by llama.cpp.

Two prompting profiles, one per model size (``core.llm.packaged.Profile``):

- "passages" (Qwen2.5-1.5B): the same grounding as the cloud models — persona, what it runs on, the knowledge-base
  passages whole with their titles, all in the system message — then the recent history and the question. The
  system message is the same for every question about the same document, so its evaluated state is restored from
  ``core.llm.prefix_cache`` and the model evaluates only the history and the question.
- "sentences" (SmolLM2-135M): too small to read passages; it gets a few example turns, then only the best
  sentences of the best passage next to the question, or, for a confident passage, those sentences are the answer
  (``core.llm.grounding``).

Before loading, ``core.llm.probe`` loads the model and generates a few tokens in a child process, so a llama.cpp
build that crashes on this CPU disables the model with a message instead of killing the app.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from core.backend import backend_errors
from core.config import DATA_DIR, LLMConfig
from core.errors import BackendError, ConfigError, InputError
from core.llm.base import STAGE, GeneratingLLM, StreamGen, Usage, without_notes
from core.llm.grounding import example_turns, extractive_answer, grounded_question, grounding_data, split_sentences
from core.llm.packaged import LocalModel, local_model, resolve_local
from core.llm.prefix_cache import PrefixStates, common_prefix
from core.llm.probe import probe
from core.retrieval import model_text
from core.types import ChatMessage, Passage, Reply

log = logging.getLogger(__name__)

EXAMPLES_PATH = DATA_DIR / "llm_examples.json"
CHATML_START = "<|im_start|>"
CHATML_END = "<|im_end|>"
"""Both catalogue models speak ChatML; a model whose chat template does not is refused at load."""
MESSAGE_OVERHEAD_TOKENS = 5  # ChatML wraps each message in <|im_start|>role\n ... <|im_end|>\n
GROUNDED_PASSAGES = 1  # "sentences" profile: the best passage only; a second confuses the 135M model (measured)
GROUNDED_SENTENCES = 2  # its best-matching sentences, not the whole chunk
PREFIX_STATES_DIR = "prefix_states"
READ_AHEAD_HELD_TOKENS = 2
"""Reading ahead stops this many tokens before the end of what is typed: the word being typed, and the space or
punctuation before it, may be different tokens once the word is finished."""
ANSWER_WORDS = (("Yes", "yes"), ("No", "no"))
"""The first words of a yes-or-no answer (``yes_margin``), each spelling its own first token."""
LLAMA_CPP_HINT = "llama-cpp-python is not installed (make install builds it)"
OPENMP_WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")
"""llama.cpp's OpenMP threads sleep at their barriers instead of spinning. On 2 cores, spinning threads that share
the CPU with anything else (the voice synthesising the previous clause, another process) stall each other:
generation measured 0.5 tokens/s with spinning against 6 with sleeping, under the same load. Read by the OpenMP
runtime when llama.cpp's library loads, so it is set (unless already set) just before the first import."""


def load_examples(path: Path = EXAMPLES_PATH) -> tuple[ChatMessage, ...]:
    """Read the few-shot turns for the small model: ``{"examples": [{"user": ..., "assistant": ...}, ...]}``.

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


def _opened(message: ChatMessage) -> str:
    """One message in ChatML, not yet closed."""
    return f"{CHATML_START}{message.role}\n{message.content}"


def chatml(messages: Sequence[ChatMessage], *, reply: bool = True) -> str:
    """The ChatML text of ``messages``, opening the assistant's turn when ``reply``."""
    text = "".join(f"{_opened(m)}{CHATML_END}\n" for m in messages)
    return text + f"{CHATML_START}assistant\n" if reply else text


def unfinished_chatml(messages: Sequence[ChatMessage]) -> str:
    """The ChatML text of ``messages`` with the last one left open, as if its text went on."""
    *done, last = messages
    return chatml(done, reply=False) + _opened(last)


class LocalGGUFLLM(GeneratingLLM):
    """The offline default: a catalogue model (or ``config.model_path``) run by llama.cpp.

    Responsibilities: find the model (explicit path, packages, hub) and check it in a child process once; load it;
    lay the prompt out for its profile and keep it inside the context window; restore the saved state of the
    prompt's fixed beginning; stream tokens, stopping when the base class has enough sentences; serialise calls (a
    llama.cpp context is not thread-safe; the lock is released when the stream is closed or finishes).
    """

    name: ClassVar[str] = "local"
    label: ClassVar[str] = "local"

    def __init__(self, config: LLMConfig) -> None:
        super().__init__(config)
        self.entry: LocalModel = local_model(config.local_model)
        self.profile = self.entry.profile
        resolved = resolve_local(self.entry, config.model_path, config.model_dir)
        self.path = resolved.path
        self._packaged = resolved.source.startswith("package:")
        self._examples = load_examples() if self.profile.grounding == "sentences" else ()
        self._grounded_examples = tuple(example_turns(grounding_data().examples)) if self._examples else ()
        self.threads = config.threads or self.profile.threads
        os.environ.setdefault(*OPENMP_WAIT_POLICY)
        try:
            import llama_cpp
        except ImportError as exc:
            raise BackendError(STAGE, self.name, LLAMA_CPP_HINT) from exc
        checked = probe(self.path, self.profile.context_tokens, self.threads)
        log.info("LLM local: llama.cpp %s: %s", llama_cpp.__version__, checked.system_info)
        started = time.perf_counter()
        with backend_errors(STAGE, self.name):
            self._llm = llama_cpp.Llama(
                model_path=str(self.path),
                n_ctx=self.profile.context_tokens,
                n_threads=self.threads,
                n_threads_batch=max(self.threads, os.cpu_count() or 1),  # prompt evaluation runs before any TTS
                verbose=False,
            )
        template = self._llm.metadata.get("tokenizer.chat_template", "")
        if CHATML_START not in template:
            raise ConfigError(f"{self.path.name}: its chat template is not ChatML, which the local backend writes")
        self._lock = threading.Lock()
        model_id = f"{self.path.name}:{self.path.stat().st_size}:{llama_cpp.__version__}"
        states_dir = config.model_dir / PREFIX_STATES_DIR / self.path.stem  # derived from the model, kept beside it
        self.prefixes = PrefixStates(states_dir, model_id) if self.profile.grounding == "passages" else None
        self._answer_tokens = tuple(tuple(self._llm.tokenize(word.encode(), add_bos=False)[0] for word in words)
                                    for words in ANSWER_WORDS)
        log.info("LLM local: loaded %s (%s) in %.2f s; start-up check %.1f tokens/s", self.path.name,
                 resolved.source, time.perf_counter() - started, checked.tokens_per_s)

    @property
    def model(self) -> str:
        return self.path.stem

    @property
    def description(self) -> str:
        return f"local {self.entry.label}" if self._packaged else f"local {self.path.stem}"

    @property
    def cpu_threads(self) -> int:
        return self.threads

    @property
    def runtime(self) -> str:
        return f"{self.entry.label}, a small language model that runs offline on this computer's CPU"

    @property
    def follows_notes(self) -> bool:
        return self.profile.grounding == "passages"  # the "sentences" model quotes passages or repeats the note

    def _yes_margin(self, conversation: list[ChatMessage], passages: Sequence[Passage]) -> float | None:
        """Evaluate the prompt as ``_stream`` would (after the saved beginning) and compare the next token's logits
        for "Yes" and "No"; the context keeps the evaluated prompt, so an answer to the same question after it
        pays only for the tokens after the question. The "sentences" model cannot judge (None)."""
        if self.prefixes is None:
            return None
        prompt = self._prompt(conversation, passages)
        llm = self._llm
        with self._lock:
            self._evaluate(prompt, self._tokens(prompt))
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
            yes, no = (max(float(logits[t]) for t in ids) for ids in self._answer_tokens)
        return yes - no

    def _read_ahead(self, conversation: list[ChatMessage], passages: Sequence[Passage]) -> bool:
        """Evaluate the prompt up to the unfinished question's last whole words, unless the model is busy (a turn
        or another reading ahead holds it: this is advice, never worth waiting for). The "sentences" profile puts
        the passage sentences chosen for the whole question before it, so it cannot read ahead."""
        if self.prefixes is None:
            return False
        prompt = self._prompt(conversation, passages)
        tokens = self._encode(unfinished_chatml(prompt))[:-READ_AHEAD_HELD_TOKENS]
        if not self._lock.acquire(blocking=False):
            return False
        try:
            started = time.perf_counter()
            self._evaluate(prompt, tokens)
        finally:
            self._lock.release()
        log.debug("LLM local: read %d tokens ahead in %.2f s", len(tokens), time.perf_counter() - started)
        return True

    def _evaluate(self, prompt: list[ChatMessage], tokens: list[int]) -> None:
        """Make the context hold ``tokens`` (the start of ``prompt``), evaluated: the saved beginning restored,
        what the context already shares kept, the rest evaluated; the last token always again, so that the logits
        are its own. The caller holds the lock."""
        llm = self._llm
        self.prefixes.prepare(llm, self._tokens(prompt[:1], reply=False))
        llm.n_tokens = min(common_prefix(llm.input_ids[: llm.n_tokens], tokens), len(tokens) - 1)
        llm.eval(tokens[llm.n_tokens :])

    def stream(self, messages: Sequence[ChatMessage], passages: Sequence[Passage] = ()) -> Iterator[str | Reply]:
        if self.profile.grounding == "passages":
            yield from super().stream(messages, passages)
            return
        question = without_notes(self._conversation(messages)[-1].content)
        confident = [p for p in _best_first(passages) if p.score >= self.config.extractive_min_score]
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

    def prepare(self, system_prompt: str, documents: Sequence[Sequence[Passage]]) -> None:
        """Evaluate and save the prompt beginning of each document now, so that its first question is fast."""
        if self.prefixes is None:
            return
        for passages in documents:
            system = self._prompt([ChatMessage("system", system_prompt), ChatMessage("user", "?")], passages)[0]
            with self._lock:
                self.prefixes.prepare(self._llm, self._tokens([system], reply=False))

    def _prompt(self, conversation: list[ChatMessage], passages: Sequence[Passage]) -> list[ChatMessage]:
        """The profile's layout, trimmed to the context window (the oldest history goes first)."""
        history = conversation[1:-1][-2 * self.profile.history_turns :] if self.profile.history_turns else []
        if self.profile.grounding == "passages":
            system, *_ = super()._prompt(conversation, passages)
            return self._fit_context([system, *history, conversation[-1]], fixed=1)
        examples = self._grounded_examples if passages else self._examples
        question = conversation[-1].content
        if passages:
            question = grounded_question(question, _best_first(passages)[:GROUNDED_PASSAGES], GROUNDED_SENTENCES)
        chat = [conversation[0], *examples, *history, ChatMessage("user", question)]
        return self._fit_context(chat, fixed=1 + len(examples))

    def _tokens(self, messages: Sequence[ChatMessage], *, reply: bool = True) -> list[int]:
        return self._encode(chatml(messages, reply=reply))

    def _encode(self, text: str) -> list[int]:
        """The tokens of ChatML text (its markers as the model's special tokens)."""
        return self._llm.tokenize(text.encode(), add_bos=False, special=True)

    def _stream(self, messages: list[ChatMessage], temperature: float) -> StreamGen:
        prompt = self._tokens(messages)
        completion_tokens = 0
        finish = "stop"
        with self._lock:
            if self.prefixes is not None:
                source = self.prefixes.prepare(self._llm, self._tokens(messages[:1], reply=False))
                log.debug("LLM local: prompt beginning from %s", source)
            chunks = self._llm.create_completion(prompt, stream=True, max_tokens=self.config.max_tokens,
                                                 temperature=temperature)
            with contextlib.closing(chunks):
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    text = choice["text"]
                    if text:
                        completion_tokens += 1  # llama.cpp streams one chunk per generated token
                        if (yield text):
                            break
                    finish = choice.get("finish_reason") or finish
        return Usage(len(prompt), completion_tokens, finish)

    def _fit_context(self, chat: list[ChatMessage], fixed: int) -> list[ChatMessage]:
        """Drop the oldest turns after the first ``fixed`` messages (system prompt, examples) until the prompt
        leaves room for the answer."""
        budget = self.profile.context_tokens - self.config.max_tokens
        sizes = [len(self._llm.tokenize(m.content.encode(), add_bos=False)) + MESSAGE_OVERHEAD_TOKENS for m in chat]
        drop = 0
        while sum(sizes[:fixed]) + sum(sizes[fixed + drop :]) > budget:
            if fixed + drop >= len(chat) - 1:
                raise InputError("The question is too long for the local model; please shorten it.")
            drop += 1
        if drop:
            log.info("LLM local: dropped the %d oldest history messages to fit the context window", drop)
        return chat[:fixed] + chat[fixed + drop :]


def _best_first(passages: Sequence[Passage]) -> list[Passage]:
    """Passages by retrieval score, best first (a document's context comes in document order), in the model's
    reading of them (``core.retrieval.model_text``, as the "passages" profile gets them from format_context)."""
    return [replace(p, text=model_text(p.text)) for p in sorted(passages, key=lambda p: -p.score)]
