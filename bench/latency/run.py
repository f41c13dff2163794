"""Latency benchmark: time to first audio from sending text and from the end of a spoken question, per local model.

Runs scripted turns on the embedded offline stack for each local model (the default Qwen2.5-Coder-1.5B and the
small SmolLM2-135M, one after the other), streaming and non-streaming, pasted, typed and spoken; general questions
and questions the knowledge base answers. The response cache is off, so every turn does the real work; each model
has prepared its knowledge-base documents first, as the app does after start-up. A typed question is read ahead
word by word as the app does while it is typed (``Pipeline.read_ahead``; each word's reading finishes before the
next, as at typing speed), then sent; a pasted one is sent at once. Also reports the process's memory with the
default model loaded. Writes ``bench/latency/results.md``.
Run: ``python bench/latency/run.py [--rounds N] [--models ...] [--modes ...]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.config import AppConfig, load_config  # noqa: E402
from core.llm.packaged import local_model  # noqa: E402
from core.pipeline import Pipeline, Stages  # noqa: E402
from core.tts import write_wav  # noqa: E402
from core.types import TurnComplete  # noqa: E402

HERE = Path(__file__).resolve().parent
QUESTION_SETS = {name: [q.strip() for q in (HERE / file).read_text().splitlines() if q.strip()]
                 for name, file in (("general", "questions.txt"), ("knowledge base", "questions_kb.txt"))}
DEFAULT_MODELS = ("qwen2.5-coder-1.5b", "smollm2-135m")
SHARED_STAGES = ("asr", "tts", "emotion", "retrieval", "lipsync")
"""Every model's pipeline uses the same speech, emotion, retrieval and lip-sync backends (loaded once)."""
MODES = {"streaming": True, "non-streaming": False}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    return float(np.percentile(values, q))


def rss_mb() -> float:
    """The current resident set size of this process, in MB (from /proc; the peak as a fallback)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_config() -> AppConfig:
    """The embedded defaults, whatever AVATAR_ or cloud settings the environment holds, with the response cache off
    (every turn does the real work) and the project's cache folder (models and prepared states)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AVATAR_", "DATABRICKS_", "OPENAI_"))}
    return replace(load_config(env), response_cache=False, cache_dir=ROOT / ".cache")


def type_question(pipeline: Pipeline, question: str) -> None:
    """What the question box does while ``question`` is typed: read it ahead after each word."""
    words = question.split()
    for n in range(1, len(words) + 1):
        pipeline.read_ahead([], " ".join(words[:n]))


