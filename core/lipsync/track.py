"""Builds a VisemeTrack from viseme segments: Rhubarb mouth cues without flicker and coarticulated Oculus keyframes.

Mouth cues: segments map to shapes, equal neighbours merge, and a cue shorter than ``MIN_CUE_S`` first borrows time
from a neighbour that can spare it (so a short lip closure survives), otherwise it is dissolved into its neighbours.

Keyframes (the player interpolates linearly between consecutive ones): one keyframe per viseme segment at its
target time, the middle of the segment moved ``ANTICIPATION_S`` earlier, holding the viseme at full weight plus a
little of the previous and next visemes (coarticulation). Lip closures (PP, FF) stay pure so the lips really close.
Pauses ease to ``sil`` within ``REST_EASE_S`` and leave it the same way; every track starts and ends at rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.lipsync.phonemes import SILENCE, VisemeSegment, cover
from core.lipsync.tables import shape_table
from core.types import MouthCue, VisemeKey, VisemeTrack

MIN_CUE_S = 0.04
"""Shortest mouth cue; one frame at 25 fps. Shorter shapes flicker."""
ANTICIPATION_S = 0.035
"""How far the mouth moves ahead of the sound (articulation leads acoustics by tens of ms)."""
PREVIOUS_BLEND = 0.15
NEXT_BLEND = 0.3
"""Weight of the previous / next viseme mixed into a keyframe (carry-over / anticipatory coarticulation)."""
PURE_VISEMES = frozenset({"PP", "FF"})
"""Visemes that must reach full weight alone: the lips close or touch the teeth."""
REST_EASE_S = 0.08
"""Time to settle into rest at a pause and to leave it before speech resumes."""
MIN_KEY_GAP_S = 0.005
"""Keyframes closer than this are pushed apart so times stay strictly increasing."""
TIME_DECIMALS = 4
WEIGHT_DECIMALS = 3


@dataclass(slots=True)
class _Cue:
    shape: str
    start_s: float
    end_s: float

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


def mouth_cues(segments: Sequence[VisemeSegment], min_cue_s: float = MIN_CUE_S) -> list[MouthCue]:
    """Rhubarb cues back to back over the segments' span, each at least ``min_cue_s`` long when the span allows."""
    shapes = shape_table().shapes
    cues: list[_Cue] = []
    for seg in segments:
        shape = seg.shape or shapes[seg.viseme]
        if cues and cues[-1].shape == shape:
            cues[-1].end_s = seg.end_s
        else:
            cues.append(_Cue(shape, seg.start_s, seg.end_s))
    while len(cues) > 1:
        i = min(range(len(cues)), key=lambda k: cues[k].length_s)
        if cues[i].length_s >= min_cue_s - 1e-9:
            break
        if not _borrow(cues, i, min_cue_s):
            _dissolve(cues, i)
    return [MouthCue(round(c.start_s, TIME_DECIMALS), round(c.end_s, TIME_DECIMALS), c.shape) for c in cues]


def _borrow(cues: list[_Cue], i: int, min_cue_s: float) -> bool:
    """Lengthen cue ``i`` to ``min_cue_s`` from the longer neighbour if that one stays long enough."""
    need = min_cue_s - cues[i].length_s
    neighbours = [k for k in (i - 1, i + 1) if 0 <= k < len(cues)]
    k = max(neighbours, key=lambda n: cues[n].length_s)
    if cues[k].length_s - need < min_cue_s:
        return False
    if k < i:
        cues[k].end_s -= need
        cues[i].start_s = cues[k].end_s
    else:
        cues[k].start_s += need
        cues[i].end_s = cues[k].start_s
    return True


def _dissolve(cues: list[_Cue], i: int) -> None:
    """Remove cue ``i``, splitting its time between its neighbours, and merge them if they now show one shape."""
    cue = cues.pop(i)
    if i == 0:
        cues[0].start_s = cue.start_s
        return
    if i == len(cues):
        cues[-1].end_s = cue.end_s
        return
    mid = (cue.start_s + cue.end_s) / 2
    cues[i - 1].end_s = mid
    cues[i].start_s = mid
    if cues[i - 1].shape == cues[i].shape:
        cues[i - 1].end_s = cues.pop(i).end_s


