"""Latency benchmark: time to first audio from sending text and from the end of a spoken question.

Runs scripted turns on the embedded offline stack, streaming and non-streaming interleaved question by question
(so both see the same machine load), and writes ``bench/latency/results.md``. The response cache is off, so every
turn does the real work. Run: ``python bench/latency/run.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
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

from core.config import load_config  # noqa: E402
from core.pipeline import Pipeline  # noqa: E402
from core.tts import write_wav  # noqa: E402
from core.types import TurnComplete  # noqa: E402

HERE = Path(__file__).resolve().parent
QUESTIONS = [q.strip() for q in (HERE / "questions.txt").read_text().splitlines() if q.strip()]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    return float(np.percentile(values, q))


def run_turn(pipeline: Pipeline, **kwargs: object) -> TurnComplete:
    """One turn with no history; returns its final event."""
    events = list(pipeline.run_turn([], session_id="bench", **kwargs))
    done = events[-1]
    if not isinstance(done, TurnComplete):
        raise RuntimeError(f"turn did not complete: {done!r}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="times to go through the question list")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="latency-bench-"))
    base = replace(load_config(), response_cache=False, cache_dir=ROOT / ".cache")
    streaming = Pipeline(replace(base, streaming=True))
    streaming.warm_up()
    modes = {"streaming": streaming, "non-streaming": Pipeline(replace(base, streaming=False), streaming.stages)}

    spoken: dict[str, Path] = {}
    for i, question in enumerate(QUESTIONS):
        spoken[question] = write_wav(streaming.stages.tts.synthesize(question), work / f"q{i:02d}.wav")

    results: dict[tuple[str, str], list[float]] = {}
    totals: dict[tuple[str, str], list[float]] = {}
    words: dict[str, list[int]] = {}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for question in QUESTIONS:
            for mode, pipeline in modes.items():
                for source, turn in (("text", {"text": question}), ("speech", {"audio_path": spoken[question]})):
                    done = run_turn(pipeline, **turn)
                    results.setdefault((mode, source), []).append(done.timings_s["first_audio_s"])
                    totals.setdefault((mode, source), []).append(done.timings_s["total_s"])
                    words.setdefault(mode, []).append(len(done.reply.text.split()))
                print(f"{mode:14s} {question[:40]:40s} text→audio {results[(mode, 'text')][-1]:.2f} s, "
                      f"speech→audio {results[(mode, 'speech')][-1]:.2f} s", flush=True)
    load_after = os.getloadavg()[0]

    lines = [
        "# Latency benchmark",
        "",
        f"{len(QUESTIONS)} questions × {args.rounds} round(s), each asked typed and spoken (Piper speech of the "
        "question, decoded and transcribed by whisper.cpp), streaming and non-streaming interleaved. Offline stack: "
        "SmolLM2-135M (llama.cpp), MiniLM retrieval + emotion, Piper joe-medium, TTS-timed lip-sync; response cache "
        f"off. 2-core machine, load average {load_before:.1f} before and {load_after:.1f} after. "
        f"Written by `python bench/latency/run.py` on {time.strftime('%Y-%m-%d')}.",
        "",
        "Time to first audio = from the moment the turn starts (send pressed, or the end of the spoken question) to "
        "the first clip's audio, lip-sync and emotion being ready to play.",
        "",
        "| mode | from | median | p95 | turn total (median) | reply words (median) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for mode in modes:
        for source in ("text", "speech"):
            values = results[(mode, source)]
            lines.append(
                f"| {mode} | {source} | {statistics.median(values):.2f} s | {percentile(values, 95):.2f} s | "
                f"{statistics.median(totals[(mode, source)]):.2f} s | {statistics.median(words[mode]):.0f} |"
            )
    for source in ("text", "speech"):
        ratio = statistics.median(results[("non-streaming", source)]) / statistics.median(
            results[("streaming", source)]
        )
        lines.append(f"\nFrom {source}: non-streaming takes {ratio:.2f}× as long as streaming to the first audio.")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
