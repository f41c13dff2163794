"""Answer caches: reuse retrieved passages and whole spoken replies when a question is repeated or reworded.

Two tiers decide whether a new question is "the same" as a stored one: an exact match of the normalised text
(lower case, punctuation and extra spaces dropped), then a semantic match, the cosine of their MiniLM embeddings at
or above a threshold, provided both mention the same numbers (embeddings barely tell "Llama 3.1" from "Llama 3.3").

Threshold (``DEFAULT_SIMILARITY`` = 0.92), measured on ``data/retrieval/cache_pairs.jsonl`` (20 rewordings with the
same answer, 18 near-misses with a different one): at 0.92, 15 of the 20 rewordings hit and 1 near-miss does
("input price" vs "output price" of a model, cosine 0.947); at 0.95 no near-miss hits but only 9 rewordings do;
at 0.90 nothing more is gained. Rewordings that change several words ("offline" vs "without internet", 0.74) miss.

``RetrievalCache`` keeps passages in memory per knowledge-base fingerprint. ``ResponseCache`` keeps whole replies
(text, emotion, every spoken clip's WAV bytes, lip-sync track and emotion) in SQLite under ``cache_dir``, keyed on
the normalised question and the knowledge-base fingerprint, so any change to the knowledge base invalidates them.
The ``encode_*``/``decode_*`` functions turn the stored dataclasses into JSON-ready dicts and back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from core.retrieval import Passage, RetrievalBackend
from core.retrieval.index import TextEmbedder
from core.storage import transaction
from core.types import Emotion, MouthCue, Reply, SpokenClip, TurnComplete, VisemeKey, VisemeTrack

log = logging.getLogger(__name__)

DEFAULT_SIMILARITY = 0.92
RETRIEVAL_CACHE_ENTRIES = 256
RESPONSE_FORMAT = 1  # bump when the stored payload layout changes; older rows are then ignored
RESPONSES_DIR = "responses"
TURN_AUDIO_SLOT = -1  # the audio slot of the whole turn's WAV; clips use slots 0, 1, ...
_NOT_WORD = re.compile(r"[^\w\s]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

T = TypeVar("T")


def normalise_question(text: str) -> str:
    """The cache key of a question: NFKC, lower case, punctuation replaced by spaces, whitespace collapsed."""
    return " ".join(_NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).split())


def is_same_question(stored_key: str, new_key: str, similarity: float, threshold: float) -> bool:
    """The semantic rule: cosine at or above ``threshold`` and the same numbers, in order, in both questions."""
    return similarity >= threshold and _NUMBER.findall(stored_key) == _NUMBER.findall(new_key)


# ---------------------------------------------------------------------------------------------------- matching


@dataclass(frozen=True, slots=True)
class CacheLookup(Generic[T]):
    """The outcome of a cache lookup: the value on a hit, how close the nearest stored question was, and how it matched.

    ``kind`` is "exact" (same normalised text), "semantic" (cosine >= threshold, same numbers) or "miss";
    ``similarity`` is the cosine to the nearest stored question (1.0 for exact, 0.0 when nothing is stored);
    ``matched`` is that stored question's normalised text.
    """

    value: T | None
    kind: str
    similarity: float
    matched: str = ""
    seconds: float = 0.0

    @property
    def hit(self) -> bool:
        """Whether a stored value can be reused."""
        return self.value is not None


class _QuestionSet:
    """Normalised questions and their unit embeddings, with exact and nearest-neighbour lookup."""

    def __init__(self, dim: int) -> None:
        self.keys: list[str] = []
        self.matrix = np.zeros((0, dim), dtype=np.float32)

    def add(self, key: str, vector: np.ndarray) -> None:
        if key in self.keys:
            self.matrix[self.keys.index(key)] = vector
            return
        self.keys.append(key)
        self.matrix = np.vstack([self.matrix, vector[None, :].astype(np.float32)])

    def remove(self, key: str) -> None:
        if key in self.keys:
            i = self.keys.index(key)
            del self.keys[i]
            self.matrix = np.delete(self.matrix, i, axis=0)

    def nearest(self, key: str, vector: np.ndarray, threshold: float) -> tuple[str, float, bool]:
        """The closest stored key, its cosine, and whether it counts as the same question."""
        if not self.keys:
            return "", 0.0, False
        scores = self.matrix @ vector
        best = int(np.argmax(scores))
        similarity = float(scores[best])
        return self.keys[best], similarity, is_same_question(self.keys[best], key, similarity, threshold)


# ---------------------------------------------------------------------------------------------------- serialisers


def encode_passage(passage: Passage) -> dict[str, Any]:
    """A Passage as a JSON-ready dict."""
    return {"text": passage.text, "source": passage.source, "title": passage.title, "score": passage.score}


def decode_passage(data: Mapping[str, Any]) -> Passage:
    """The Passage ``encode_passage`` wrote."""
    return Passage(str(data["text"]), str(data["source"]), str(data["title"]), float(data["score"]))


def encode_reply(reply: Reply) -> dict[str, Any]:
    """A Reply as a JSON-ready dict."""
    return {"text": reply.text, "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "backend": reply.backend, "model": reply.model, "finish_reason": reply.finish_reason}


def decode_reply(data: Mapping[str, Any]) -> Reply:
    """The Reply ``encode_reply`` wrote."""
    return Reply(str(data["text"]), int(data["prompt_tokens"]), int(data["completion_tokens"]), str(data["backend"]),
                 str(data["model"]), str(data["finish_reason"]))


def encode_emotion(emotion: Emotion) -> dict[str, Any]:
    """An Emotion as a JSON-ready dict."""
    return {"label": emotion.label, "scores": dict(emotion.scores), "backend": emotion.backend}


def decode_emotion(data: Mapping[str, Any]) -> Emotion:
    """The Emotion ``encode_emotion`` wrote."""
    scores = {str(label): float(score) for label, score in data["scores"].items()}
    return Emotion(str(data["label"]), scores, str(data["backend"]))


def encode_track(track: VisemeTrack) -> dict[str, Any]:
    """A VisemeTrack as a JSON-ready dict (cues as ``[start_s, end_s, shape]``, keyframes as ``[time_s, weights]``)."""
    return {
        "duration_s": track.duration_s,
        "mouth_cues": [[c.start_s, c.end_s, c.shape] for c in track.mouth_cues],
        "keyframes": [[k.time_s, dict(k.weights)] for k in track.keyframes],
        "source": track.source,
    }


def decode_track(data: Mapping[str, Any]) -> VisemeTrack:
    """The VisemeTrack ``encode_track`` wrote."""
    return VisemeTrack(
        duration_s=float(data["duration_s"]),
        mouth_cues=tuple(MouthCue(float(s), float(e), str(shape)) for s, e, shape in data["mouth_cues"]),
        keyframes=tuple(VisemeKey(float(t), {str(v): float(w) for v, w in weights.items()})
                        for t, weights in data["keyframes"]),
        source=str(data["source"]),
    )


def encode_clip(clip: SpokenClip) -> dict[str, Any]:
    """A SpokenClip as a JSON-ready dict (the audio itself is stored apart, as WAV bytes)."""
    return {"turn_id": clip.turn_id, "index": clip.index, "text": clip.text, "wav_path": clip.wav_path,
            "offset_s": clip.offset_s, "duration_s": clip.duration_s, "track": encode_track(clip.track),
            "emotion": encode_emotion(clip.emotion)}


def decode_clip(data: Mapping[str, Any]) -> SpokenClip:
    """The SpokenClip ``encode_clip`` wrote."""
    return SpokenClip(str(data["turn_id"]), int(data["index"]), str(data["text"]), str(data["wav_path"]),
                      float(data["offset_s"]), float(data["duration_s"]), decode_track(data["track"]),
                      decode_emotion(data["emotion"]))


# ---------------------------------------------------------------------------------------------------- retrieval


class RetrievalCache:
    """Passages already retrieved for a question, in memory, per knowledge-base fingerprint and ``k``.

    Responsibilities: answer a repeated or reworded query without searching again (an exact hit also skips the
    query embedding), forget the oldest entries past ``max_entries``.
    """

    def __init__(self, embedder: TextEmbedder | None = None, *, threshold: float = DEFAULT_SIMILARITY,
                 max_entries: int = RETRIEVAL_CACHE_ENTRIES) -> None:
        self._embedder = embedder
        self.threshold = threshold
        self.max_entries = max_entries
        self._values: OrderedDict[tuple[str, int, str], tuple[Passage, ...]] = OrderedDict()
        self._questions: dict[tuple[str, int], _QuestionSet] = {}
        self._lock = threading.Lock()

    @property
    def embedder(self) -> TextEmbedder:
        """The embedder, the shared MiniLM one unless another was given (loaded on first use)."""
        if self._embedder is None:
            from core.embeddings import get_embedder

            self._embedder = get_embedder()
        return self._embedder

    def lookup(self, query: str, fingerprint: str, k: int) -> CacheLookup[tuple[Passage, ...]]:
        """The passages cached for ``query`` (or a close rewording) against this knowledge-base state."""
        started = time.perf_counter()
        key = normalise_question(query)
        with self._lock:
            if (value := self._values.get((fingerprint, k, key))) is not None:
                self._values.move_to_end((fingerprint, k, key))
                return CacheLookup(value, "exact", 1.0, key, time.perf_counter() - started)
            questions = self._questions.get((fingerprint, k))
        if questions is None or not key:
            return CacheLookup(None, "miss", 0.0, "", time.perf_counter() - started)
        vector = self.embedder.embed([key])[0]
        with self._lock:
            matched, similarity, same = questions.nearest(key, vector, self.threshold)
            value = self._values.get((fingerprint, k, matched)) if same else None
        return CacheLookup(value, "semantic" if value is not None else "miss", similarity, matched,
                           time.perf_counter() - started)

    def put(self, query: str, fingerprint: str, k: int, passages: Sequence[Passage]) -> None:
        """Remember the passages retrieved for ``query``."""
        key = normalise_question(query)
        if not key:
            return
        vector = self.embedder.embed([key])[0]
        with self._lock:
            self._values[(fingerprint, k, key)] = tuple(passages)
            self._questions.setdefault((fingerprint, k), _QuestionSet(vector.shape[0])).add(key, vector)
            while len(self._values) > self.max_entries:
                (old_fingerprint, old_k, old_key), _ = self._values.popitem(last=False)
                self._questions[(old_fingerprint, old_k)].remove(old_key)

    def search(self, backend: RetrievalBackend, query: str, k: int = 3) -> tuple[list[Passage], CacheLookup]:
        """Passages for ``query`` from the cache, or from ``backend`` (then cached); with the lookup's outcome."""
        fingerprint = backend.fingerprint()
        found = self.lookup(query, fingerprint, k)
        if found.value is not None:
            return list(found.value), found
        passages = backend.search(query, k)
        self.put(query, fingerprint, k, passages)
        return passages, found


