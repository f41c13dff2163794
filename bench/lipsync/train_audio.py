"""Fits the audio lip-sync classifier on the TRAINING voices and sentences; writes ``data/visemes/audio_shapes.json``.

Data: every 'train' voice of ``data/lipsync/voices.json`` speaking ``train_sentences.txt``, each clip also read at
the ``formant_factors`` (``corpus.augmented``). Labels: the synthesiser's own phoneme timings as Oculus visemes per
10 ms frame. Model: standardised stacked frame features (``core.lipsync.audio``) → one hidden ReLU layer → softmax
over the 15 visemes, trained with Adam on cross-entropy (torch, CPU; inference is numpy).
Decoding settings (Viterbi switch penalty, share of the shape prior divided out) are chosen by cross-validation
across synthesisers: fit on the Festival voices and score on the espeak-ng ones, and the other way round, so they
are picked for voices the network has not heard. The held-out voices and sentences are never read here.
Run: ``python bench/lipsync/train_audio.py`` (minutes on 2 cores; under ``flock /tmp/avatar-heavy.lock``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
from corpus import augmented, formant_factors, sentences, speech, truth_visemes, voices  # noqa: I001 - sets sys.path

from core.lipsync.acoustic import ShapeModel, shape_matrix, viterbi
from core.lipsync.audio import analyse
from core.lipsync.tables import VISEME_DIR, shape_table
from core.types import OCULUS_VISEMES, RHUBARB_SHAPES

HIDDEN = 128
EPOCHS = 6
BATCH = 1024
FRAME_STRIDE = 2
"""Train on every 2nd frame: neighbours 10 ms apart are near copies (25 ms windows), so this halves the time."""
THREADS = 1
"""One torch thread: on the shared 2-core machine more threads only wait on each other."""
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4
SEED = 14
PENALTY_GRID = (0.0, 1.0, 2.0, 3.0, 5.0)
PRIOR_WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75)
CV_CLIP_STRIDE = 3
"""Decoding settings are scored on every 3rd clip of the unseen synthesiser (hundreds of clips either way)."""


def load_items() -> list[tuple[str, object, np.ndarray]]:
    """(engine, frames, viseme labels) for every training clip and augmentation."""
    items = []
    texts = sentences("train")
    for voice in (v for v in voices() if v.split == "train"):
        for text in texts:
            original = speech(voice, text)
            for factor in formant_factors():
                clip = augmented(original, factor)
                frames = analyse(clip.audio, clip.sample_rate)
                labels = np.array([OCULUS_VISEMES.index(v) for v in truth_visemes(clip)])
                labels = np.pad(labels, (0, max(frames.count - len(labels), 0)), mode="edge")[: frames.count]
                items.append((voice.engine, frames, labels))
        print(f"loaded {voice.name}", flush=True)
    return items


def fit(items: list, hidden: int = HIDDEN, epochs: int = EPOCHS) -> ShapeModel:
    """The network for ``items`` (decoding settings left at zero)."""
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(THREADS)
    x = np.vstack([frames.stacked()[::FRAME_STRIDE] for _, frames, _ in items]).astype(np.float32)
    y = np.concatenate([labels[::FRAME_STRIDE] for _, _, labels in items])
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    inputs, targets = torch.from_numpy((x - mean) / scale), torch.from_numpy(y).long()
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, len(OCULUS_VISEMES)))
    optimiser = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(epochs):
        order = torch.randperm(len(targets))
        total = 0.0
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            optimiser.zero_grad()
            loss = loss_fn(net(inputs[batch]), targets[batch])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        print(f"  epoch {epoch + 1}: loss {total / len(order):.3f}", flush=True)
    layers = tuple((layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy())
                   for layer in net if isinstance(layer, torch.nn.Linear))
    shapes = np.bincount(np.array([RHUBARB_SHAPES.index(shape_table().shapes[OCULUS_VISEMES[k]]) for k in y]),
                         minlength=len(RHUBARB_SHAPES)) + 1.0
    return ShapeModel(OCULUS_VISEMES, mean, scale, layers, np.log(shapes / shapes.sum()), 0.0, 0.0)


def decoding_scores(model: ShapeModel, items: list) -> dict[tuple[float, float], float]:
    """Shape agreement on ``items`` for every (switch penalty, prior weight) of the grids."""
    to_shape = shape_matrix(model.classes).argmax(axis=1)
    hits = dict.fromkeys(((p, w) for p in PENALTY_GRID for w in PRIOR_WEIGHT_GRID), 0)
    for _, frames, labels in items:
        log_p = model.shape_log_probs(frames)
        for penalty, weight in hits:
            got = viterbi(log_p - weight * model.log_prior, penalty)
            hits[penalty, weight] += int((got == to_shape[labels]).sum())
    frames_total = sum(len(labels) for _, _, labels in items)
    return {key: count / frames_total for key, count in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    started = time.perf_counter()
    items = load_items()
    engines = sorted({engine for engine, _, _ in items})
    scores: dict[tuple[float, float], list[float]] = {}
    for held in engines:
        print(f"cross-validation: fit without {held}", flush=True)
        model = fit([i for i in items if i[0] != held], epochs=args.epochs)
        unseen = [i for i in items if i[0] == held][::CV_CLIP_STRIDE]
        for key, value in decoding_scores(model, unseen).items():
            scores.setdefault(key, []).append(value)
    for key, values in scores.items():
        print(f"penalty {key[0]:g} prior weight {key[1]:g}: shape agreement on the unseen engine "
              f"{' / '.join(f'{v:.1%}' for v in values)}")
    penalty, weight = max(scores, key=lambda k: np.mean(scores[k]))
    print(f"chosen penalty {penalty:g}, prior weight {weight:g}; fitting on every training voice", flush=True)
    model = replace(fit(items, epochs=args.epochs), switch_penalty=penalty, prior_weight=weight)
    print(f"training agreement {decoding_scores(model, items[::CV_CLIP_STRIDE])[penalty, weight]:.1%}")
    train_voices = [v.name for v in voices() if v.split == "train"]
    document = {"_comment": (f"Written by bench/lipsync/train_audio.py: {len(sentences('train'))} training "
                             f"sentences x voices {', '.join(train_voices)} x formant factors "
                             f"{', '.join(f'{f:g}' for f in formant_factors())}; hidden layer {HIDDEN}, "
                             f"{args.epochs} epochs; decoding settings by cross-validation across synthesisers "
                             f"({np.mean(scores[penalty, weight]):.1%} on the unseen one)."),
                **model.to_json()}
    path = VISEME_DIR / "audio_shapes.json"
    path.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
