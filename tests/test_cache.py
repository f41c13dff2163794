"""Tests for the answer caches on the real MiniLM model: exact and reworded hits, misses, knowledge-base
invalidation, persistence with the audio, the similarity threshold measured on labelled pairs, and the serialisers."""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import subprocess
from pathlib import Path

import pytest

from core.cache import (
    DEFAULT_SIMILARITY,
    CachedResponse,
    ResponseCache,
    RetrievalCache,
    decode_clip,
    decode_emotion,
    decode_passage,
    decode_reply,
    decode_track,
    encode_clip,
    encode_emotion,
    encode_passage,
    encode_reply,
    encode_track,
    is_same_question,
    normalise_question,
)
from core.config import PROJECT_ROOT, AppConfig, RetrievalConfig
from core.embeddings import Embedder, get_embedder
from core.retrieval import LocalVectorIndex, Passage
from core.types import EMOTION_LABELS, Emotion, MouthCue, Reply, SpokenClip, TurnComplete, VisemeKey, VisemeTrack

PAIRS = PROJECT_ROOT / "data" / "retrieval" / "cache_pairs.jsonl"
QUESTION = "How much does an answer cost with Databricks?"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return get_embedder()


def speak(text: str, path: Path) -> str:
    """Real speech for a clip, made with espeak-ng."""
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
    return str(path)


def emotion(label: str) -> Emotion:
    return Emotion(label, {name: 0.7 if name == label else 0.05 for name in EMOTION_LABELS}, "embedding")


def track(duration_s: float) -> VisemeTrack:
    return VisemeTrack(duration_s, (MouthCue(0.0, 0.2, "X"), MouthCue(0.2, duration_s, "D")),
                       (VisemeKey(0.0, {"sil": 1.0}), VisemeKey(0.25, {"aa": 0.8, "PP": 0.1})), "tts")


def spoken_turn(tmp_path: Path, texts: tuple[str, ...] = ("About a cent", "per hundred answers.")
                ) -> tuple[list[SpokenClip], TurnComplete]:
    """Clips and the completed turn a pipeline would yield, with real WAV files."""
    clips = []
    offset = 0.0
    for i, text in enumerate(texts):
        wav = speak(text, tmp_path / f"turn-{i:02d}.wav")
        clips.append(SpokenClip("turn1", i, text, wav, offset, 0.9, track(0.9), emotion("joy")))
        offset += 0.9
    whole = speak(" ".join(texts), tmp_path / "turn.wav")
    reply = Reply(" ".join(texts), 700, 12, "databricks", "databricks-meta-llama-3-1-8b-instruct")
    return clips, TurnComplete(reply, emotion("neutral"), whole, track(offset), {"total_s": 2.0})


@pytest.fixture
def stored(tmp_path: Path, embedder: Embedder) -> tuple[ResponseCache, list[SpokenClip], TurnComplete]:
    """A response cache holding one spoken answer to QUESTION."""
    cache = ResponseCache(tmp_path / "cache", "local:kb1", settings_key="llm=x", embedder=embedder)
    clips, complete = spoken_turn(tmp_path)
    cache.put(QUESTION, clips, complete, [Passage("Prices...", "costs.md", "Costs", 0.6)])
    return cache, clips, complete


# ---------------------------------------------------------------------------------------------------------------
# Response cache
# ---------------------------------------------------------------------------------------------------------------


def test_repeat_is_an_exact_hit_with_the_whole_turn(stored: tuple[ResponseCache, list[SpokenClip], TurnComplete]
                                                    ) -> None:
    cache, clips, complete = stored
    found = cache.lookup("  how much does an answer COST with databricks ")
    assert (found.hit, found.kind, found.similarity) == (True, "exact", 1.0)
    response = found.value
    assert isinstance(response, CachedResponse)
    assert (response.question, response.reply, response.emotion, response.track) == (
        QUESTION, complete.reply, complete.emotion, complete.track)
    assert response.passages == (Passage("Prices...", "costs.md", "Costs", 0.6),)
    assert Path(response.wav_path).read_bytes() == Path(complete.wav_path).read_bytes()
    for original, cached in zip(clips, response.clips, strict=True):
        assert Path(cached.wav_path).read_bytes() == Path(original.wav_path).read_bytes()
        assert dataclasses.replace(cached, wav_path=original.wav_path) == original
    assert [c.turn_id for c in response.replay("turn2")] == ["turn2", "turn2"]


