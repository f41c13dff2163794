"""Reference lip-sync timing: Piper speech with the voice's own per-symbol alignments, the ground truth that the
lip-sync benchmark and tests score every timing source against."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.types import PhonemeTiming, Speech


def piper_reference_speech(voice: Any, text: str) -> Speech:
    """Speak ``text`` with a loaded ``piper.PiperVoice`` and keep its raw per-code-point alignments as IPA timings.

    The voice must be loaded with ``include_alignments=True``.
    """
    phonemes, audio, t = [], [], 0.0
    for chunk in voice.synthesize(text, include_alignments=True):
        for item in chunk.phoneme_alignments:
            step = item.num_samples / chunk.sample_rate
            phonemes.append(PhonemeTiming(item.phoneme, t, t + step))
            t += step
        audio.append(chunk.audio_float_array)
    return Speech(text, np.concatenate(audio), voice.config.sample_rate, tuple(phonemes), backend="piper")
