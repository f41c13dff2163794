"""Tests for the emotion stage and the shared MiniLM embedder, using the real packaged MiniLM model."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.config import AppConfig, EmotionConfig
from core.embeddings import get_embedder
from core.emotion import (
    EMPTY_TEXT_BACKEND,
    HELDOUT_FILE,
    TRAIN_FILE,
    EmbeddingEmotion,
    TransformersEmotion,
    create_emotion,
    evaluate,
    load_examples,
)
from core.errors import ConfigError, ModelNotFoundError
from core.types import EMOTION_LABELS

HELDOUT_ACCURACY_FLOOR = 0.88  # measured 0.94 (158/168) with data/emotion/classifier.json as committed
HELDOUT_RECALL_FLOOR = 0.70  # lowest measured per-class recall: anger 0.79
PLAIN_FACTS = (
    "The pipeline has four stages.",
    "Rome is the capital of Italy.",
    "The file is saved in the downloads folder.",
    "Press the button to start recording.",
    "The function takes two arguments.",
)
# j-hartmann's labels, deliberately in another order and case than EMOTION_LABELS to exercise the mapping.
TINY_MODEL_LABELS = ("Surprise", "Joy", "Anger", "Neutral", "Fear", "Sadness", "Disgust")
TINY_VOCABULARY = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "i", "am", "so", "happy", "sad", "the", "pipeline", "works", ".")


def config_with(tmp_path: Path, *, backend: str = "auto", model: str = EmotionConfig.model) -> AppConfig:
    return AppConfig(emotion=EmotionConfig(backend=backend, model=model), cache_dir=tmp_path / "cache")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run this module's torch work on one thread, then restore the setting.

    On this shared 2-core machine, torch's 2 intra-op threads wait on each other under load: one short sentence took
    0.4-1.2 s with 2 threads against 0.03-0.06 s with 1 (measured while other jobs ran).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def embedding_backend(tmp_path_factory: pytest.TempPathFactory) -> EmbeddingEmotion:
    backend = EmbeddingEmotion(config_with(tmp_path_factory.mktemp("emotion")))
    backend.classifier()  # trains once for the module
    return backend


def build_tiny_model(folder: Path, labels: tuple[str, ...]) -> Path:
    """Save a randomly initialised 1-layer DistilBERT classifier and a word-level tokenizer to ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({word: i for i, word in enumerate(TINY_VOCABULARY)}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", model_max_length=16)
    config = DistilBertConfig(
        vocab_size=len(TINY_VOCABULARY), dim=16, hidden_dim=32, n_layers=1, n_heads=2, max_position_embeddings=16,
        initializer_range=0.5, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-emotion"), TINY_MODEL_LABELS)


# ---------------------------------------------------------------------------------------------------- embedder


def test_embedder_returns_unit_float32_vectors_that_rank_paraphrases_closest() -> None:
    embedder = get_embedder()
    vectors = embedder.embed(["The cat sat on the mat.", "A cat was sitting on a rug.", "Stock prices fell sharply."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert embedder.embed([]).shape == (0, 384)
    assert get_embedder() is embedder


# ---------------------------------------------------------------------------------------------------- data


def test_heldout_sentences_are_not_copies_or_paraphrases_of_training_sentences() -> None:
    train, heldout = load_examples(TRAIN_FILE), load_examples(HELDOUT_FILE)
    assert all(sum(e.label == label for e in train) >= 60 for label in EMOTION_LABELS)
    assert all(sum(e.label == label for e in heldout) >= 20 for label in EMOTION_LABELS)
    embedder = get_embedder()
    similarity = embedder.embed([e.text for e in heldout]) @ embedder.embed([e.text for e in train]).T
    closest = np.unravel_index(similarity.argmax(), similarity.shape)
    assert similarity.max() < 0.8, (heldout[closest[0]].text, train[closest[1]].text)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"text": "Hi.", "label": "happy"}'], "unknown label 'happy'"),
        (['{"text": "Hi.", "label": "joy"}', '{"text": "hi. ", "label": "joy"}'], "repeats the text of line 1"),
        (['{"text": "Hi.", "label": "joy", "label": "anger"}'], "duplicate key 'label'"),
        (['{"text": "  ", "label": "joy"}'], "non-empty string"),
        (['{"text": "Hi.", "label": "joy"}'], "too few examples"),
    ],
)
def test_load_examples_rejects_bad_files(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_examples(path)


# ---------------------------------------------------------------------------------------------- embedding backend


def test_embedding_classifier_heldout_accuracy(embedding_backend: EmbeddingEmotion) -> None:
    result = evaluate(embedding_backend, load_examples(HELDOUT_FILE))
    print(f"\nheld-out accuracy {result.accuracy:.3f}\n{result.table()}")
    assert result.accuracy >= HELDOUT_ACCURACY_FLOOR
    assert min(result.recall.values()) >= HELDOUT_RECALL_FLOOR, result.recall


def test_one_at_a_time_matches_batched_classification(embedding_backend: EmbeddingEmotion) -> None:
    texts = [example.text for example in load_examples(HELDOUT_FILE)[::24]] + [""]
    batched = embedding_backend.classify_many(texts)
    started = time.perf_counter()
    single = [embedding_backend.classify(text) for text in texts]
    print(f"\n{1000 * (time.perf_counter() - started) / len(texts):.1f} ms per single classification")
    assert [e.label for e in single] == [e.label for e in batched]
    for one, many in zip(single, batched, strict=True):
        assert one.scores == pytest.approx(many.scores, abs=1e-4)
    assert batched[-1].backend == EMPTY_TEXT_BACKEND and batched[0].backend == "embedding"


def test_scores_cover_all_labels_and_sum_to_one(embedding_backend: EmbeddingEmotion) -> None:
    emotion = embedding_backend.classify("Oh no, I think someone is trying to break into my house!")
    assert tuple(emotion.scores) == EMOTION_LABELS
    assert sum(emotion.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert emotion.label == "fear" and emotion.backend == "embedding"
    assert emotion.confidence == max(emotion.scores.values())


@pytest.mark.parametrize("text", PLAIN_FACTS)
def test_plain_factual_sentences_are_clearly_neutral(embedding_backend: EmbeddingEmotion, text: str) -> None:
    emotion = embedding_backend.classify(text)
    assert emotion.label == "neutral" and emotion.confidence > 0.5, emotion.scores


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_neutral_without_asking_a_model(embedding_backend: EmbeddingEmotion, text: str) -> None:
    emotion = embedding_backend.classify(text)
    assert emotion.label == "neutral" and emotion.confidence == 1.0
    assert emotion.backend == EMPTY_TEXT_BACKEND
    assert set(emotion.scores) == set(EMOTION_LABELS)


def test_trained_weights_are_cached_and_reused(
    embedding_backend: EmbeddingEmotion, caplog: pytest.LogCaptureFixture
) -> None:
    cached = embedding_backend.cache_path()
    assert cached.exists()
    again = EmbeddingEmotion(AppConfig(cache_dir=cached.parent.parent))
    with caplog.at_level(logging.INFO, logger="core.emotion"):
        classifier = again.classifier()
    assert "Loaded emotion classifier weights" in caplog.text
    np.testing.assert_array_equal(classifier.weights, embedding_backend.classifier().weights)


def test_cache_key_follows_the_training_file(embedding_backend: EmbeddingEmotion, tmp_path: Path) -> None:
    changed = tmp_path / "train.jsonl"
    extra = '{"text": "The shop sells hats.", "label": "neutral"}\n'
    changed.write_text(TRAIN_FILE.read_text(encoding="utf-8") + extra, encoding="utf-8")
    other = EmbeddingEmotion(AppConfig(cache_dir=embedding_backend.cache_path().parent.parent), train_path=changed)
    assert other.cache_path() != embedding_backend.cache_path()


# ---------------------------------------------------------------------------------------------- transformers backend


def test_transformers_backend_runs_the_pipeline_and_maps_labels(tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    backend = TransformersEmotion(config_with(tmp_path, backend="transformers", model=str(tiny_model)))
    text = "i am so happy ."
    emotion = backend.classify(text)
    assert tuple(emotion.scores) == EMOTION_LABELS and emotion.backend == "transformers"
    assert sum(emotion.scores.values()) == pytest.approx(1.0, abs=1e-5)

    # The same model run by hand: the scores must be its softmax, moved from its label order to EMOTION_LABELS.
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model).eval()
    with torch.no_grad():
        logits = model(**AutoTokenizer.from_pretrained(tiny_model)(text, return_tensors="pt")).logits[0]
    probabilities = torch.softmax(logits, dim=0).tolist()
    expected = dict(zip((label.lower() for label in TINY_MODEL_LABELS), probabilities, strict=True))
    assert emotion.scores == pytest.approx(expected, abs=1e-5)
    assert max(expected.values()) > 0.2  # the random model is not uniform, so a wrong mapping would show


def test_transformers_backend_rejects_a_model_with_other_labels(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path / "sentiment", ("negative", "positive"))
    for backend in ("transformers", "auto"):
        with pytest.raises(ConfigError, match=r"missing: \['anger'.*unexpected: \['negative', 'positive'\]"):
            create_emotion(config_with(tmp_path, backend=backend, model=str(folder)))


# ---------------------------------------------------------------------------------------------------- factory


def test_auto_picks_transformers_when_its_model_resolves(tiny_model: Path, tmp_path: Path) -> None:
    backend = create_emotion(config_with(tmp_path, model=str(tiny_model)))
    assert isinstance(backend, TransformersEmotion) and backend.note == ""
    assert backend.status().line() == f"Emotion: transformers {tiny_model}"


def test_auto_falls_back_to_embedding_when_the_hub_model_is_unavailable(tmp_path: Path) -> None:
    backend = create_emotion(config_with(tmp_path))
    assert isinstance(backend, EmbeddingEmotion)
    assert backend.note.startswith("j-hartmann model not available: ")
    assert "emotion-english-distilroberta-base" in backend.status().line()


def test_explicit_transformers_with_a_missing_model_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        create_emotion(config_with(tmp_path, backend="transformers", model=str(tmp_path / "no-such-model")))


def test_unknown_backend_name_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="embedding, transformers"):
        create_emotion(config_with(tmp_path, backend="vibes"))