def keyframes(segments: Sequence[VisemeSegment]) -> list[VisemeKey]:
    """Oculus viseme keyframes designed for linear interpolation; see the module docstring."""
    if not segments:
        return []
    start, end = segments[0].start_s, segments[-1].end_s
    rest = {SILENCE: 1.0}
    keys: list[tuple[float, dict[str, float]]] = []
    if segments[0].viseme != SILENCE:
        keys.append((start, rest))
    for i, seg in enumerate(segments):
        if seg.viseme == SILENCE:
            keys.extend(_pause_keys(seg, first=i == 0, last=i == len(segments) - 1))
            continue
        target = max(seg.start_s, (seg.start_s + seg.end_s) / 2 - ANTICIPATION_S)
        keys.append((target, _blend(segments, i)))
    if segments[-1].viseme != SILENCE:
        keys.append((end, rest))
    return _ordered(keys, end)


def _pause_keys(seg: VisemeSegment, *, first: bool, last: bool) -> list[tuple[float, dict[str, float]]]:
    """Rest from ``REST_EASE_S`` into the pause until ``REST_EASE_S`` (plus anticipation) before it ends;
    a track's leading and trailing pauses are at rest from their very edge."""
    settle = seg.start_s if first else seg.start_s + REST_EASE_S
    leave = seg.end_s if last else seg.end_s - REST_EASE_S - ANTICIPATION_S
    times = {seg.start_s} if first else set()
    if last:
        times.add(seg.end_s)
    if settle <= leave:
        times |= {settle, leave}
    elif not times:
        times.add((seg.start_s + seg.end_s) / 2)
    return [(t, {SILENCE: 1.0}) for t in sorted(times)]


def _blend(segments: Sequence[VisemeSegment], i: int) -> dict[str, float]:
    viseme = segments[i].viseme
    weights = {viseme: 1.0}
    if viseme in PURE_VISEMES:
        return weights
    for k, share in ((i - 1, PREVIOUS_BLEND), (i + 1, NEXT_BLEND)):
        if 0 <= k < len(segments) and segments[k].viseme not in (SILENCE, viseme):
            other = segments[k].viseme
            weights[other] = max(weights.get(other, 0.0), share)
    return weights


def _ordered(keys: list[tuple[float, dict[str, float]]], end: float) -> list[VisemeKey]:
    """Strictly increasing times within the track (later keys pushed forward, never past the end), rounded."""
    out: list[VisemeKey] = []
    last_time = -1.0
    for time_s, weights in sorted(keys, key=lambda kv: kv[0]):
        time_s = min(max(time_s, last_time + MIN_KEY_GAP_S), end)
        if out and time_s <= last_time:
            continue
        rounded = {k: round(v, WEIGHT_DECIMALS) for k, v in weights.items() if v > 0}
        out.append(VisemeKey(round(time_s, TIME_DECIMALS), rounded))
        last_time = time_s
    return out


def build_track(
    segments: Sequence[VisemeSegment], duration_s: float, *, offset_s: float = 0.0, source: str = ""
) -> VisemeTrack:
    """A track over ``[0, duration_s]`` (segments clipped, gaps at rest), with every time shifted by ``offset_s``."""
    shifted = [VisemeSegment(s.viseme, s.start_s + offset_s, s.end_s + offset_s, s.shape)
               for s in cover(segments, duration_s)]
    return VisemeTrack(
        duration_s=duration_s,
        mouth_cues=tuple(mouth_cues(shifted)),
        keyframes=tuple(keyframes(shifted)),
        source=source,
    )


def join_tracks(tracks: Sequence[VisemeTrack]) -> VisemeTrack:
    """One continuous track from pieces made with ``offset_s`` = the total duration of the pieces before them.

    Raises:
        ValueError: when a piece does not start where the previous one ended (a wrong offset).
    """
    if not tracks:
        return VisemeTrack(0.0, (), ())
    cues: list[MouthCue] = []
    keys: list[VisemeKey] = []
    total = 0.0
    for track in tracks:
        first = track.mouth_cues[0].start_s if track.mouth_cues else total
        if abs(first - total) > 1e-3:
            raise ValueError(f"track piece starts at {first:.3f} s but the previous pieces end at {total:.3f} s")
        for cue in track.mouth_cues:
            if cues and cues[-1].shape == cue.shape:
                cues[-1] = MouthCue(cues[-1].start_s, cue.end_s, cue.shape)
            else:
                cues.append(cue)
        keys.extend(k for k in track.keyframes if not keys or k.time_s > keys[-1].time_s)
        total += track.duration_s
    sources = ",".join(dict.fromkeys(t.source for t in tracks if t.source))
    return VisemeTrack(duration_s=total, mouth_cues=tuple(cues), keyframes=tuple(keys), source=sources)
