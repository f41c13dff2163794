"""Emotion from text: scores the 7 ``EMOTION_LABELS`` for a sentence, so the avatar can wear the right face.

Backends:
    embedding: the project's own logistic regression over MiniLM sentence embeddings, trained in seconds from
        ``data/emotion/train.jsonl`` and cached in ``config.cache_dir``; works fully offline (the default fallback).
    transformers: a Hugging Face text-classification model with the same 7 labels, e.g.
        ``j-hartmann/emotion-english-distilroberta-base`` (not installable here; used when it resolves).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.backend import StageBackend, backend_errors, pick_backend
from core.config import DATA_DIR, AppConfig
from core.datafiles import parse_json, read_json
from core.errors import ConfigError, ModelNotFoundError
from core.models import resolve_model
from core.types import EMOTION_LABELS, Emotion

log = logging.getLogger(__name__)

ERROR_STAGE = "emotion"
EMOTION_DATA_DIR = DATA_DIR / "emotion"
TRAIN_FILE = EMOTION_DATA_DIR / "train.jsonl"
HELDOUT_FILE = EMOTION_DATA_DIR / "heldout.jsonl"
CLASSIFIER_FILE = EMOTION_DATA_DIR / "classifier.json"
MIN_EXAMPLES_PER_LABEL = 20
EMPTY_TEXT_BACKEND = "none (empty text)"
"""``Emotion.backend`` of the judgement for empty text: no model was asked, the face simply stays neutral."""
_HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CACHE_FORMAT = "softmax-v1"  # bump when the cached weight layout or training procedure changes


# ---------------------------------------------------------------------------------------------------- data files


@dataclass(frozen=True, slots=True)
class LabelledText:
    """One example sentence and its emotion label."""

    text: str
    label: str


def load_examples(path: Path) -> tuple[LabelledText, ...]:
    """Read a JSONL file of ``{"text": ..., "label": ...}`` lines, validating every line.

    Raises:
        ConfigError: on a malformed line, an unknown label, an empty or repeated text, or a label with fewer than
            ``MIN_EXAMPLES_PER_LABEL`` examples.
    """
    examples: list[LabelledText] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        row = parse_json(line, where)
        if not isinstance(row, dict) or set(row) != {"text", "label"}:
            raise ConfigError(f"{where}: expected an object with exactly the keys 'text' and 'label'")
        text, label = row["text"], row["label"]
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: 'text' must be a non-empty string")
        if label not in EMOTION_LABELS:
            raise ConfigError(f"{where}: unknown label {label!r}; expected one of {', '.join(EMOTION_LABELS)}")
        key = " ".join(text.lower().split())
        if key in seen:
            raise ConfigError(f"{where}: repeats the text of line {seen[key]}")
        seen[key] = number
        examples.append(LabelledText(text.strip(), label))
    counts = {label: sum(example.label == label for example in examples) for label in EMOTION_LABELS}
    thin = {label: count for label, count in counts.items() if count < MIN_EXAMPLES_PER_LABEL}
    if thin:
        raise ConfigError(f"{path.name}: too few examples (need {MIN_EXAMPLES_PER_LABEL} per label): {thin}")
    return tuple(examples)


@dataclass(frozen=True, slots=True)
class ClassifierSettings:
    """Training and prediction settings of the embedding classifier, read from ``data/emotion/classifier.json``."""

    l2_penalty: float
    class_prior: tuple[float, ...]  # in EMOTION_LABELS order, sums to 1

    @classmethod
    def load(cls, path: Path = CLASSIFIER_FILE) -> ClassifierSettings:
        """Read and validate the settings file.

        Raises:
            ConfigError: when a key is missing or unknown, the penalty is not positive, or the prior is not a
                positive distribution over exactly ``EMOTION_LABELS``.
        """
        raw = read_json(path)
        if set(raw) != {"description", "l2_penalty", "class_prior"}:
            raise ConfigError(f"{path.name}: expected the keys description, l2_penalty, class_prior; got {sorted(raw)}")
        penalty, prior = raw["l2_penalty"], raw["class_prior"]
        if not isinstance(penalty, (int, float)) or penalty <= 0:
            raise ConfigError(f"{path.name}: l2_penalty must be a positive number, got {penalty!r}")
        if not isinstance(prior, dict) or set(prior) != set(EMOTION_LABELS):
            raise ConfigError(f"{path.name}: class_prior must give a weight to each of {', '.join(EMOTION_LABELS)}")
        weights = tuple(prior[label] for label in EMOTION_LABELS)
        if not all(isinstance(w, (int, float)) and w > 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
            raise ConfigError(f"{path.name}: class_prior weights must be positive and sum to 1, got {prior}")
        return cls(float(penalty), tuple(float(w) for w in weights))


# ---------------------------------------------------------------------------------------------------- stage base


def _empty_text_emotion() -> Emotion:
    """The judgement for empty text: neutral with score 1, attributed to no model (``EMPTY_TEXT_BACKEND``)."""
    return Emotion("neutral", {label: float(label == "neutral") for label in EMOTION_LABELS}, EMPTY_TEXT_BACKEND)


class EmotionBackend(StageBackend, ABC):
    """Base of every emotion backend.

    Responsibilities: ``classify()``/``classify_many()`` handle empty text, timing, logging and error wrapping; a
    backend implements only ``_classify()``, returning a probability for each of ``EMOTION_LABELS`` per text.
    """

    stage = "Emotion"

    def classify(self, text: str) -> Emotion:
        """Score ``text`` on all 7 emotion labels (scores sum to 1); the label is the highest-scoring one.

        Empty or blank text is not sent to any model: it yields ``neutral`` with score 1 and
        ``backend == EMPTY_TEXT_BACKEND``, saying that nothing was classified.

        Raises:
            BackendError: when the backend's library fails.
        """
        return self.classify_many([text])[0]

    def classify_many(self, texts: Sequence[str]) -> list[Emotion]:
        """Like ``classify`` for several texts (e.g. the sentences of a reply), in one model call."""
        cleaned = [" ".join(text.split()) for text in texts]
        to_score = [i for i, text in enumerate(cleaned) if text]
        scored: dict[int, np.ndarray] = {}
        if to_score:
            started = time.perf_counter()
            with backend_errors(ERROR_STAGE, self.name):
                scored = dict(zip(to_score, self._classify([cleaned[i] for i in to_score]), strict=True))
            log.debug("Scored %d text(s) with %s in %.1f ms", len(to_score), self.name,
                      1000 * (time.perf_counter() - started))
        return [self._emotion(scored[i]) if i in scored else _empty_text_emotion() for i in range(len(cleaned))]

    def _emotion(self, probabilities: np.ndarray) -> Emotion:
        """The Emotion for one row of ``_classify`` output: the top label and every label's score."""
        scores = {label: float(p) for label, p in zip(EMOTION_LABELS, probabilities, strict=True)}
        return Emotion(max(scores, key=scores.__getitem__), scores, self.name)

    @abstractmethod
    def _classify(self, texts: Sequence[str]) -> np.ndarray:
        """Return ``(len(texts), 7)`` probabilities in ``EMOTION_LABELS`` order; texts are non-empty and normalised."""