def run_turn(pipeline: Pipeline, **kwargs: object) -> TurnComplete:
    """One turn with no history; returns its final event."""
    events = list(pipeline.run_turn([], session_id="bench", **kwargs))
    done = events[-1]
    if not isinstance(done, TurnComplete):
        raise RuntimeError(f"turn did not complete: {done!r}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="times to go through the question lists")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="latency-bench-"))
    base = bench_config()
    rss_before = rss_mb()
    pipelines: dict[tuple[str, str], Pipeline] = {}
    shared: Stages | None = None
    rss_default = 0.0
    for model in args.models:
        config = replace(base, llm=replace(base.llm, backend="local", local_model=model))
        backends = {stage: getattr(shared, stage) for stage in SHARED_STAGES} if shared else {}
        stages = Stages(config, **backends)
        for mode, streaming in ((m, MODES[m]) for m in args.modes):
            pipelines[(model, mode)] = Pipeline(replace(config, streaming=streaming), stages)
        first = pipelines[(model, "streaming")]
        first.warm_up()
        first.prepared.wait()
        shared = shared or stages
        rss_default = rss_default or rss_mb()

    speaker = shared.tts if shared else None
    spoken: dict[str, Path] = {}
    for i, question in enumerate(q for qs in QUESTION_SETS.values() for q in qs):
        spoken[question] = write_wav(speaker.synthesize(question), work / f"q{i:02d}.wav")  # type: ignore[union-attr]

    first_audio: dict[tuple[str, str, str, str], list[float]] = {}
    totals: dict[tuple[str, str, str, str], list[float]] = {}
    words: dict[tuple[str, str], list[int]] = {}
    load_before = os.getloadavg()[0]
    sources = {"pasted text": lambda q: {"text": q}, "typed text": lambda q: {"text": q},
               "speech": lambda q: {"audio_path": spoken[q]}}
    questions = [(r, s, q) for r in range(args.rounds) for s, qs in QUESTION_SETS.items() for q in qs]
    # One model at a time (the first turn after the other model ran is ~2 s slower), and each way of asking goes
    # through every question in turn: a question asked right after itself would find its whole prompt evaluated.
    for model, mode, source in ((m, mode, src) for m in args.models for mode in args.modes for src in sources):
        pipeline = pipelines[(model, mode)]
        for _, set_name, question in questions:
            if source == "typed text":
                type_question(pipeline, question)
            done = run_turn(pipeline, **sources[source](question))
            key = (model, mode, set_name, source)
            first_audio.setdefault(key, []).append(done.timings_s["first_audio_s"])
            totals.setdefault(key, []).append(done.timings_s["total_s"])
            words.setdefault((model, mode), []).append(len(done.reply.text.split()))
            print(f"{model:20s} {mode:14s} {source:12s} {question[:40]:40s} first audio "
                  f"{first_audio[key][-1]:.2f} s", flush=True)
    load_after = os.getloadavg()[0]
    write_results(args, first_audio, totals, words, (load_before, load_after), (rss_before, rss_default))


def write_results(args: argparse.Namespace, first_audio: dict, totals: dict, words: dict,
                  load: tuple[float, float], rss: tuple[float, float]) -> None:
    n = sum(len(q) for q in QUESTION_SETS.values())
    lines = [
        "# Latency benchmark",
        "",
        f"{n} questions ({', '.join(f'{len(q)} {k}' for k, q in QUESTION_SETS.items())}) × {args.rounds} round(s), "
        "each asked pasted (sent at once), typed (read ahead word by word while typed, as the app does) and spoken "
        "(Piper speech of the question, decoded and transcribed by whisper.cpp), for each "
        f"local model, {' and '.join(args.modes)}; one model after the other (the app "
        "runs one; the first turn after switching models is about 2 s slower), each way of asking through all the "
        "questions in turn (a question asked right after itself would find its prompt already evaluated). Offline "
        "stack: llama.cpp "
        "(portable AVX2 build), MiniLM retrieval + emotion, Piper joe-medium, TTS-timed lip-sync; response cache off; "
        f"knowledge-base documents prepared first, as after the app's start-up. 2-core machine, load average "
        f"{load[0]:.1f} before and {load[1]:.1f} after. Written by `python bench/latency/run.py` on "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "Time to first audio = from the moment the turn starts (send pressed, or the end of the spoken question) to "
        "the first clip's audio, lip-sync and emotion being ready to play.",
        "",
        "A typed question's reading ahead runs before its turn starts, so it is not in the figure: the app does it"
        " while the question is typed, and a busy model skips it.",
        "",
        "| model | mode | questions | from | median | p95 | turn total (median) |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for (model, mode, set_name, source), values in first_audio.items():
        lines.append(f"| {local_model(model).label} | {mode} | {set_name} | {source} | "
                     f"{statistics.median(values):.2f} s | {percentile(values, 95):.2f} s | "
                     f"{statistics.median(totals[(model, mode, set_name, source)]):.2f} s |")
    lines += ["", "| model | mode | reply words (median) |", "|---|---|---:|"]
    for (model, mode), counts in words.items():
        lines.append(f"| {local_model(model).label} | {mode} | {statistics.median(counts):.0f} |")
    default = args.models[0]
    for source in ("pasted text", "typed text"):
        text_all = [v for (m, mode, _, src), vs in first_audio.items() if m == default and mode == "streaming"
                    and src == source for v in vs]
        lines += ["", f"{local_model(default).label}, streaming, {source}, all questions: median "
                  f"{statistics.median(text_all):.2f} s, p95 {percentile(text_all, 95):.2f} s to the first audio."]
    lines += ["", f"Memory: the process used {rss[0]:.0f} MB before loading and {rss[1]:.0f} MB with the default "
              f"stack loaded ({local_model(default).label} and every other stage), before the other models."]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
