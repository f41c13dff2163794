"""Saved llama.cpp states of prompt beginnings, so a grounded question pays only for its own tokens.

The local model's prompt starts with the system message: persona, what the model runs on, and the knowledge-base
document the question is about. That beginning is the same for every question on the same document, so its
evaluated state (the KV cache of sequence 0) is saved once per document and restored before a question: the model
then evaluates only the history and the question (tens of tokens) instead of the whole document (hundreds).

States live in RAM (least recently used first out, under a byte cap) and on disk under the cache folder (so a
restart does not recompute them; oldest first out, under a cap). A state is keyed by the exact prefix tokens, the
model file and the llama.cpp version, since a state is only valid for the model and library that made it.
llama-cpp-python's own ``LlamaRAMCache`` would also copy the logits array of the whole batch (hundreds of MB for a
150k-token vocabulary) with every state, hence this cache of sequence states only.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RAM_CAP_BYTES = 768 << 20
"""About 50 documents of 500 tokens for Qwen2.5-1.5B (28.7 KB of KV cache per token): a knowledge base of that size
answers every question from RAM, while a larger one stays within a fraction of the 6 GB a small host has."""
DISK_CAP_BYTES = 2 << 30
"""The states on disk stay under 2 GiB; the least recently used go first."""
SEQUENCE = 0
STATE_SUFFIX = ".npz"


@dataclass(frozen=True, slots=True)
class SavedPrefix:
    """A prompt beginning and the llama.cpp state of sequence 0 right after evaluating it."""

    tokens: tuple[int, ...]
    state: bytes


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PrefixStates:
    """The saved prefix states of one model, in RAM and on disk.

    Responsibilities: before a prompt, make the llama context start with the prompt's prefix as cheaply as
    possible (already there, restored from RAM or disk, or evaluated now and saved); keep both stores under their
    caps. Callers hold the model's lock: llama.cpp contexts are not thread-safe.
    """

    def __init__(self, directory: Path, model_id: str, *, ram_cap_bytes: int = RAM_CAP_BYTES,
                 disk_cap_bytes: int = DISK_CAP_BYTES) -> None:
        self.directory = directory
        self.model_id = model_id
        self.ram_cap_bytes = ram_cap_bytes
        self.disk_cap_bytes = disk_cap_bytes
        self._ram: OrderedDict[str, SavedPrefix] = OrderedDict()
        self._ram_bytes = 0
        self._lock = threading.Lock()
        self.hits = {"context": 0, "ram": 0, "disk": 0, "evaluated": 0}

    def key(self, tokens: Sequence[int]) -> str:
        digest = hashlib.sha256(self.model_id.encode())
        digest.update(np.asarray(tokens, dtype=np.int32).tobytes())
        return digest.hexdigest()[:32]

    def prepare(self, llm: Any, prefix: Sequence[int]) -> str:
        """Make ``llm``'s context hold ``prefix`` (and possibly more); say where it came from.

        Returns "context" (already there), "ram", "disk" or "evaluated" (computed now, then saved).
        """
        prefix = tuple(prefix)
        if common_prefix(llm.input_ids[: llm.n_tokens], prefix) == len(prefix):
            source = "context"
        else:
            key = self.key(prefix)
            saved, source = self._find(key)
            if saved is not None and _restore(llm, saved):
                pass
            else:
                source = "evaluated"
                _evaluate(llm, prefix)
                self._store(key, SavedPrefix(prefix, _save(llm)))
        self.hits[source] += 1
        return source

    def _find(self, key: str) -> tuple[SavedPrefix | None, str]:
        with self._lock:
            saved = self._ram.get(key)
            if saved is not None:
                self._ram.move_to_end(key)
                return saved, "ram"
        path = self.directory / f"{key}{STATE_SUFFIX}"
        try:
            with np.load(path) as data:
                saved = SavedPrefix(tuple(int(t) for t in data["tokens"]), data["state"].tobytes())
            os.utime(path)  # the disk store evicts the least recently used
        except (OSError, ValueError, KeyError):
            return None, ""
        self._remember(key, saved)
        return saved, "disk"

    def _store(self, key: str, saved: SavedPrefix) -> None:
        self._remember(key, saved)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".{key}.tmp{STATE_SUFFIX}"
            np.savez(tmp, tokens=np.asarray(saved.tokens, dtype=np.int32),
                     state=np.frombuffer(saved.state, dtype=np.uint8))
            os.replace(tmp, self.directory / f"{key}{STATE_SUFFIX}")
            self._trim_disk()
        except OSError as exc:  # a full or read-only disk only costs speed
            log.warning("LLM prefix cache: cannot save a state to %s (%s)", self.directory, exc)

    def _remember(self, key: str, saved: SavedPrefix) -> None:
        with self._lock:
            if key in self._ram:
                return
            self._ram[key] = saved
            self._ram_bytes += len(saved.state)
            while self._ram_bytes > self.ram_cap_bytes and len(self._ram) > 1:
                _, old = self._ram.popitem(last=False)
                self._ram_bytes -= len(old.state)

    def _trim_disk(self) -> None:
        files = sorted(self.directory.glob(f"*{STATE_SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
        total = 0
        for path in files:
            total += path.stat().st_size
            if total > self.disk_cap_bytes:
                path.unlink(missing_ok=True)

    @property
    def ram_bytes(self) -> int:
        return self._ram_bytes


def _evaluate(llm: Any, prefix: tuple[int, ...]) -> None:
    """Evaluate ``prefix`` in the context, keeping what the context already shares with it."""
    started = time.perf_counter()
    shared = common_prefix(llm.input_ids[: llm.n_tokens], prefix)
    llm.n_tokens = shared
    llm.eval(prefix[shared:])
    llm._requires_eval = True  # the logits are the prefix's, not the prompt's: the prompt's suffix must be decoded
    log.info("LLM prefix cache: evaluated %d prefix tokens (%d reused) in %.2f s", len(prefix) - shared, shared,
             time.perf_counter() - started)


def _save(llm: Any) -> bytes:
    import llama_cpp

    ctx = llm._ctx.ctx
    size = llama_cpp.llama_state_seq_get_size(ctx, SEQUENCE)
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, SEQUENCE)
    return bytes(buffer[:written])


def _restore(llm: Any, saved: SavedPrefix) -> bool:
    """Replace the context's sequence with a saved one; False (context emptied) if llama.cpp refuses it."""
    import llama_cpp

    llm._ctx.kv_cache_seq_rm(SEQUENCE, 0, -1)
    buffer = (ctypes.c_uint8 * len(saved.state)).from_buffer_copy(saved.state)
    if not llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buffer, len(saved.state), SEQUENCE):
        llm.n_tokens = 0
        log.warning("LLM prefix cache: llama.cpp refused a saved state; evaluating the prefix instead")
        return False
    n = len(saved.tokens)
    llm.input_ids[:n] = saved.tokens
    llm.n_tokens = n
    llm._requires_eval = True
    return True
