"""The persisted knowledge-base index: chunks and their MiniLM embeddings in one SQLite file, searched with numpy.

Why plain numpy over SQLite rather than sqlite-vec or FAISS: the knowledge base is a few hundred chunks, so an exact
search is one ``(n, 384) @ (384,)`` product, about 0.1 ms for 500 chunks, which is faster than the query embedding
it follows (~10 ms) and has no recall loss. SQLite (in the standard library, among the best-kept libraries there
are) gives atomic, crash-safe incremental updates; FAISS would add a large native wheel whose approximate indexes
only pay off past ~10^5 vectors, and sqlite-vec (pre-1.0) also searches by brute force and needs a Python build
that allows ``enable_load_extension``, which some platforms' Pythons do not. Past ~10^5 chunks, use FAISS or the
Databricks Vector Search backend.

Incremental: each file's SHA-256 is stored; ``sync`` re-chunks and re-embeds only files whose content changed, and
drops files that are gone. A change of embedding model or chunker rebuilds everything.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from core.retrieval.documents import (
    CHUNKER_VERSION,
    Chunk,
    ReadDocument,
    SkippedFile,
    chunk_document,
    list_documents,
    read_document,
)
from core.storage import transaction

log = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (source TEXT PRIMARY KEY, sha256 TEXT NOT NULL, chunks INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL REFERENCES files(source) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
"""


class TextEmbedder(Protocol):
    """What the index needs from an embedder (``core.embeddings.Embedder`` is one)."""

    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one ``sync`` did: files (re)embedded, kept as they were, removed and skipped, and the chunk count."""

    embedded: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]
    skipped: tuple[SkippedFile, ...]
    chunks: int
    duration_s: float

    def summary(self) -> str:
        """One line for logs and the CLI."""
        return (f"{self.chunks} chunks from {len(self.embedded) + len(self.unchanged)} files "
                f"({len(self.embedded)} embedded, {len(self.unchanged)} unchanged, {len(self.removed)} removed, "
                f"{len(self.skipped)} skipped) in {self.duration_s:.2f} s")


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """A chunk and its cosine similarity to a query."""

    chunk: Chunk
    score: float


@dataclass
class _Loaded:
    """The searchable state held in memory: every chunk and its embedding row."""

    chunks: list[Chunk] = field(default_factory=list)
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    fingerprint: str = ""


class VectorIndex:
    """Chunks of a knowledge-base folder with their embeddings, persisted in ``<index_dir>/index.sqlite3``.

    Responsibilities: bring the stored index in line with the folder (``sync``), answer nearest-chunk queries
    (``search``), and name the indexed state (``fingerprint``) so caches of answers can tell when it changed.
    """

    def __init__(self, index_dir: Path, embedder: TextEmbedder, model_id: str) -> None:
        self.path = index_dir / INDEX_FILE
        self.embedder = embedder
        self.model_id = model_id
        self._loaded = _Loaded()
        self._lock = threading.Lock()
        index_dir.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
        self._load()

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path)

    @property
    def fingerprint(self) -> str:
        """A hash of the indexed state (model, chunker, every file's content); changes whenever search results may."""
        return self._loaded.fingerprint

    def __len__(self) -> int:
        return len(self._loaded.chunks)

    def sync(self, kb_dir: Path, max_bytes: int) -> SyncReport:
        """Re-embed files of ``kb_dir`` whose content changed, drop files that are gone, keep the rest.

        A missing or empty folder gives an empty index (and a warning), not an error.
        """
        started = time.perf_counter()
        settings = f"{self.model_id}|{CHUNKER_VERSION}"
        documents = list_documents(kb_dir) if kb_dir.is_dir() else []
        if not documents:
            log.warning("Knowledge base %s has no documents (%s); answers will not be grounded", kb_dir,
                        "folder missing" if not kb_dir.is_dir() else "no .md/.txt/.html/.pdf files")
        embedded, unchanged, skipped = [], [], []
        with self._lock, self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
            if row is None or row[0] != settings:
                db.execute("DELETE FROM files")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)", (settings,))
            stored = dict(db.execute("SELECT source, sha256 FROM files"))
            present = set()
            for path, source in documents:
                try:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.stat().st_size <= max_bytes else ""
                except OSError as exc:
                    digest = ""
                    log.debug("Cannot hash %s: %s", path, exc)
                if digest and stored.get(source) == digest:
                    present.add(source)
                    unchanged.append(source)
                    continue
                result = read_document(path, source, max_bytes)
                if isinstance(result, SkippedFile):
                    log.warning("Knowledge base: skipping %s: %s", source, result.reason)
                    skipped.append(result)
                    continue
                self._store(db, result, digest)
                present.add(source)
                embedded.append(source)
            removed = sorted(set(stored) - present)
            db.executemany("DELETE FROM files WHERE source = ?", [(s,) for s in removed])
        self._load()
        report = SyncReport(tuple(embedded), tuple(unchanged), tuple(removed), tuple(skipped), len(self),
                            time.perf_counter() - started)
        log.info("Knowledge base %s: %s", kb_dir, report.summary())
        return report

    def _store(self, db: sqlite3.Connection, document: ReadDocument, digest: str) -> None:
        """Replace a file's chunks with freshly embedded ones."""
        for warning in document.warnings:
            log.warning("Knowledge base: %s: %s", document.source, warning)
        chunks = chunk_document(document)
        vectors = self.embedder.embed([c.embedding_text() for c in chunks]).astype(np.float32)
        db.execute("DELETE FROM files WHERE source = ?", (document.source,))
        db.execute("INSERT INTO files VALUES (?, ?, ?)", (document.source, digest, len(chunks)))
        db.executemany(
            "INSERT INTO chunks (source, position, title, text, embedding) VALUES (?, ?, ?, ?, ?)",
            [(document.source, i, c.title, c.text, v.tobytes())
             for i, (c, v) in enumerate(zip(chunks, vectors, strict=True))],
        )

    def _load(self) -> None:
        """Read every chunk and embedding into memory and recompute the fingerprint."""
        with self._lock, self._connect() as db:
            rows = db.execute(
                "SELECT c.source, c.title, c.text, c.embedding FROM chunks c JOIN files f USING (source) "
                "ORDER BY c.source, c.position"
            ).fetchall()
            files = db.execute("SELECT source, sha256 FROM files ORDER BY source").fetchall()
            settings = db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        digest = hashlib.sha256((settings[0] if settings else "").encode())
        for source, sha in files:
            digest.update(f"\0{source}\0{sha}".encode())
        dim = self.embedder.dim
        matrix = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        self._loaded = _Loaded([Chunk(r[0], r[1], r[2]) for r in rows], matrix, digest.hexdigest()[:16])

    def documents(self) -> dict[str, list[Chunk]]:
        """Every document's chunks in document order, by source."""
        grouped: dict[str, list[Chunk]] = {}
        for chunk in self._loaded.chunks:  # loaded ordered by source, then position
            grouped.setdefault(chunk.source, []).append(chunk)
        return grouped

    def search(self, query_vector: np.ndarray, k: int) -> list[ScoredChunk]:
        """The ``k`` chunks most similar to a unit-length query vector, best first (exact cosine search)."""
        loaded = self._loaded
        if not loaded.chunks:
            return []
        scores = loaded.matrix @ query_vector.astype(np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [ScoredChunk(loaded.chunks[i], float(scores[i])) for i in top]
