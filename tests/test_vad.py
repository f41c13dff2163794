"""Silero VAD on real speech made with espeak-ng: segments, silence trimming and end-of-turn detection."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from core.audio import load_audio
from core.vad import SAMPLE_RATE, EndOfTurnDetector, speech_segments, trim_silence

PAD_S = 2.0


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About two seconds of espeak-ng speech at 16 kHz, with espeak's own short edges cut off."""
    wav = tmp_path_factory.mktemp("vad") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), "Please tell me about the weather."], check=True)
    audio = load_audio(wav)
    voiced = np.flatnonzero(np.abs(audio) > 0.02)
    return audio[voiced[0] : voiced[-1] + 1]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def test_segments_lie_inside_the_speech(speech):
    padded = np.concatenate([silence(PAD_S), speech, silence(PAD_S)])
    segments = speech_segments(padded)
    assert segments, "no speech found"
    speech_end = PAD_S + speech.size / SAMPLE_RATE
    assert PAD_S - 0.1 <= segments[0][0] <= PAD_S + 0.3
    assert speech_end - 0.4 <= segments[-1][1] <= speech_end + 0.1
    assert all(a < b for a, b in segments)


def test_trim_silence_removes_two_seconds_each_side(speech):
    padded = np.concatenate([silence(PAD_S), speech, silence(PAD_S)])
    trimmed = trim_silence(padded, pad_s=0.2)
    speech_s = speech.size / SAMPLE_RATE
    assert speech_s - 0.4 <= trimmed.size / SAMPLE_RATE <= speech_s + 0.5
    # The trimmed clip is the speech itself: it holds nearly all of the padded clip's energy.
    assert np.sum(trimmed**2) >= 0.98 * np.sum(padded**2)


def test_silence_and_noise_floor_have_no_speech():
    rng = np.random.default_rng(0)
    assert speech_segments(silence(3.0)) == []
    assert trim_silence(silence(3.0)).size == 0
    assert speech_segments((0.001 * rng.standard_normal(3 * SAMPLE_RATE)).astype(np.float32)) == []
    assert speech_segments(silence(0.01)) == []


def feed_in_chunks(detector: EndOfTurnDetector, audio: np.ndarray, chunk_s: float = 0.1) -> float | None:
    """Feed audio like a microphone stream; return the stream time at which the turn ended, or None."""
    step = int(chunk_s * SAMPLE_RATE)
    for start in range(0, audio.size, step):
        if detector.feed(audio[start : start + step]):
            return (start + step) / SAMPLE_RATE
    return None


def test_end_of_turn_fires_after_the_pause(speech):
    detector = EndOfTurnDetector(pause_s=0.7)
    stream = np.concatenate([silence(0.5), speech, silence(2.0)])
    ended_at = feed_in_chunks(detector, stream)
    speech_end = 0.5 + speech.size / SAMPLE_RATE
    assert ended_at is not None
    assert speech_end + 0.7 - 0.35 <= ended_at <= speech_end + 0.7 + 0.4
    assert detector.heard_speech and detector.speech_s > 1.0


def test_end_of_turn_needs_speech_first_and_resets(speech):
    detector = EndOfTurnDetector(pause_s=0.5)
    assert feed_in_chunks(detector, silence(3.0)) is None
    assert not detector.heard_speech
    assert feed_in_chunks(detector, np.concatenate([speech, silence(1.0)])) is not None
    detector.reset()
    assert not detector.ended and detector.speech_s == 0.0
    assert feed_in_chunks(detector, speech) is None  # still talking: no pause yet


def test_end_of_turn_rejects_a_non_positive_pause():
    with pytest.raises(ValueError, match="pause_s"):
        EndOfTurnDetector(pause_s=0)
