"""Do a synthesiser's phoneme timings sit on its audio? The shift that best lines up their speech/rest with the
audio's own loudness gate (``core.lipsync.audio.analyse``), independent of the viseme tables' choices."""

from __future__ import annotations

import numpy as np
from corpus import truth_shapes  # noqa: I001 - corpus sets sys.path

from core.lipsync.audio import FRAME_S, analyse
from core.types import Speech

MAX_LAG_S = 0.1
"""Shifts searched either way; a TTS whose timings are off by more than this is broken, not late."""


def timing_lag(clips: list[Speech]) -> tuple[float, float]:
    """(lag in ms, agreement at that lag) over ``clips``: a positive lag means the timings run late."""
    reach = round(MAX_LAG_S / FRAME_S)
    hits = np.zeros(2 * reach + 1)
    total = 0
    for clip in clips:
        timed = truth_shapes(clip) != "X"
        heard = analyse(clip.audio, clip.sample_rate).speech[: len(timed)]
        timed = timed[: len(heard)]
        inner = slice(reach, len(timed) - reach)
        for k, lag in enumerate(range(-reach, reach + 1)):
            hits[k] += int((np.roll(timed, -lag)[inner] == heard[inner]).sum())
        total += len(timed[inner])
    best = int(hits.argmax())
    return (best - reach) * FRAME_S * 1000, hits[best] / max(total, 1)
