"""The floor under the local model's time to first audio: what llama.cpp itself takes for a question's tokens and
for each word it writes, with the prompt's beginning already evaluated (as the app's saved prefix states give it).

For each local model, on the project's knowledge-base document as the cached beginning: evaluating each latency
question's own tokens (ChatML user turn and the assistant's opener), and generating tokens one at a time. Their sum
for the first spoken phrase (``FIRST_PHRASE_TOKENS``) is the least any turn can take before its first clip is
synthesised, whatever the pipeline around it does. Writes ``bench/latency/floor.md``.
Run: ``python bench/latency/floor.py [--models ...]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.latency.run import DEFAULT_MODELS, QUESTION_SETS, bench_config  # noqa: E402
from core.llm.local import OPENMP_WAIT_POLICY, chatml  # noqa: E402
from core.llm.packaged import local_model, resolve_local  # noqa: E402
from core.types import ChatMessage  # noqa: E402

HERE = Path(__file__).resolve().parent
PREFIX_DOCUMENT = ROOT / "knowledge_base" / "how_a_turn_works.md"
FIRST_PHRASE_TOKENS = 6
"""The clause splitter's first piece is about 4 words (``bench/latency/splitting.md``), about 6 tokens."""
GENERATED_TOKENS = 16


def measure(model: str) -> dict[str, float]:
    """Per-question evaluation times and per-token generation time of one model, after the cached beginning."""
    os.environ.setdefault(*OPENMP_WAIT_POLICY)
    import llama_cpp

    config = bench_config()
    entry = local_model(model)
    path = resolve_local(entry, "", config.llm.model_dir).path
    threads = entry.profile.threads
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=entry.profile.context_tokens, n_threads=threads,
                          n_threads_batch=max(threads, os.cpu_count() or 1), verbose=False)

    def tokens(messages: list[ChatMessage], reply: bool) -> list[int]:
        return llm.tokenize(chatml(messages, reply=reply).encode(), add_bos=False, special=True)

    prefix = tokens([ChatMessage("system", PREFIX_DOCUMENT.read_text(encoding="utf-8"))], reply=False)
    llm.eval(prefix)
    question_s, question_tokens = [], []
    for question in (q for qs in QUESTION_SETS.values() for q in qs):
        suffix = tokens([ChatMessage("user", question)], reply=True)
        llm.n_tokens = len(prefix)  # back to the cached beginning, as a restored state leaves the context
        started = time.perf_counter()
        llm.eval(suffix)
        question_s.append(time.perf_counter() - started)
        question_tokens.append(len(suffix))
    steps = []
    for _ in range(GENERATED_TOKENS):
        token = llm.sample(temp=0.0)
        started = time.perf_counter()
        llm.eval([token])
        steps.append(time.perf_counter() - started)
    question = statistics.median(question_s)
    step = statistics.median(steps)
    per_token = statistics.median(s / n for s, n in zip(question_s, question_tokens, strict=True))
    return {"prefix": len(prefix), "question_tokens": statistics.median(question_tokens), "question_s": question,
            "per_question_token_ms": 1000 * per_token,
            "step_s": step, "floor_s": question + FIRST_PHRASE_TOKENS * step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    args = parser.parse_args()
    rows = {model: measure(model) for model in args.models}
    lines = [
        "# The floor under time to first audio", "",
        f"llama-cpp-python, portable build, the profile's threads; the cached beginning is "
        f"`{PREFIX_DOCUMENT.relative_to(ROOT)}` as a system message; the {sum(map(len, QUESTION_SETS.values()))} "
        f"latency questions; medians. Floor = the question's evaluation + {FIRST_PHRASE_TOKENS} generated tokens "
        f"(the first spoken phrase), before any synthesis. 2-core machine, load average {os.getloadavg()[0]:.1f}. "
        f"Written by `python bench/latency/floor.py` on {time.strftime('%Y-%m-%d')}.", "",
        "| model | cached beginning (tokens) | question (tokens) | question evaluation | per question token | "
        "per generated token | floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, r in rows.items():
        lines.append(f"| {local_model(model).label} | {r['prefix']} | {r['question_tokens']:.0f} | "
                     f"{r['question_s']:.2f} s | {r['per_question_token_ms']:.0f} ms | {1000 * r['step_s']:.0f} ms | "
                     f"{r['floor_s']:.2f} s |")
    (HERE / "floor.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