def test_rewording_is_a_semantic_hit(stored: tuple[ResponseCache, list[SpokenClip], TurnComplete]) -> None:
    cache, _, complete = stored
    found = cache.lookup("How much does one answer cost with Databricks?")
    assert found.kind == "semantic" and DEFAULT_SIMILARITY <= found.similarity < 1.0
    assert found.value is not None and found.value.reply == complete.reply
    assert found.value.similarity == found.similarity


def test_unrelated_question_misses(stored: tuple[ResponseCache, list[SpokenClip], TurnComplete]) -> None:
    cache, _, _ = stored
    found = cache.lookup("Where does the avatar's 3D head come from?")
    assert (found.hit, found.kind) == (False, "miss")
    assert found.similarity < 0.5 and found.matched == normalise_question(QUESTION)
    assert cache.get("Where does the avatar's 3D head come from?") is None


def test_different_numbers_never_match(tmp_path: Path, embedder: Embedder) -> None:
    cache = ResponseCache(tmp_path / "cache", "kb", threshold=0.8, embedder=embedder)
    clips, complete = spoken_turn(tmp_path, ("Four.",))
    cache.put("What is 2 plus 2?", clips, complete)
    found = cache.lookup("What is 2 plus 3?")
    assert found.similarity >= 0.8 and not found.hit
    assert cache.lookup("what's 2 plus 2").hit


def test_knowledge_base_change_invalidates(app_config: AppConfig, tmp_path: Path, embedder: Embedder) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "prices.md").write_text("# Prices\nAn answer costs a tenth of a cent.\n", encoding="utf-8")
    config = dataclasses.replace(app_config, cache_dir=tmp_path / "cache", retrieval=RetrievalConfig(kb_dir=kb))
    index = LocalVectorIndex(config)
    cache = ResponseCache(config.cache_dir, index.fingerprint(), embedder=embedder)
    clips, complete = spoken_turn(tmp_path)
    cache.put(QUESTION, clips, complete)
    assert cache.get(QUESTION) is not None
    (kb / "prices.md").write_text("# Prices\nAn answer costs a fifth of a cent.\n", encoding="utf-8")
    index.refresh()
    cache.kb_fingerprint = index.fingerprint()
    assert cache.lookup(QUESTION).kind == "miss"


def test_persists_across_instances_and_restores_audio(stored: tuple[ResponseCache, list[SpokenClip], TurnComplete],
                                                      embedder: Embedder) -> None:
    cache, clips, complete = stored
    first = cache.get(QUESTION)
    assert first is not None
    for path in [first.wav_path, *(c.wav_path for c in first.clips)]:
        Path(path).unlink()
    reopened = ResponseCache(cache.path.parent.parent, "local:kb1", settings_key="llm=x", embedder=embedder)
    again = reopened.lookup("How much does one answer cost with Databricks?")
    assert again.kind == "semantic" and again.value is not None
    assert Path(again.value.clips[1].wav_path).read_bytes() == Path(clips[1].wav_path).read_bytes()
    assert Path(again.value.wav_path).read_bytes() == Path(complete.wav_path).read_bytes()
    other_settings = ResponseCache(cache.path.parent.parent, "local:kb1", settings_key="llm=y", embedder=embedder)
    assert other_settings.get(QUESTION) is None


def test_corrupt_row_is_dropped_as_a_miss(stored: tuple[ResponseCache, list[SpokenClip], TurnComplete],
                                          caplog: pytest.LogCaptureFixture) -> None:
    cache, _, _ = stored
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE responses SET payload = '{\"question\": 1}'")
    db.close()
    with caplog.at_level(logging.WARNING):
        assert cache.get(QUESTION) is None
    assert "unreadable cached reply" in caplog.text
    assert cache.lookup(QUESTION).kind == "miss"


# ---------------------------------------------------------------------------------------------------------------
# Threshold, measured on labelled pairs
# ---------------------------------------------------------------------------------------------------------------