# ---------------------------------------------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A whole spoken reply, ready to replay: what the pipeline yielded for a question, with audio files on disk.

    ``clips`` are the turn's SpokenClips (their ``wav_path`` points at files restored from the cache), ``wav_path``
    and ``track`` the whole turn's audio and lip-sync, ``passages`` the grounding the reply was written from.
    ``question`` is the question as first asked; ``similarity`` how close the new question was to it.
    """

    question: str
    reply: Reply
    emotion: Emotion
    wav_path: str
    track: VisemeTrack
    clips: tuple[SpokenClip, ...]
    passages: tuple[Passage, ...] = ()
    similarity: float = 1.0

    def replay(self, turn_id: str) -> tuple[SpokenClip, ...]:
        """The clips relabelled with a new turn id, so the player treats them as a new turn."""
        return tuple(replace(clip, turn_id=turn_id) for clip in self.clips)


_RESPONSE_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    question_key TEXT NOT NULL,
    embedding BLOB NOT NULL,
    payload TEXT NOT NULL,
    created_s REAL NOT NULL,
    UNIQUE (scope, question_key)
);
CREATE TABLE IF NOT EXISTS audio (
    response_id INTEGER NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    slot INTEGER NOT NULL,
    wav BLOB NOT NULL,
    PRIMARY KEY (response_id, slot)
);
"""


