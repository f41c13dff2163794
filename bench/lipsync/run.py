"""Benchmarks every lip-sync path of the project against Rhubarb Lip Sync on held-out speech; writes results.md.

Speech: every voice of ``data/lipsync/voices.json`` speaks ``heldout_sentences.txt`` (never used for fitting or
tuning); the 'heldout' voices were never heard in training either, and are the ones the goals are judged on.
Ground truth: the synthesiser's own phoneme timings on Rhubarb's shapes, 10 ms frames (``corpus.truth_shapes``).
Each system gets what it would get in use: the TTS path the phoneme timings, the transcript paths audio + text,
the audio path and Rhubarb's phonetic recogniser audio only. Scores: exact shape agreement, rest/speech agreement,
compute per second of audio in-process, and per second of audio as a whole command line (a new process per clip,
model loading included, like Rhubarb). Run: ``flock /tmp/avatar-heavy.lock python bench/lipsync/run.py``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from corpus import ROOT, Voice, sentences, speech, truth_shapes, voices  # noqa: I001 - corpus sets sys.path
from timing_check import timing_lag

from core.config import load_config
from core.errors import ModelNotFoundError
from core.lipsync import AudioLipsync, RhubarbLipsync, TranscriptLipsync, TTSTimingLipsync
from core.lipsync.audio import FRAME_S, analyse
from core.lipsync.whisper import WhisperWords
from core.types import MouthCue, Speech

HERE = Path(__file__).resolve().parent
UNPACKED_RHUBARB = ROOT / ".cache" / "tools" / "rhubarb" / "rhubarb"
CLI_CLIPS = 6
"""Clips per held-out voice timed as whole command lines (a process each)."""
NOTES = (
    "Notes. The truth reads phonemes through the project's own tables (`data/visemes/`), whose "
    "phoneme→shape choices Rhubarb does not follow exactly, so Rhubarb's exact agreement understates it "
    "(its speech/rest timing is as good as ours); a loudness-only baseline is listed for scale. Rhubarb's "
    'in-process figure is its program run per clip (it has no library). The command-line figures include '
    'the Python interpreter and numpy start-up, which dominate clips of a few seconds on this loaded '
    'machine. whisper.cpp time swings with the load of the shared machine.'
)
"""Said under the speed table of results.md."""
WHISPER_CLIPS = 10
"""whisper.cpp runs at 1-7x real time on this loaded machine: its row uses the first 10 held-out sentences."""


@dataclass
class System:
    """One row: a name, how it works, the backend, what input it gets and the command line that runs it."""

    name: str
    how: str
    backend: object
    keep_text: bool
    cli: list[str] | None
    heldout_only: bool = False
    clip_limit: int = 0
    """Only the first N clips of each voice (0: all): for rows too slow on this shared machine."""
    results: dict = field(default_factory=dict)


def systems(rhubarb: str) -> list[System]:
    """Every project path, Rhubarb's two recognisers (when a binary is found) and two trivial baselines."""
    python = [sys.executable, "-m", "core.lipsync"]
    rows = [
        System("tts", "TTS phoneme timings", TTSTimingLipsync(), True, None),
        System("transcript", "transcript forced onto the audio (CMUdict + the classifier), no ASR",
               TranscriptLipsync(), True, [*python, "--source", "transcript"]),
        System("audio", "audio classifier + Viterbi", AudioLipsync(), False, [*python, "--source", "audio"]),
    ]
    try:
        whisper = WhisperWords(load_config())
        rows.insert(2, System(f"whisper words (first {WHISPER_CLIPS} sentences)",
                              "no transcript: whisper.cpp tiny.en's own words and times", TranscriptLipsync(whisper),
                              False, None, heldout_only=True, clip_limit=WHISPER_CLIPS))
    except ModelNotFoundError as exc:
        print(f"no whisper rows: {exc}")
    if rhubarb:
        for recognizer, keep_text, how in (("pocketSphinx", True, "Rhubarb 1.14, PocketSphinx + transcript"),
                                           ("pocketSphinx", False, "Rhubarb 1.14, PocketSphinx, no transcript"),
                                           ("phonetic", False, "Rhubarb 1.14, phonetic recogniser")):
            name = f"rhubarb {recognizer}" + (" + transcript" if keep_text else "")
            rows.append(System(name, how, RhubarbLipsync(rhubarb, recognizer), keep_text,
                               [rhubarb, "-q", "-r", recognizer, "-f", "json", "--extendedShapes", "GHX"],
                               heldout_only=True))
    rows += [System("baseline: B while loud", "shape B wherever the loudness gate finds speech, else X",
                    _GateBaseline(), False, None),
             System("baseline: always B", "shape B everywhere", None, False, None)]
    return rows


