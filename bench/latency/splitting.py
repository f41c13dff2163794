"""Where the first spoken piece may end: phrase breaks on (the default) against off, in one run, default model.

With breaks off, the first pieces end only at a sentence end or a comma (``core.clauses.PHRASE_BREAK_PIECES`` = 0);
with them on, also before a word that opens a phrase. Each of the latency questions is asked typed, streaming,
once per variant, the variant order alternating question by question so both see the same machine load. Reported:
time to first audio, and the gaps a listener hears when a piece is not ready by the time the one before it has
played (clips play back to back from the first one's arrival). Writes ``bench/latency/splitting.md``.
Run: ``python bench/latency/splitting.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import core.clauses  # noqa: E402
from bench.latency.run import QUESTION_SETS, bench_config, percentile  # noqa: E402
from core.pipeline import Pipeline, Stages  # noqa: E402
from core.types import SpokenClip, TurnComplete  # noqa: E402

HERE = Path(__file__).resolve().parent
VARIANTS = {"phrase breaks (default)": core.clauses.PHRASE_BREAK_PIECES, "sentence or comma only": 0}


def spoken_turn(pipeline: Pipeline, question: str) -> tuple[float, float, int]:
    """Time to first audio, total gap between clips, and the first clip's words, for one typed turn."""
    started = time.perf_counter()
    arrivals: list[tuple[float, SpokenClip]] = []
    for event in pipeline.run_turn([], session_id="splitting", text=question):
        if isinstance(event, SpokenClip):
            arrivals.append((time.perf_counter() - started, event))
        elif isinstance(event, TurnComplete):
            break
    if not arrivals:
        raise RuntimeError(f"no audio for {question!r}")
    clock, gaps = arrivals[0][0], 0.0
    for arrived, clip in arrivals:
        if arrived > clock:
            gaps += arrived - clock
            clock = arrived
        clock += clip.duration_s
    return arrivals[0][0], gaps, len(arrivals[0][1].text.split())


def main() -> None:
    config = bench_config()
    pipeline = Pipeline(config, Stages(config))
    pipeline.warm_up()
    pipeline.prepared.wait()
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in VARIANTS}
    load_before = os.getloadavg()[0]
    questions = [q for qs in QUESTION_SETS.values() for q in qs]
    for i, question in enumerate(questions):
        order = list(VARIANTS) if i % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            core.clauses.PHRASE_BREAK_PIECES = VARIANTS[name]
            results[name].append(spoken_turn(pipeline, question))
            first, gaps, _ = results[name][-1]
            print(f"{name:24s} {question[:45]:45s} first audio {first:.2f} s, gaps {gaps:.2f} s", flush=True)
    write_results(results, len(questions), (load_before, os.getloadavg()[0]), pipeline.stages.llm.model)


def write_results(results: dict[str, list[tuple[float, float, int]]], n: int, load: tuple[float, float],
                  model: str) -> None:
    lines = [
        "# Where the first spoken piece may end",
        "",
        f"{n} latency questions (`questions.txt`, `questions_kb.txt`), typed, streaming, default model ({model}), "
        "each asked once per variant, the order alternating question by question; response cache off; documents "
        f"prepared first. 2-core machine, load average {load[0]:.1f} before and {load[1]:.1f} after. Written by "
        f"`python bench/latency/splitting.py` on {time.strftime('%Y-%m-%d')}.",
        "",
        "Gaps = silence a listener hears between clips because the next one was not ready when the one before it "
        "ended (clips play back to back from the first one's arrival).",
        "",
        "| first pieces may end | first audio, median | p95 | max | first piece, words (median) | turns with a gap "
        "| gaps per turn, mean |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in results.items():
        firsts = [r[0] for r in rows]
        lines.append(f"| {name} | {statistics.median(firsts):.2f} s | {percentile(firsts, 95):.2f} s | "
                     f"{max(firsts):.2f} s | {statistics.median(r[2] for r in rows):.0f} | "
                     f"{sum(r[1] > 0 for r in rows)}/{len(rows)} | {statistics.mean(r[1] for r in rows):.2f} s |")
    on, off = (statistics.median(r[0] for r in results[name]) for name in VARIANTS)
    lines += ["", f"Median first audio with phrase breaks / without: {on / off:.2f}."]
    (HERE / "splitting.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
