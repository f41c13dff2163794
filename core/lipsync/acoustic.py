"""Mouth shapes from the sound alone: a linear (softmax) classifier over stacked frame features, smoothed by Viterbi.

The classifier's weights live in ``data/visemes/audio_shapes.json``, written by ``bench/lipsync/train_audio.py``
from the TRAINING half of the benchmark sentences only (Piper voice, Piper's alignments as labels). Its per-frame
log-probabilities also drive the transcript aligner (``core.lipsync.align``). Frames outside the loudness gate
are rest whatever the classifier says, so noise and room tone do not move the mouth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from core.errors import ConfigError
from core.lipsync.audio import CONTEXT_FRAMES, FEATURE_NAMES, FRAME_S, Frames, analyse
from core.lipsync.phonemes import VisemeSegment
from core.lipsync.tables import VISEME_DIR, shape_table
from core.types import RHUBARB_SHAPES

REST = "X"


@dataclass(frozen=True, slots=True)
class ShapeModel:
    """Softmax regression from standardised stacked features to Rhubarb shapes, plus the Viterbi switch cost."""

    shapes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    switch_penalty: float

    def log_probs(self, frames: Frames) -> np.ndarray:
        """Log-probability of every shape for every frame (frames × shapes); rest is certain outside speech."""
        z = ((frames.stacked() - self.mean) / self.scale) @ self.weights + self.bias
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        rest = self.shapes.index(REST)
        log_p[~frames.speech] = -1e9
        log_p[~frames.speech, rest] = 0.0
        return log_p

    def to_json(self) -> dict:
        """The document ``load_shape_model`` reads."""
        return {
            "features": expected_features(),
            "shapes": list(self.shapes),
            "mean": self.mean.round(6).tolist(),
            "scale": self.scale.round(6).tolist(),
            "weights": self.weights.round(6).tolist(),
            "bias": self.bias.round(6).tolist(),
            "switch_penalty": self.switch_penalty,
        }


def expected_features() -> list[str]:
    """Names of the stacked feature columns, in order (what the model file must have been trained on)."""
    return [f"{name}@{offset}" for offset in CONTEXT_FRAMES for name in FEATURE_NAMES]


def load_shape_model(path: Path) -> ShapeModel:
    """Read and validate a shape model file.

    Raises:
        ConfigError: unreadable, or its features, shapes or array sizes do not match this code.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read shape model {path}: {exc}") from exc
    if raw.get("features") != expected_features():
        raise ConfigError(f"{path}: trained on other features; rerun bench/lipsync/train_audio.py")
    shapes = tuple(raw.get("shapes", ()))
    if not shapes or not set(shapes) <= set(RHUBARB_SHAPES) or len(set(shapes)) != len(shapes) or REST not in shapes:
        raise ConfigError(f"{path}: 'shapes' must be distinct Rhubarb shapes including {REST!r}, got {shapes}")
    dims = len(expected_features())
    try:
        arrays = {key: np.asarray(raw[key], dtype=np.float64) for key in ("mean", "scale", "weights", "bias")}
        penalty = float(raw["switch_penalty"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: missing or non-numeric field ({exc})") from exc
    sizes = {"mean": (dims,), "scale": (dims,), "weights": (dims, len(shapes)), "bias": (len(shapes),)}
    for key, size in sizes.items():
        if arrays[key].shape != size or not np.isfinite(arrays[key]).all():
            raise ConfigError(f"{path}: {key!r} must be {size} finite numbers, got shape {arrays[key].shape}")
    if (arrays["scale"] <= 0).any() or penalty < 0:
        raise ConfigError(f"{path}: 'scale' must be positive and 'switch_penalty' non-negative")
    return ShapeModel(shapes, arrays["mean"], arrays["scale"], arrays["weights"], arrays["bias"], penalty)


@cache
def shape_model() -> ShapeModel:
    """The trained model in ``data/visemes/audio_shapes.json``, loaded once."""
    return load_shape_model(VISEME_DIR / "audio_shapes.json")


def viterbi(log_probs: np.ndarray, switch_penalty: float) -> np.ndarray:
    """The most likely class per frame when every change of class costs ``switch_penalty`` (log units)."""
    count, classes = log_probs.shape
    score = log_probs[0].copy()
    back = np.empty((count, classes), dtype=np.int16)
    back[0] = np.arange(classes)
    for t in range(1, count):
        best = int(score.argmax())
        switch = score[best] - switch_penalty
        stay = score >= switch
        back[t] = np.where(stay, np.arange(classes), best)
        score = np.where(stay, score, switch) + log_probs[t]
    path = np.empty(count, dtype=np.int64)
    path[-1] = int(score.argmax())
    for t in range(count - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def frame_shapes(frames: Frames, model: ShapeModel | None = None) -> list[str]:
    """One Rhubarb shape per frame from the sound alone."""
    model = model or shape_model()
    if frames.silent:
        return [REST] * frames.count
    return [model.shapes[k] for k in viterbi(model.log_probs(frames), model.switch_penalty)]


def segments_from_audio(audio: np.ndarray, sample_rate: int) -> list[VisemeSegment]:
    """Viseme segments from the sound alone (each carries its shape; the viseme is that shape's representative)."""
    representative = shape_table().representative
    segments: list[VisemeSegment] = []
    for i, shape in enumerate(frame_shapes(analyse(audio, sample_rate))):
        start, end = i * FRAME_S, (i + 1) * FRAME_S
        if segments and segments[-1].shape == shape:
            segments[-1] = VisemeSegment(segments[-1].viseme, segments[-1].start_s, end, shape)
        else:
            segments.append(VisemeSegment(representative[shape], start, end, shape))
    return segments