class _GateBaseline:
    """Energy only: B inside the loudness gate, X outside."""

    def cues(self, clip: Speech) -> list[MouthCue]:
        speaking = analyse(clip.audio, clip.sample_rate).speech
        cues: list[MouthCue] = []
        for i, on in enumerate(speaking):
            shape = "B" if on else "X"
            if cues and cues[-1].shape == shape:
                cues[-1] = MouthCue(cues[-1].start_s, (i + 1) * FRAME_S, shape)
            else:
                cues.append(MouthCue(i * FRAME_S, (i + 1) * FRAME_S, shape))
        return cues


def frame_cues(cues: list[MouthCue], duration_s: float) -> np.ndarray:
    """The shape at the centre of every 10 ms frame."""
    centres = np.arange(int(duration_s / FRAME_S)) * FRAME_S + FRAME_S / 2
    ends = np.array([c.end_s for c in cues])
    return np.array([cues[i].shape for i in np.minimum(np.searchsorted(ends, centres, side="right"), len(cues) - 1)])


def run_system(system: System, clips: list[Speech]) -> dict:
    """Agreements, compute and the predicted share of B over ``clips``."""
    same = state = frames = b_got = b_true = 0
    compute = 0.0
    whisper = getattr(system.backend, "whisper", None)
    if system.backend is not None and hasattr(system.backend, "track"):
        system.backend.track(clips[0] if system.name == "tts" else _input(system, clips[0]))  # load once
    for clip in clips:
        given = clip if system.name == "tts" else _input(system, clip)
        started = time.perf_counter()
        if system.backend is None:
            cues = [MouthCue(0.0, clip.duration_s, "B")]
        elif isinstance(system.backend, _GateBaseline):
            cues = system.backend.cues(given)
        else:
            cues = list(system.backend.track(given).mouth_cues)
        compute += time.perf_counter() - started
        truth = truth_shapes(clip)
        got = frame_cues(cues, clip.duration_s)[: len(truth)]
        same += int((truth == got).sum())
        state += int(((truth == "X") == (got == "X")).sum())
        b_got += int((got == "B").sum())
        b_true += int((truth == "B").sum())
        frames += len(truth)
    audio_s = sum(c.duration_s for c in clips)
    return {"shape": same / frames, "state": state / frames, "ms_per_s": compute / audio_s * 1000,
            "b_got": b_got / frames, "b_true": b_true / frames, "whisper": whisper is not None}


def _input(system: System, clip: Speech) -> Speech:
    return Speech(clip.text if system.keep_text else "", clip.audio, clip.sample_rate)


