"""Clothing and the bust's cut: where the body is cropped, the crew-neck top over it, and the cap that closes it."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from avatar_assets.builder.geometry import (
    Part,
    boundary_loops,
    ear_clip,
    smoothstep,
    srgb_to_linear,
    subdivide,
)
from avatar_assets.builder.params import Bust

CUT_SEARCH_DM = 0.3
"""The crop's boundary loop lies within this height of the bust's bottom."""
TOP_MARGIN_DM = 0.15
"""Skin triangles up to this far above the neckline are dressed (the shell dives under the skin there)."""
TOP_SUBDIVISIONS = 2
CLOTH_EDGE_DM = 0.02
"""The cloth offset reaches its full value this far below the neckline (tanh scale)."""
KNIT_RIBS, KNIT_DEPTH = 160, 0.05
"""The collar's knit ribs round the neck, and how much they modulate its shade."""
HEM_INSET_DM = 0.02
HEM_SHADE, CAP_SHADE = 0.6, 0.5
"""The hem's rim and the bottom cap are this much darker than the top."""


def bust_bottom(x: np.ndarray, bust: Bust) -> np.ndarray:
    """Height of the bust's bottom edge at each x: rising towards the shoulders, then (``shoulder_drop``) curving
    down over the outer shoulders so the silhouette ends in sloping shoulders, not a flat cut."""
    a, power = bust.rounding
    t = np.clip(np.abs(x) / bust.half_width, 0, 1)
    outer = smoothstep(1.0 - bust.shoulder_span, 1.0, t) if bust.shoulder_span > 0 else np.zeros_like(t)
    return bust.bottom_y + a * t ** power - bust.shoulder_drop * outer


def crop_body(shaped: np.ndarray, body: np.ndarray, bust: Bust) -> np.ndarray:
    """Keep the body triangles wholly above the bust's bottom edge and inside its half-width."""
    corners = shaped[body]
    cen = corners.mean(1)
    keep = (corners[:, :, 1].min(1) > bust_bottom(corners[:, :, 0], bust).max(1)) & (
        np.abs(cen[:, 0]) < bust.half_width)
    return body[keep]


def flatten_cut(skin: Part, bust: Bust) -> list[int]:
    """Find the loop left by the crop and lay it onto the bottom edge's curve; returns the loop's vertex ids."""
    loops = [lp for lp in boundary_loops(skin.triangles) if skin.positions[lp, 1].min() < bust.bottom_y + CUT_SEARCH_DM]
    loop = max(loops, key=len)
    skin.positions[loop, 1] = bust_bottom(skin.positions[loop, 0], bust)
    return loop


def neckline_depth(pos: np.ndarray, bust: Bust) -> np.ndarray:
    """How far (dm) each point lies below the top's crew neckline (negative above it)."""
    back, dip = bust.neckline
    return back - dip * smoothstep(0.2, 0.9, pos[:, 2]) - pos[:, 1]


def top_part(skin: Part, bust: Bust, color: Iterable[float]) -> Part:
    """The top: the body below the neckline as a shell just off the skin, with a rolled collar.

    Above the neckline the offset turns negative, so the shell dives under the skin and the neckline is the smooth
    shell/skin intersection rather than a row of mesh edges. The hem closes onto the skin with a short rim.
    """
    tris = skin.triangles[(neckline_depth(skin.positions, bust)[skin.triangles] > -TOP_MARGIN_DM).any(1)]
    used, local = np.unique(tris, return_inverse=True)
    p, n, tris = subdivide(skin.positions[used], skin.normals[used], local.reshape(-1, 3), TOP_SUBDIVISIONS)
    s = neckline_depth(p, bust)
    ridge, below, width = bust.collar
    offset = bust.cloth_offset * np.tanh(s / CLOTH_EDGE_DM) + ridge * np.exp(-(((s - below) / width) ** 2))
    outer = p + n * offset[:, None]
    band = np.exp(-(((s - below) / (1.6 * width)) ** 2))
    rel = p - p.mean(0)
    knit = 1 + KNIT_DEPTH * band * np.sin(np.arctan2(rel[:, 0], rel[:, 2]) * KNIT_RIBS)
    shade = (0.8 + 0.2 * smoothstep(4.9, 5.5, p[:, 1])) * (1 - 0.15 * band) * knit
    colors = srgb_to_linear(color)[None, :] * shade[:, None]
    hem = max(boundary_loops(tris), key=lambda lp: -p[lp, 1].min())  # the loop along the bust's cut
    k = len(hem)
    ring = p[hem] - n[hem] * HEM_INSET_DM
    positions = np.concatenate([outer, ring])
    rim = [(hem[i], len(p) + i, hem[(i + 1) % k]) for i in range(k)]
    rim += [(hem[(i + 1) % k], len(p) + i, len(p) + (i + 1) % k) for i in range(k)]
    colors = np.concatenate([colors, colors[hem] * HEM_SHADE])
    return Part("top", "cloth", positions, np.concatenate([tris, np.asarray(rim, dtype=np.int64)]), colors)


def bust_cap(skin: Part, loop: list[int], color: Iterable[float]) -> Part:
    """Close the bust's cut with a cap facing down, ear-clipped so it never spills out of a concave outline."""
    positions = skin.positions[loop]
    k = len(loop)
    # The boundary loop runs in the skin's winding; the cap takes the reverse so its front faces look down.
    triangles = np.asarray([(a, c, b) for a, b, c in ear_clip(positions[:, [0, 2]])], dtype=np.int64)
    colors = np.tile(srgb_to_linear(color) * CAP_SHADE, (k, 1))
    normals = np.tile([0.0, -1.0, 0.0], (k, 1))
    return Part("bust_cap", "cloth", positions, triangles, colors, {}, normals)