def test_default_threshold_separates_rewordings_from_near_misses(embedder: Embedder) -> None:
    rows = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert all(set(r) == {"a", "b", "same"} for r in rows)
    a = [normalise_question(r["a"]) for r in rows]
    b = [normalise_question(r["b"]) for r in rows]
    similarity = (embedder.embed(a) * embedder.embed(b)).sum(axis=1)
    decided = [is_same_question(x, y, float(s), DEFAULT_SIMILARITY) for x, y, s in zip(a, b, similarity, strict=True)]
    true_hits = sum(d and r["same"] for d, r in zip(decided, rows, strict=True))
    false_hits = sum(d and not r["same"] for d, r in zip(decided, rows, strict=True))
    rewordings = sum(r["same"] for r in rows)
    assert true_hits / rewordings >= 0.7
    assert false_hits <= 1 and true_hits / (true_hits + false_hits) >= 0.9
    assert RetrievalConfig().cache_similarity == DEFAULT_SIMILARITY


# ---------------------------------------------------------------------------------------------------------------
# Retrieval cache
# ---------------------------------------------------------------------------------------------------------------


def test_retrieval_cache_hits_repeats_and_rewordings_per_kb_state(app_config: AppConfig, tmp_path: Path,
                                                                 embedder: Embedder) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "tea.md").write_text("# Tea\nGreen tea is steamed to stop oxidation.\n", encoding="utf-8")
    index = LocalVectorIndex(dataclasses.replace(app_config, cache_dir=tmp_path / "c", retrieval=RetrievalConfig(
        kb_dir=kb)))
    cache = RetrievalCache(embedder, max_entries=2)
    passages, first = cache.search(index, "How is green tea made?")
    assert first.kind == "miss" and [p.source for p in passages] == ["tea.md"]
    again, repeat = cache.search(index, "how is green tea made")
    assert repeat.kind == "exact" and again == passages
    _, reworded = cache.search(index, "How does green tea get made?")
    assert reworded.kind == "semantic" and reworded.similarity >= DEFAULT_SIMILARITY
    assert cache.lookup("How is green tea made?", "another-kb", 3).kind == "miss"
    assert cache.lookup("How is green tea made?", index.fingerprint(), 5).kind == "miss"
    cache.put("What is oolong?", index.fingerprint(), 3, [])
    cache.put("What is matcha?", index.fingerprint(), 3, [])  # evicts the oldest entry (max_entries=2)
    assert cache.lookup("How is green tea made?", index.fingerprint(), 3).kind == "miss"
    assert cache.lookup("What is matcha?", index.fingerprint(), 3).kind == "exact"


# ---------------------------------------------------------------------------------------------------------------
# Serialisers
# ---------------------------------------------------------------------------------------------------------------


def test_serialisers_round_trip_through_json() -> None:
    def through_json(data: dict) -> dict:
        return json.loads(json.dumps(data))

    reply = Reply("Hi there.", 10, 3, "local", "SmolLM2", "length")
    mood = emotion("surprise")
    lips = track(1.25)
    clip = SpokenClip("t", 2, "Hi there.", "/tmp/x.wav", 1.5, 1.25, lips, mood)
    passage = Passage("text", "a.md", "A › B", 0.42)
    assert decode_reply(through_json(encode_reply(reply))) == reply
    assert decode_emotion(through_json(encode_emotion(mood))) == mood
    assert decode_track(through_json(encode_track(lips))) == lips
    assert decode_clip(through_json(encode_clip(clip))) == clip
    assert decode_passage(through_json(encode_passage(passage))) == passage


def test_normalised_keys() -> None:
    assert normalise_question("  What's   the PRICE?! ") == "what s the price"
    assert normalise_question("Ｃａｆé—menu") == "café menu"


def test_a_change_to_the_reply_rules_makes_stored_replies_stale(tmp_path):
    from core.stages import REPLY_RULES, reply_rules_fingerprint

    rules = tmp_path / "guard.json"
    rules.write_text('{"refusal": "No."}')
    before = reply_rules_fingerprint.__wrapped__((rules, tmp_path / "missing.json"))
    rules.write_text('{"refusal": "I cannot."}')
    assert reply_rules_fingerprint.__wrapped__((rules, tmp_path / "missing.json")) != before
    assert all(path.is_file() for path in REPLY_RULES)  # each named file exists: a typo would silently count as ""
