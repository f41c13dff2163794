"""Fits the audio-only shape classifier on the TRAINING half of the benchmark sentences and writes its weights.

Labels: Piper's own alignments on Rhubarb's shapes (10 ms frames), as in ``run.py``. The model is a softmax
regression on the stacked frame features of ``core.lipsync.audio``; its L2 strength and the Viterbi switch penalty
are chosen by 2-fold cross-validation inside the training half. The test half (``run.TEST``) is never read.
Run: ``python bench/lipsync/train_audio.py`` → ``data/visemes/audio_shapes.json``.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
from run import load_voice, piper_speech, split_sentences, truth_shapes  # noqa: I001 - run.py sets sys.path

from core.lipsync.acoustic import ShapeModel, viterbi
from core.lipsync.audio import analyse
from core.lipsync.tables import VISEME_DIR
from core.types import RHUBARB_SHAPES

L2_GRID = (1e-4, 1e-3, 1e-2)
PENALTY_GRID = (0.0, 1.0, 2.0, 4.0, 6.0)


def fit(x: np.ndarray, y: np.ndarray, classes: int, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression weights and biases for standardised rows ``x`` and labels ``y`` (L-BFGS)."""
    from scipy.optimize import minimize

    rows, dims = x.shape
    onehot = np.eye(classes)[y]

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = flat[: dims * classes].reshape(dims, classes), flat[dims * classes :]
        z = x @ weights + bias
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        grad = (np.exp(log_p) - onehot) / rows
        value = -(log_p * onehot).sum() / rows + l2 * (weights**2).sum()
        return value, np.concatenate([(x.T @ grad + 2 * l2 * weights).ravel(), grad.sum(axis=0)])

    result = minimize(loss, np.zeros(dims * classes + classes), jac=True, method="L-BFGS-B",
                      options={"maxiter": 500})
    return result.x[: dims * classes].reshape(dims, classes), result.x[dims * classes :]


def model_for(items: list[tuple], l2: float, penalty: float) -> ShapeModel:
    x = np.vstack([frames.stacked() for frames, _ in items])
    y = np.concatenate([labels for _, labels in items])
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    weights, bias = fit((x - mean) / scale, y, len(RHUBARB_SHAPES), l2)
    return ShapeModel(RHUBARB_SHAPES, mean, scale, weights, bias, penalty)


def accuracy(model: ShapeModel, items: list[tuple]) -> float:
    hits = sum(int((viterbi(model.log_probs(f), model.switch_penalty) == y).sum()) for f, y in items)
    return hits / sum(len(y) for _, y in items)


def main() -> None:
    voice = load_voice()
    train, _ = split_sentences()
    items = []
    for text in train:
        speech = piper_speech(voice, text)
        frames = analyse(speech.audio, speech.sample_rate)
        labels = np.array([RHUBARB_SHAPES.index(s) for s in truth_shapes(speech)])
        items.append((frames, np.pad(labels, (0, frames.count - len(labels)), mode="edge")[: frames.count]))
    folds = items[::2], items[1::2]
    scores = {}
    for l2 in L2_GRID:
        models = [model_for(folds[k], l2, 0.0) for k in (0, 1)]
        for penalty in PENALTY_GRID:
            scores[l2, penalty] = np.mean([
                accuracy(replace(models[k], switch_penalty=penalty), folds[1 - k]) for k in (0, 1)
            ])
            print(f"l2 {l2:g} penalty {penalty:g}: cross-validated shape agreement {scores[l2, penalty]:.1%}")
    l2, penalty = max(scores, key=scores.get)
    model = model_for(items, l2, penalty)
    print(f"chosen l2 {l2:g}, penalty {penalty:g}; training agreement {accuracy(model, items):.1%}")
    path = VISEME_DIR / "audio_shapes.json"
    document = {"_comment": f"Written by bench/lipsync/train_audio.py from {len(train)} training sentences "
                f"(l2 {l2:g}, chosen by 2-fold cross-validation).", **model.to_json()}
    path.write_text(json.dumps(document) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