def time_cli(system: System, clips: list[Speech], folder: Path) -> float:
    """Wall-clock seconds per audio second, one process per clip (start-up and model loading included)."""
    import soundfile as sf

    total = 0.0
    for k, clip in enumerate(clips):
        wav, text = folder / f"clip{k}.wav", folder / f"clip{k}.txt"
        sf.write(str(wav), clip.audio, clip.sample_rate, subtype="PCM_16")
        text.write_text(clip.text, encoding="utf-8")
        command = [*system.cli, *(["-d", str(text)] if system.keep_text else []), str(wav)]
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
        total += time.perf_counter() - started
    return total / sum(c.duration_s for c in clips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N held-out sentences")
    parser.add_argument("--rhubarb", default=str(UNPACKED_RHUBARB) if UNPACKED_RHUBARB.is_file() else "")
    args = parser.parse_args()
    texts = sentences("heldout")[: args.limit or None]
    rows = systems(args.rhubarb)
    corpus: dict[str, list[Speech]] = {v.name: [speech(v, t) for t in texts] for v in voices()}
    lags = {v.name: timing_lag(corpus[v.name]) for v in voices()}
    for system in rows:
        for voice in voices():
            if system.heldout_only and voice.split != "heldout":
                continue
            system.results[voice.name] = run_system(system, corpus[voice.name][: system.clip_limit or None])
            r = system.results[voice.name]
            print(f"{system.name:34s} {voice.name:16s} shape {r['shape']:6.1%}  rest/speech {r['state']:6.1%}  "
                  f"{r['ms_per_s']:8.2f} ms/s", flush=True)
    cli: dict[str, float] = {}
    heldout = [v for v in voices() if v.split == "heldout"]
    with tempfile.TemporaryDirectory(prefix="lipsync-cli-") as tmp:
        cli_clips = [c for v in heldout for c in corpus[v.name][:CLI_CLIPS]]
        for system in rows:
            if system.cli:
                cli[system.name] = time_cli(system, cli_clips, Path(tmp))
                print(f"command line {system.name}: {cli[system.name]:.3f} s per audio s", flush=True)
    write_results(rows, heldout, corpus, cli, lags, len(texts), len(cli_clips))


def _mean(system: System, names: list[str], key: str) -> float:
    return statistics.fmean(system.results[n][key] for n in names)


def write_results(rows: list[System], heldout: list[Voice], corpus: dict, cli: dict, lags: dict,
                  sentence_count: int, cli_count: int) -> None:
    seen = [v for v in voices() if v.split == "train"]
    names = [v.name for v in heldout]
    audio_s = {v.name: sum(c.duration_s for c in corpus[v.name]) for v in voices()}
    lines = [
        "# Lip-sync benchmark",
        "",
        f"Written by `python bench/lipsync/run.py` (under `flock /tmp/avatar-heavy.lock` on a shared 2-core machine). "
        f"{sentence_count} held-out sentences (`data/lipsync/heldout_sentences.txt`, never used for fitting or "
        f"tuning), each spoken by every voice of `data/lipsync/voices.json`. Truth: each synthesiser's own phoneme "
        "timings on Rhubarb's 9 shapes, 10 ms frames. The audio classifier was trained only on the 'train' voices "
        "speaking other sentences (`train_audio.py`).",
        "",
        "## Held-out voices (never heard in training)",
        "",
        "| system | how | " + " | ".join(f"{n} shape" for n in names) + " | mean shape | mean rest/speech | "
        "predicted B (truth) |",
        "|---|---|" + "---:|" * (len(names) + 3),
    ]
    for s in rows:
        if all(n in s.results for n in names):
            lines.append(f"| {s.name} | {s.how} | " + " | ".join(f"{s.results[n]['shape']:.1%}" for n in names)
                         + f" | **{_mean(s, names, 'shape'):.1%}** | {_mean(s, names, 'state'):.1%} | "
                         f"{_mean(s, names, 'b_got'):.0%} ({_mean(s, names, 'b_true'):.0%}) |")
    lines += ["", "## Speed (held-out voices)", "",
              f"In-process: compute per second of audio, the backend already loaded (whisper.cpp time included "
              f"where used). Command line: wall-clock per second of audio for {cli_count} clips, a new process "
              "per clip (interpreter start-up, imports and model loading included), the way Rhubarb runs.", "",
              "| system | in-process, ms per audio s | command line, s per audio s |",
              "|---|---:|---:|"]
    for s in rows:
        if all(n in s.results for n in names) and s.backend is not None and s.name != "baseline: B while loud":
            lines.append(f"| {s.name} | {_mean(s, names, 'ms_per_s'):.1f} | "
                         + (f"{cli[s.name]:.3f} |" if s.name in cli else "— |"))
    lines += speed_goals(rows, names, cli)
    lines += ["", NOTES]
    lines += ["", "## Voices heard in training, same held-out sentences", "",
              "| system | " + " | ".join(v.name for v in seen) + " |", "|---|" + "---:|" * len(seen)]
    for s in rows:
        if all(v.name in s.results for v in seen):
            lines.append(f"| {s.name} | " + " | ".join(f"{s.results[v.name]['shape']:.1%}" for v in seen) + " |")
    lines += ["", "## The TTS-timed path on every synthesiser", "",
              "Agreement of the TTS path is near 100% by construction (truth and path read the same timings "
              "through the same tables). What it does not show is whether a synthesiser's timings sit on its "
              "audio: the lag is the shift (±100 ms searched) that best lines up the timings' speech/rest with "
              "the audio's own loudness gate, and the last column that agreement at the best shift.", "",
              "| voice | about | clips, audio s | TTS path shape agreement | timing lag vs the audio, ms | "
              "speech/rest agreement at that lag |",
              "|---|---|---:|---:|---:|---:|"]
    tts = next(s for s in rows if s.name == "tts")
    for v in voices():
        lag_ms, agree = lags[v.name]
        lines.append(f"| {v.name} | {v.about} | {len(corpus[v.name])}, {audio_s[v.name]:.0f} | "
                     f"{tts.results[v.name]['shape']:.1%} | {lag_ms:+.0f} | {agree:.1%} |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {HERE / 'results.md'}")


def speed_goals(rows: list[System], names: list[str], cli: dict) -> list[str]:
    """Lines comparing each project path with the Rhubarb mode it must beat (speed ratios, agreement margins)."""
    by_name = {s.name: s for s in rows}
    pairs = (("transcript", "rhubarb pocketSphinx + transcript"), ("audio", "rhubarb phonetic"))
    out = ["", "| goal | agreement, ours vs Rhubarb | in-process speed-up (goal ≥ 50×) | "
           "command-line speed-up (goal ≥ 20×) |", "|---|---:|---:|---:|"]
    for ours, theirs in pairs:
        if ours not in by_name or theirs not in by_name:
            continue
        a, b = by_name[ours], by_name[theirs]
        inproc = _mean(b, names, "ms_per_s") / max(_mean(a, names, "ms_per_s"), 1e-9)
        command = cli[theirs] / cli[ours] if ours in cli and theirs in cli else float("nan")
        out.append(f"| {ours} vs {theirs} | {_mean(a, names, 'shape'):.1%} vs {_mean(b, names, 'shape'):.1%} | "
                   f"{inproc:.0f}× | {command:.1f}× |")
    return out


if __name__ == "__main__":
    main()
