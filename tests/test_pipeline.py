"""Whole turns through the pipeline on the real embedded models."""

from __future__ import annotations

import pytest
import soundfile as sf

from core.errors import InputError
from core.types import EMOTION_LABELS, ChatMessage, ReplyDelta, SpokenClip, TurnComplete, UserTurn


def run(pipeline, history=(), **kwargs):
    return list(pipeline.run_turn(list(history), **kwargs))


def test_text_turn_streams_text_then_speaks_clips_and_completes(pipeline):
    events = run(pipeline, text="Hello! Who are you?")
    assert isinstance(events[0], UserTurn) and events[0].text == "Hello! Who are you?"
    assert events[0].emotion.label in EMOTION_LABELS
    deltas = [e for e in events if isinstance(e, ReplyDelta)]
    clips = [e for e in events if isinstance(e, SpokenClip)]
    done = events[-1]
    assert isinstance(done, TurnComplete)
    assert len(deltas) > 1 and clips
    assert "".join(d.text for d in deltas).strip() == done.reply.text.strip()
    assert 0 < done.reply.completion_tokens <= pipeline.config.llm.max_tokens
    # Clips follow each other with no gap, and the whole-turn audio is their concatenation.
    for before, after in zip(clips, clips[1:], strict=False):
        assert after.offset_s == pytest.approx(before.offset_s + before.duration_s, abs=1e-6)
    info = sf.info(done.wav_path)
    assert info.duration == pytest.approx(clips[-1].offset_s + clips[-1].duration_s, abs=0.01)
    assert done.track.duration_s == pytest.approx(info.duration, abs=0.01)
    assert done.track.mouth_cues[-1].end_s == pytest.approx(info.duration, abs=0.02)
    assert done.emotion.label in EMOTION_LABELS
    for key in ("llm_first_token_s", "first_audio_s", "total_s"):
        assert done.timings_s[key] > 0
    assert done.timings_s["first_audio_s"] <= done.timings_s["total_s"]


@pytest.mark.parametrize("text", ["", "   \n ", None])
def test_empty_text_is_refused_with_a_clear_message(pipeline, text):
    with pytest.raises(InputError, match="type a question"):
        run(pipeline, text=text)


def test_text_over_the_cap_is_refused_and_the_next_turn_works(pipeline):
    with pytest.raises(InputError, match="limit is"):
        run(pipeline, text="why " * 400)
    assert isinstance(run(pipeline, text="Say hi.")[-1], TurnComplete)


def test_history_window_keeps_the_most_recent_turns(pipeline):
    history = [ChatMessage("user" if i % 2 == 0 else "assistant", f"m{i}") for i in range(40)]
    messages = pipeline._messages(history, "now")
    assert messages[0].role == "system" and messages[-1].content == "now"
    kept = 2 * pipeline.config.llm.history_turns
    assert [m.content for m in messages[1:-1]] == [f"m{i}" for i in range(40 - kept, 40)]


def test_statuses_name_each_stage_backend(pipeline):
    lines = [s.line() for s in pipeline.statuses()]
    assert any(line.startswith("LLM: local SmolLM2") for line in lines), lines
    assert any(line.startswith("TTS: Piper") for line in lines), lines
    assert any(line.startswith("ASR: whisper.cpp") for line in lines), lines
