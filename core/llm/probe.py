"""A start-up check of the local model in a child process: load it and generate a few tokens before the app does.

A llama.cpp build that does not suit this CPU (an illegal instruction, the AMX repack crash of a natively tuned
build) kills its process with a signal that Python cannot catch. Running the same load and a short generation in a
child first turns that into a ``BackendError`` that names the signal and the library's CPU features, so the app
starts without the model and says why instead of dying. The child also reports how fast the model generated.

Run directly: ``python -m core.llm probe MODEL.gguf [--context N] [--threads N]`` prints the result as JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import BackendError

PROBE_PROMPT = "The capital of France is"
PROBE_TOKENS = 4
"""Enough tokens to run the prompt batch and the single-token decode path, the two that can crash."""
PROBE_TIMEOUT_S = 180.0
"""A cold start reads a gigabyte from disk; anything slower than this is treated as a hang."""
STDERR_LINES = 3


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the child saw: the library's CPU features and the model's load time and generation speed."""

    system_info: str
    load_s: float
    tokens_per_s: float


@functools.lru_cache(maxsize=8)
def probe(model_path: Path, context_tokens: int, threads: int, *, python: str = sys.executable,
          timeout_s: float = PROBE_TIMEOUT_S) -> ProbeResult:
    """Load ``model_path`` and generate a few tokens in a child process (once per process for the same model and
    settings: a passed check stays passed; a failed one is tried again).

    Raises:
        BackendError: the child crashed (the signal is named), failed, hung or printed nothing usable.
    """
    command = [python, "-m", "core.llm", "probe", str(model_path), "--context", str(context_tokens),
               "--threads", str(threads)]
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=root)
    except subprocess.TimeoutExpired as exc:
        raise BackendError("LLM", "local", f"the start-up check of {model_path.name} hung for {timeout_s:.0f} s") \
            from exc
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise BackendError("LLM", "local", f"llama.cpp crashed ({name}) loading or running {model_path.name} on "
                                           f"this CPU; the local model is off ({_tail(done.stderr)})")
    if done.returncode != 0:
        raise BackendError("LLM", "local", f"the start-up check of {model_path.name} failed: {_tail(done.stderr)}")
    try:
        return ProbeResult(**json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError, TypeError) as exc:
        raise BackendError("LLM", "local", f"the start-up check of {model_path.name} printed no result") from exc


def _tail(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return " | ".join(lines[-STDERR_LINES:]) or "no message"


def run_probe(model_path: Path, context_tokens: int, threads: int) -> ProbeResult:
    """The child's side: load the model as the app does and time a short greedy generation."""
    import llama_cpp

    started = time.perf_counter()
    llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=context_tokens, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    loaded = time.perf_counter()
    out = llm.create_completion(PROBE_PROMPT, max_tokens=PROBE_TOKENS, temperature=0.0)
    generated = out["usage"]["completion_tokens"]
    elapsed = time.perf_counter() - loaded
    return ProbeResult(llama_cpp.llama_print_system_info().decode().strip(), loaded - started,
                       generated / elapsed if elapsed > 0 else 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.llm probe", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    result = run_probe(args.model, args.context, args.threads)
    print(json.dumps({"system_info": result.system_info, "load_s": result.load_s,
                      "tokens_per_s": result.tokens_per_s}))
    return 0
