"""Benchmark speech input: whisper.cpp tiny.en real-time factor and Silero VAD cost per second of audio.

Speech is made with espeak-ng from ``data/asr/sentences.txt``. Every figure is the median of ``--runs`` runs;
results go to ``bench/asr/results.md``. Run from the repository root: ``python bench/asr/run.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.asr import SAMPLE_RATE, create_asr  # noqa: E402 - after the path setup
from core.audio import load_audio  # noqa: E402
from core.config import DATA_DIR, load_config  # noqa: E402
from core.vad import EndOfTurnDetector, speech_segments, trim_silence  # noqa: E402

RESULTS = Path(__file__).with_name("results.md")


def espeak(text: str, folder: Path) -> np.ndarray:
    wav = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True)
    return load_audio(wav, SAMPLE_RATE)


def timed_s(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and fastest wall time of ``runs`` calls (the fastest is the least disturbed by other processes)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def stream(detector: EndOfTurnDetector, audio: np.ndarray, chunk: int = 1600) -> None:
    detector.reset()
    for start in range(0, audio.size, chunk):
        detector.feed(audio[start : start + chunk])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    config = load_config({**os.environ, "AVATAR_ASR_THREADS": str(args.threads)})
    started = time.perf_counter()
    asr = create_asr(config)
    load_s = time.perf_counter() - started
    sentences = [s for s in (DATA_DIR / "asr" / "sentences.txt").read_text().splitlines() if s.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        short = trim_silence(espeak(sentences[0], Path(tmp)))
        long = trim_silence(espeak(" ".join(sentences[1:5]), Path(tmp)))
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    padded = np.concatenate([silence, long, silence])
    asr.transcribe(short)  # warm-up: loads the VAD, touches the weights

    rows = []
    for label, clip in (("short", short), ("long", long)):
        seconds = clip.size / SAMPLE_RATE
        recognise, fastest = timed_s(lambda clip=clip: asr._transcribe(clip, ""), args.runs)
        whole, _ = timed_s(lambda clip=clip: asr.transcribe(clip), args.runs)
        rows.append((label, seconds, recognise, recognise / seconds, fastest / seconds, whole / seconds))

    padded_s = padded.size / SAMPLE_RATE
    vad_s, _ = timed_s(lambda: speech_segments(padded), args.runs)
    detector = EndOfTurnDetector()
    eot_s, _ = timed_s(lambda: stream(detector, padded), args.runs)

    load = os.getloadavg()[0]
    lines = [
        "# ASR benchmark (whisper.cpp tiny.en, Silero VAD)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{load:.1f} at the end (the machine is shared: figures under load are slower than on an idle one).",
        f"whisper.cpp threads: {args.threads}; median of {args.runs} runs; backend load {load_s:.2f} s; "
        "speech: espeak-ng, silence trimmed.",
        "",
        "| clip | audio (s) | recognise, median (s) | RTF median | RTF fastest | RTF with VAD (median) |",
        "|---|---|---|---|---|---|",
        *(f"| {label} | {sec:.2f} | {rec:.2f} | {rtf:.2f} | {rtf_min:.2f} | {rtf_w:.2f} |"
          for label, sec, rec, rtf, rtf_min, rtf_w in rows),
        "",
        "| VAD | audio (s) | time (s) | ms per audio second |",
        "|---|---|---|---|",
        f"| speech_segments (whole clip) | {padded_s:.2f} | {vad_s:.3f} | {1000 * vad_s / padded_s:.1f} |",
        f"| EndOfTurnDetector (100 ms chunks) | {padded_s:.2f} | {eot_s:.3f} | {1000 * eot_s / padded_s:.1f} |",
        "",
        "RTF = processing time / audio duration (below 1 is faster than real time).",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