# ---------------------------------------------------------------------------------------------------- embedding


@dataclass(frozen=True, eq=False)
class SoftmaxClassifier:
    """Multinomial logistic regression over embeddings: ``softmax(x @ weights + bias)``, EMOTION_LABELS columns."""

    weights: np.ndarray  # (dim, n_labels)
    bias: np.ndarray  # (n_labels,)

    @classmethod
    def fit(cls, features: np.ndarray, targets: np.ndarray, l2_penalty: float) -> SoftmaxClassifier:
        """Minimise mean cross-entropy plus ``l2_penalty / 2 * |weights|^2`` with L-BFGS.

        Args:
            features: ``(n, dim)`` embeddings.
            targets: ``(n,)`` label indices into ``EMOTION_LABELS``.
            l2_penalty: strength of the weight penalty (the bias is not penalised).
        """
        from scipy.optimize import minimize
        from scipy.special import log_softmax

        n, dim = features.shape
        k = len(EMOTION_LABELS)
        one_hot = np.eye(k)[targets]
        x = features.astype(np.float64)

        def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
            weights, bias = params[: dim * k].reshape(dim, k), params[dim * k :]
            log_p = log_softmax(x @ weights + bias, axis=1)
            loss = -(one_hot * log_p).sum() / n + 0.5 * l2_penalty * float((weights**2).sum())
            residual = (np.exp(log_p) - one_hot) / n
            gradient = np.concatenate([(x.T @ residual + l2_penalty * weights).ravel(), residual.sum(axis=0)])
            return loss, gradient

        result = minimize(loss_and_gradient, np.zeros(dim * k + k), jac=True, method="L-BFGS-B",
                          options={"maxiter": 1000})
        if not result.success:
            raise RuntimeError(f"emotion classifier training did not converge: {result.message}")
        params = result.x
        return cls(params[: dim * k].reshape(dim, k).astype(np.float32), params[dim * k :].astype(np.float32))

    def log_probabilities(self, features: np.ndarray) -> np.ndarray:
        """Return ``(n, n_labels)`` log-probabilities under the training (balanced) class distribution."""
        from scipy.special import log_softmax

        return log_softmax(features.astype(np.float64) @ self.weights + self.bias, axis=1)

    def save(self, path: Path) -> None:
        """Write the weights as ``.npz`` atomically (a concurrent reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with partial.open("wb") as handle:
            np.savez(handle, weights=self.weights, bias=self.bias, labels=np.array(EMOTION_LABELS))
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> SoftmaxClassifier:
        """Read weights written by ``save``; raises ValueError if they were saved for other labels."""
        with np.load(path) as saved:
            if tuple(saved["labels"]) != EMOTION_LABELS:
                raise ValueError(f"{path} holds weights for labels {tuple(saved['labels'])}")
            return cls(saved["weights"], saved["bias"])


class EmbeddingEmotion(EmotionBackend):
    """The offline default: logistic regression over MiniLM embeddings, with a neutral-leaning class prior.

    Responsibilities: train on first use from ``train.jsonl`` (or load the weights cached under
    ``config.cache_dir/emotion``, keyed by a hash of the training file, settings and model), then classify by embedding
    the text and re-weighting the balanced-training probabilities by ``class_prior``.
    """

    name = "embedding"

    def __init__(self, config: AppConfig, *, train_path: Path = TRAIN_FILE) -> None:
        self.train_path = train_path
        self.settings = ClassifierSettings.load()
        self._cache_dir = config.cache_dir / "emotion"
        # Bayes' rule for a new class prior: the training prior is uniform, so add log(prior * n_labels).
        self._prior_shift = np.log(np.asarray(self.settings.class_prior) * len(EMOTION_LABELS))
        self._classifier: SoftmaxClassifier | None = None
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"MiniLM embeddings + logistic regression ({self.train_path.name})"

    def cache_path(self) -> Path:
        """Where the weights for the current training file, settings and embedding model are cached."""
        from core.embeddings import get_embedder

        digest = hashlib.sha256()
        for part in (_CACHE_FORMAT, repr(self.settings.l2_penalty), str(get_embedder().model.path)):
            digest.update(part.encode() + b"\0")
        digest.update(self.train_path.read_bytes())
        return self._cache_dir / f"logreg-{digest.hexdigest()[:16]}.npz"

    def classifier(self) -> SoftmaxClassifier:
        """Return the trained classifier, loading cached weights or training them on first call."""
        with self._lock:
            if self._classifier is None:
                self._classifier = self._load_or_train()
            return self._classifier

    def _load_or_train(self) -> SoftmaxClassifier:
        from core.embeddings import get_embedder

        path = self.cache_path()
        if path.exists():
            try:
                classifier = SoftmaxClassifier.load(path)
                log.info("Loaded emotion classifier weights from %s", path)
                return classifier
            except (OSError, ValueError, KeyError) as exc:
                log.warning("Ignoring unreadable emotion classifier cache %s (%s); retraining", path, exc)
        started = time.perf_counter()
        examples = load_examples(self.train_path)
        features = get_embedder().embed([example.text for example in examples])
        targets = np.array([EMOTION_LABELS.index(example.label) for example in examples])
        classifier = SoftmaxClassifier.fit(features, targets, self.settings.l2_penalty)
        try:
            classifier.save(path)
        except OSError as exc:
            log.warning("Could not cache emotion classifier weights at %s: %s", path, exc)
        log.info("Trained emotion classifier on %d examples in %.2f s", len(examples), time.perf_counter() - started)
        return classifier

    def _classify(self, texts: Sequence[str]) -> np.ndarray:
        from core.embeddings import get_embedder

        classifier = self.classifier()
        log_p = classifier.log_probabilities(get_embedder().embed(texts)) + self._prior_shift
        probabilities = np.exp(log_p - log_p.max(axis=1, keepdims=True))
        return probabilities / probabilities.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------------- transformers


def check_model_labels(model_labels: Iterable[str], where: str) -> None:
    """Check that a model's labels, compared in lower case, are exactly ``EMOTION_LABELS`` (in any order).

    Raises:
        ConfigError: when the model's labels are not exactly the 7 emotion labels, naming what is missing or extra.
    """
    lowered = [str(label).lower() for label in model_labels]
    missing = [label for label in EMOTION_LABELS if label not in lowered]
    extra = [label for label in lowered if label not in EMOTION_LABELS]
    if missing or extra or len(lowered) != len(EMOTION_LABELS):
        raise ConfigError(
            f"The emotion model at {where} has labels {lowered}; it must have exactly "
            f"{', '.join(EMOTION_LABELS)} (missing: {missing or 'none'}; unexpected: {extra or 'none'})."
        )


class TransformersEmotion(EmotionBackend):
    """A Hugging Face sequence-classification model run on CPU through ``transformers.pipeline``.

    Responsibilities: resolve ``config.emotion.model`` (a local folder, or a hub repo id looked up in the hub
    cache and then online), check that its labels are the 7 emotion labels, and return its scores in
    ``EMOTION_LABELS`` order. Text longer than the model's window is truncated.
    """

    name = "transformers"

    def __init__(self, config: AppConfig) -> None:
        wanted = config.emotion.model
        is_repo_id = bool(_HUB_REPO_ID.match(wanted)) and not Path(wanted).expanduser().exists()
        self.model = resolve_model(
            stage=ERROR_STAGE,
            backend=self.name,
            what=wanted,
            explicit="" if is_repo_id else wanted,
            hub_repo=wanted if is_repo_id else "",
        )
        started = time.perf_counter()
        with backend_errors(ERROR_STAGE, self.name):
            from transformers import pipeline

            # The model is a local folder now, which transformers loads without asking the hub.
            self._pipeline = pipeline("text-classification", model=str(self.model.path), top_k=None, device="cpu")
        id2label: Mapping[int, str] = self._pipeline.model.config.id2label
        check_model_labels(id2label.values(), str(self.model.path))
        self.model_name = wanted
        log.info("Loaded emotion model %s from %s (%s) in %.2f s", wanted, self.model.path, self.model.source,
                 time.perf_counter() - started)

    @property
    def description(self) -> str:
        return f"transformers {self.model_name}"

    def _classify(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for results in self._pipeline(list(texts), truncation=True):
            by_label = {str(result["label"]).lower(): float(result["score"]) for result in results}
            rows.append([by_label[label] for label in EMOTION_LABELS])
        return np.array(rows)


# ---------------------------------------------------------------------------------------------------- factory

EMOTION_BACKENDS: dict[str, type[EmotionBackend]] = {
    EmbeddingEmotion.name: EmbeddingEmotion,
    TransformersEmotion.name: TransformersEmotion,
}


def create_emotion(config: AppConfig) -> EmotionBackend:
    """Build the configured emotion backend.

    ``"auto"`` uses the transformers model when it resolves and otherwise the embedding classifier, with a
    ``note`` saying why. A transformers model that resolves but cannot be used (wrong labels) is an error, not a
    silent fallback.
    """
    choice = config.emotion.backend
    if choice == "auto":
        try:
            backend: EmotionBackend = TransformersEmotion(config)
        except ModelNotFoundError as exc:
            backend = EmbeddingEmotion(config)
            backend.note = f"{_short_model_name(config.emotion.model)} model not available: {exc}"
    else:
        backend = pick_backend(EmotionBackend.stage, EMOTION_BACKENDS, choice)(config)
    log.info("Emotion backend (%s requested): %s", choice, backend.status().line())
    return backend


def _short_model_name(model: str) -> str:
    """``j-hartmann/emotion-english-distilroberta-base`` -> ``j-hartmann``; a path -> its folder name."""
    return model.split("/")[0] if _HUB_REPO_ID.match(model) else Path(model).name


# ---------------------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, eq=False)
class EmotionEvaluation:
    """How a backend did on labelled examples; ``confusion[i, j]`` counts true label ``i`` predicted as ``j``."""

    accuracy: float
    recall: Mapping[str, float]
    confusion: np.ndarray

    def table(self) -> str:
        """The confusion matrix as aligned text, rows = true label, columns = predicted label, plus recall."""
        head = "true\\pred " + " ".join(f"{label[:5]:>5}" for label in EMOTION_LABELS) + "  recall"
        rows = [
            f"{label:<10}" + " ".join(f"{count:>5d}" for count in row) + f"  {self.recall[label]:.2f}"
            for label, row in zip(EMOTION_LABELS, self.confusion, strict=True)
        ]
        return "\n".join([head, *rows])


def evaluate(backend: EmotionBackend, examples: Sequence[LabelledText]) -> EmotionEvaluation:
    """Classify the examples and tally accuracy, per-class recall and the confusion matrix."""
    confusion = np.zeros((len(EMOTION_LABELS), len(EMOTION_LABELS)), dtype=int)
    predictions = backend.classify_many([example.text for example in examples])
    for example, predicted in zip(examples, predictions, strict=True):
        confusion[EMOTION_LABELS.index(example.label), EMOTION_LABELS.index(predicted.label)] += 1
    totals = confusion.sum(axis=1)
    recall = {label: float(confusion[i, i] / totals[i]) if totals[i] else 0.0 for i, label in enumerate(EMOTION_LABELS)}
    return EmotionEvaluation(float(np.trace(confusion) / max(1, confusion.sum())), recall, confusion)