class ResponseCache:
    """Whole replies persisted in ``<cache_dir>/responses/responses.sqlite3``, with their audio as WAV blobs.

    Responsibilities: store what a finished turn produced (``put``), find it again for the same or a reworded
    question under the same knowledge-base state and settings (``lookup``/``get``), and restore its audio files
    under ``<cache_dir>/responses/audio`` when they are missing. ``kb_fingerprint`` may be reassigned after the
    knowledge base is re-indexed; ``settings_key`` should name whatever else shapes a reply (LLM model, voice).
    """

    def __init__(self, cache_dir: Path, kb_fingerprint: str, *, settings_key: str = "",
                 threshold: float = DEFAULT_SIMILARITY, embedder: TextEmbedder | None = None) -> None:
        root = cache_dir / RESPONSES_DIR
        self.path = root / "responses.sqlite3"
        self.audio_dir = self.audio_folder(cache_dir)
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        self.kb_fingerprint = kb_fingerprint
        self.settings_key = settings_key
        self.threshold = threshold
        self._embedder = embedder
        self._questions: dict[str, _QuestionSet] = {}  # per scope, loaded on first lookup
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_RESPONSE_SCHEMA)

    @staticmethod
    def audio_folder(cache_dir: Path) -> Path:
        """Where replayed replies' WAV files are restored (a file removed from it is restored again when needed)."""
        return cache_dir / RESPONSES_DIR / "audio"

    @property
    def embedder(self) -> TextEmbedder:
        """The embedder, the shared MiniLM one unless another was given (loaded on first use)."""
        if self._embedder is None:
            from core.embeddings import get_embedder

            self._embedder = get_embedder()
        return self._embedder

    @property
    def scope(self) -> str:
        """The part of every key that the question does not decide: the knowledge-base state and the settings."""
        text = f"{RESPONSE_FORMAT}\0{self.kb_fingerprint}\0{self.settings_key}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path)

    def _question_set(self, scope: str) -> _QuestionSet:
        """The stored questions of a scope, read from the database the first time."""
        if scope not in self._questions:
            questions = _QuestionSet(self.embedder.dim)
            with self._connect() as db:
                for key, blob in db.execute("SELECT question_key, embedding FROM responses WHERE scope = ?", (scope,)):
                    questions.add(key, np.frombuffer(blob, dtype=np.float32))
            self._questions[scope] = questions
        return self._questions[scope]

    def lookup(self, question: str) -> CacheLookup[CachedResponse]:
        """Find a stored reply for ``question`` (exact, then semantic); the miss says how close the nearest was."""
        started = time.perf_counter()
        key, scope = normalise_question(question), self.scope
        if not key:
            return CacheLookup(None, "miss", 0.0)
        with self._lock:
            questions = self._question_set(scope)
            if key in questions.keys:
                matched, similarity, kind = key, 1.0, "exact"
            else:
                matched, similarity, same = questions.nearest(key, self.embedder.embed([key])[0], self.threshold)
                kind = "semantic" if same else "miss"
        if kind == "miss":
            return CacheLookup(None, kind, similarity, matched, time.perf_counter() - started)
        response = self._read(scope, matched, similarity)
        kind = kind if response is not None else "miss"
        return CacheLookup(response, kind, similarity, matched, time.perf_counter() - started)

    def get(self, question: str) -> CachedResponse | None:
        """The stored reply for ``question`` or a close rewording of it under the current scope, else None."""
        found = self.lookup(question)
        log.debug("Response cache %s (%.3f) for %r in %.1f ms", found.kind, found.similarity, question[:60],
                  1000 * found.seconds)
        return found.value

    def _read(self, scope: str, key: str, similarity: float) -> CachedResponse | None:
        """Decode a stored reply and restore its audio files; a corrupt row is dropped and counts as a miss."""
        with self._connect() as db:
            row = db.execute("SELECT id, payload FROM responses WHERE scope = ? AND question_key = ?",
                             (scope, key)).fetchone()
            if row is None:
                return None
            response_id, payload = row
            audio = dict(db.execute("SELECT slot, wav FROM audio WHERE response_id = ?", (response_id,)))
        try:
            data = json.loads(payload)
            clips = tuple(decode_clip(c) for c in data["clips"])
            paths = {slot: self._restore(f"{scope}-{response_id}", slot, audio[slot])
                     for slot in (TURN_AUDIO_SLOT, *range(len(clips)))}
            return CachedResponse(
                question=str(data["question"]),
                reply=decode_reply(data["reply"]),
                emotion=decode_emotion(data["emotion"]),
                wav_path=paths[TURN_AUDIO_SLOT],
                track=decode_track(data["track"]),
                clips=tuple(replace(clip, wav_path=paths[i]) for i, clip in enumerate(clips)),
                passages=tuple(decode_passage(p) for p in data["passages"]),
                similarity=similarity,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("Dropping unreadable cached reply for %r: %s: %s", key, type(exc).__name__, exc)
            with self._lock, self._connect() as db:
                db.execute("DELETE FROM responses WHERE id = ?", (response_id,))
                self._question_set(scope).remove(key)
            return None

    def _restore(self, stem: str, slot: int, wav: bytes) -> str:
        """Write a stored WAV to the audio folder unless an identical file is already there; return its path."""
        path = self.audio_dir / f"{stem}-{'turn' if slot == TURN_AUDIO_SLOT else f'{slot:02d}'}.wav"
        if not path.exists() or path.stat().st_size != len(wav):
            partial = path.with_suffix(".tmp")
            partial.write_bytes(wav)
            partial.replace(path)
        return str(path)

    def put(self, question: str, clips: Sequence[SpokenClip], complete: TurnComplete,
            passages: Sequence[Passage] = ()) -> None:
        """Store a finished turn for ``question``: its clips (with their WAV bytes), the whole reply and audio.

        Raises:
            OSError: when a clip's or the turn's WAV file cannot be read.
        """
        key, scope = normalise_question(question), self.scope
        if not key:
            return
        audio = {TURN_AUDIO_SLOT: Path(complete.wav_path).read_bytes()}
        audio |= {i: Path(clip.wav_path).read_bytes() for i, clip in enumerate(clips)}
        payload = json.dumps({
            "question": question.strip(),
            "reply": encode_reply(complete.reply),
            "emotion": encode_emotion(complete.emotion),
            "track": encode_track(complete.track),
            "clips": [encode_clip(clip) for clip in clips],
            "passages": [encode_passage(p) for p in passages],
        })
        vector = self.embedder.embed([key])[0].astype(np.float32)
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM responses WHERE scope = ? AND question_key = ?", (scope, key))
            cursor = db.execute(
                "INSERT INTO responses (scope, question_key, embedding, payload, created_s) VALUES (?, ?, ?, ?, ?)",
                (scope, key, vector.tobytes(), payload, time.time()),
            )
            db.executemany("INSERT INTO audio VALUES (?, ?, ?)",
                           [(cursor.lastrowid, slot, wav) for slot, wav in audio.items()])
            if scope in self._questions:
                self._questions[scope].add(key, vector)
