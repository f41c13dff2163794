"""Mouth shapes from the sound alone: a small neural network over stacked frame features, smoothed by Viterbi.

The network (one hidden ReLU layer, or none) gives every 10 ms frame a probability for each of the 15 Oculus
visemes; a shape's probability is the sum over its visemes. Its weights live in ``data/visemes/audio_shapes.json``,
written by ``bench/lipsync/train_audio.py`` from the TRAINING voices and sentences of ``data/lipsync/`` only. The
audio path decodes shapes with Viterbi (a cost per change of shape, and the shapes' training priors partly divided
out so the most frequent shape does not swallow the rest); the transcript aligner (``core.lipsync.align``) uses the
viseme log-probabilities. Frames outside the loudness gate are rest whatever the network says.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from core.datafiles import read_json
from core.errors import ConfigError
from core.lipsync.audio import CONTEXT_FRAMES, FEATURE_NAMES, FRAME_S, Frames, analyse
from core.lipsync.phonemes import SILENCE, VisemeSegment
from core.lipsync.tables import VISEME_DIR, shape_table
from core.types import OCULUS_VISEMES, RHUBARB_SHAPES

REST = "X"
IMPOSSIBLE = -1e9
"""Log-probability of a class that cannot be (speech classes outside the loudness gate)."""


@dataclass(frozen=True, slots=True)
class ShapeModel:
    """Frame classifier: standardise, optional hidden ReLU layer, softmax over visemes; plus the decoding settings.

    ``layers`` are (weights, bias) pairs applied in order, ReLU between them. ``prior_weight`` is how much of each
    shape's log training prior the audio path subtracts before Viterbi; ``switch_penalty`` is Viterbi's cost of a
    change of shape (log units).
    """

    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    log_prior: np.ndarray
    prior_weight: float
    switch_penalty: float

    @property
    def shapes(self) -> tuple[str, ...]:
        """The Rhubarb shapes the audio path decodes (all of them, in the usual order)."""
        return RHUBARB_SHAPES

    def class_log_probs(self, frames: Frames) -> np.ndarray:
        """Log-probability of every viseme for every frame (frames × classes); rest is certain outside speech."""
        z = ((frames.stacked() - self.mean) / self.scale).astype(np.float32)
        for k, (weights, bias) in enumerate(self.layers):
            z = z @ weights + bias
            if k < len(self.layers) - 1:
                np.maximum(z, 0.0, out=z)
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        rest = self.classes.index(SILENCE)
        log_p[~frames.speech] = IMPOSSIBLE
        log_p[~frames.speech, rest] = 0.0
        return log_p

    def shape_log_probs(self, frames: Frames) -> np.ndarray:
        """Log-probability of every Rhubarb shape for every frame (frames × shapes): the sum over its visemes."""
        probs = np.exp(self.class_log_probs(frames)) @ shape_matrix(self.classes)
        with np.errstate(divide="ignore"):
            return np.maximum(np.log(probs), IMPOSSIBLE)

    def to_json(self) -> dict:
        """The document ``load_shape_model`` reads."""
        return {
            "features": expected_features(),
            "classes": list(self.classes),
            "mean": self.mean.round(6).tolist(),
            "scale": self.scale.round(6).tolist(),
            "layers": [{"weights": w.round(5).tolist(), "bias": b.round(5).tolist()} for w, b in self.layers],
            "shape_log_prior": self.log_prior.round(5).tolist(),
            "prior_weight": self.prior_weight,
            "switch_penalty": self.switch_penalty,
        }


@cache
def shape_matrix(classes: tuple[str, ...]) -> np.ndarray:
    """classes × shapes: 1 where the viseme belongs to the shape."""
    shapes = shape_table().shapes
    matrix = np.zeros((len(classes), len(RHUBARB_SHAPES)), dtype=np.float32)
    for i, viseme in enumerate(classes):
        matrix[i, RHUBARB_SHAPES.index(shapes[viseme])] = 1.0
    return matrix


def expected_features() -> list[str]:
    """Names of the stacked feature columns, in order (what the model file must have been trained on)."""
    return [f"{name}@{offset}" for offset in CONTEXT_FRAMES for name in FEATURE_NAMES]


def load_shape_model(path: Path) -> ShapeModel:
    """Read and validate a model file.

    Raises:
        ConfigError: unreadable, or its features, classes or array sizes do not match this code.
    """
    raw = read_json(path)
    if raw.get("features") != expected_features():
        raise ConfigError(f"{path}: trained on other features; rerun bench/lipsync/train_audio.py")
    classes = tuple(raw.get("classes", ()))
    if set(classes) != set(OCULUS_VISEMES) or len(classes) != len(OCULUS_VISEMES):
        raise ConfigError(f"{path}: 'classes' must be the 15 Oculus visemes, got {classes}")
    try:
        mean, scale, log_prior = (np.asarray(raw[k], dtype=np.float32) for k in ("mean", "scale", "shape_log_prior"))
        layers = tuple((np.asarray(layer["weights"], dtype=np.float32), np.asarray(layer["bias"], dtype=np.float32))
                       for layer in raw["layers"])
        prior_weight, penalty = float(raw["prior_weight"]), float(raw["switch_penalty"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: missing or non-numeric field ({exc})") from exc
    dims = len(expected_features())
    if mean.shape != (dims,) or scale.shape != (dims,) or (scale <= 0).any():
        raise ConfigError(f"{path}: 'mean' and 'scale' must be {dims} numbers, 'scale' positive")
    if log_prior.shape != (len(RHUBARB_SHAPES),):
        raise ConfigError(f"{path}: 'shape_log_prior' must have one number per shape")
    width = dims
    for k, (weights, bias) in enumerate(layers):
        if weights.ndim != 2 or weights.shape[0] != width or bias.shape != (weights.shape[1],):
            raise ConfigError(f"{path}: layer {k} must map {width} inputs (weights {width} × n, bias n), "
                              f"got {weights.shape} and {bias.shape}")
        width = weights.shape[1]
    if not layers or width != len(classes):
        raise ConfigError(f"{path}: 'weights' of the last layer must give one output per class ({len(classes)})")
    arrays = [mean, scale, log_prior, *(a for layer in layers for a in layer)]
    if not all(np.isfinite(a).all() for a in arrays) or penalty < 0 or prior_weight < 0:
        raise ConfigError(f"{path}: numbers must be finite, 'switch_penalty' and 'prior_weight' non-negative")
    return ShapeModel(classes, mean, scale, layers, log_prior, prior_weight, penalty)


@cache
def shape_model() -> ShapeModel:
    """The trained model in ``data/visemes/audio_shapes.json``, loaded once."""
    return load_shape_model(VISEME_DIR / "audio_shapes.json")


def viterbi(log_probs: np.ndarray, switch_penalty: float) -> np.ndarray:
    """The most likely class per frame when every change of class costs ``switch_penalty`` (log units).

    With one cost for every change, the best path into class c at frame t either stays in c or comes from the best
    class of frame t-1; so each frame needs only that best class, and plain Python over a handful of classes is
    faster than numpy calls per frame."""
    rows = log_probs.tolist()
    classes = range(len(rows[0]))
    score = list(rows[0])
    back: list[list[int]] = [list(classes)]
    for row in rows[1:]:
        best = max(classes, key=score.__getitem__)
        switch = score[best] - switch_penalty
        came = [c if s >= switch else best for c, s in zip(classes, score, strict=True)]
        score = [max(s, switch) + p for s, p in zip(score, row, strict=True)]
        back.append(came)
    path = [max(classes, key=score.__getitem__)]
    for came in reversed(back[1:]):
        path.append(came[path[-1]])
    return np.array(path[::-1], dtype=np.int64)


def frame_shapes(frames: Frames, model: ShapeModel | None = None) -> list[str]:
    """One Rhubarb shape per frame from the sound alone."""
    model = model or shape_model()
    if frames.silent:
        return [REST] * frames.count
    scores = model.shape_log_probs(frames) - model.prior_weight * model.log_prior
    path = np.full(frames.count, model.shapes.index(REST))
    # Frames outside the gate are rest for certain, so each stretch of speech (with the rest frame either side)
    # decodes alone to the same path as the whole utterance would, and the pauses cost nothing.
    edges = np.flatnonzero(np.diff(np.concatenate(([False], frames.speech, [False])).astype(np.int8)))
    for begin, end in zip(edges[::2], edges[1::2], strict=True):
        low, high = max(begin - 1, 0), min(end + 1, frames.count)
        path[begin:end] = viterbi(scores[low:high], model.switch_penalty)[begin - low : end - low]
    return [model.shapes[k] for k in path]


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
