"""Hair: a cap over the skull (both styles) and, for a bob, a curtain hanging over the ears and the nape."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from avatar_assets.builder.geometry import Part, grid_triangles, smoothstep, srgb_to_linear, subdivide, surface_samples
from avatar_assets.builder.params import Hair, HairCap, HairCurtain

QUIFF_CENTRE = (-0.45, 0.72)
"""Azimuth (rad) and head-box height of the side-swept quiff over the right temple..."""
QUIFF_SIZE = (0.45, 0.22)
"""...and its extent in azimuth and height."""
CURTAIN_HEM_TURN = 0.1
"""How far (dm) the bob's hem turns under."""
CURTAIN_INNER_SHADE = 0.45
"""The curtain's inner face, seen only through gaps, is this much darker."""


def hairline(cap: HairCap, theta: np.ndarray) -> np.ndarray:
    """Hairline height (head-box units) at each azimuth (0 = the nose)."""
    a, b, c = cap.hairline
    return a + b * np.cos(theta) + c * np.cos(2 * theta)


def relax(positions: np.ndarray, triangles: np.ndarray, iterations: int) -> np.ndarray:
    """Laplacian smoothing (each vertex moves halfway to its neighbours' mean): evens out the stair-steps that the
    skin's triangles leave in the cap's offset and silhouette."""
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    degree = np.bincount(edges[:, 0], minlength=len(positions))[:, None]
    for _ in range(iterations):
        mean = np.zeros_like(positions)
        np.add.at(mean, edges[:, 0], positions[edges[:, 1]])
        positions = 0.5 * positions + 0.5 * mean / np.maximum(degree, 1)
    return positions


def hair_part(skin: Part, center: np.ndarray, half: np.ndarray, hair: Hair, color: Iterable[float]) -> Part:
    """The hair cap: the scalp pushed outwards (fuller on top and back), smoothed.

    Below the hairline the offset turns negative, so the shell dives under the skin: the visible hairline is the
    shell/skin intersection, which runs smoothly across faces instead of along the mesh's edges.
    """
    cap = hair.cap
    p, n = skin.positions, skin.normals
    d = (p - center) / half
    theta = np.arctan2(d[:, 0], d[:, 2])
    tris = skin.triangles[((d[:, 1] - hairline(cap, theta))[skin.triangles] > 0.0).any(1)]
    used, local = np.unique(tris, return_inverse=True)
    p, n, local = subdivide(p[used], n[used], local.reshape(-1, 3), cap.subdivisions)
    d = (p - center) / half
    th = np.arctan2(d[:, 0], d[:, 2])
    wisps = cap.wisps * (np.sin(th * 23 + 0.4) + 0.6 * np.sin(th * 41 + 1.9)) * np.cos(th).clip(0, 1)
    s = d[:, 1] - hairline(cap, th) + wisps
    # Full from the edge over the sides and back (a blunt edge), tapering only at the forehead.
    body = cap.body * (1 - smoothstep(0.3, 0.9, np.cos(th))) * smoothstep(0.0, cap.edge_rise, s)
    volume = cap.volume * np.maximum(smoothstep(0.05, 0.65, s), body) * (0.8 + 0.2 * np.cos(th))
    (q_theta, q_height), (q_wide, q_tall) = QUIFF_CENTRE, QUIFF_SIZE
    quiff = np.exp(-(((th - q_theta) / q_wide) ** 2) - ((d[:, 1] - q_height) / q_tall) ** 2)
    volume += cap.quiff * quiff * smoothstep(0.0, 0.15, s)
    # Strand clumps: ridges running down from the crown, as relief and as lighter/darker streaks.
    strands = 0.6 * np.sin(th * 19 + 1.3 * s) + 0.4 * np.sin(th * 43 - 2.1 * s + 1.7)
    thick = np.clip(0.45 * s, -0.12, cap.edge) + volume * (1 + cap.clump * strands)
    shell = p + n * thick[:, None]
    if hair.curtain is not None:
        shell = drape(shell, center, th, s > cap.edge_rise, cap)
    positions = relax(shell, local, cap.smooth_iterations)
    shade = (0.88 + 0.14 * strands) * (0.82 + 0.16 * smoothstep(0.2, 0.9, d[:, 1]))
    colors = srgb_to_linear(color)[None, :] * shade[:, None]
    return Part("hair", "hair", positions, local, colors)


def drape(positions: np.ndarray, center: np.ndarray, theta: np.ndarray, hanging: np.ndarray,
          cap: HairCap) -> np.ndarray:
    """Let hair below the skull's widest ring fall straight down instead of hugging the neck.

    Per azimuth bin, the widest horizontal radius of the shell is found; ``hanging`` vertices lower than it are
    pushed out to that radius (less a slight inward taper), like a bob's curtain.
    """
    rel = positions - center
    radius = np.hypot(rel[:, 0], rel[:, 2])
    n_bins = cap.drape_bins
    bins = np.floor((theta + np.pi) / (2 * np.pi) * n_bins).astype(int) % n_bins
    widest = np.zeros(n_bins)
    height = np.zeros(n_bins)
    for b in range(n_bins):
        ids = np.flatnonzero(bins == b)
        top = ids[np.argmax(radius[ids])]
        widest[b], height[b] = radius[top], rel[top, 1]
    below = height[bins] - rel[:, 1]
    target = widest[bins] - cap.drape_taper * np.clip(below, 0, None)
    push = np.where(hanging & (below > 0), np.clip(target - radius, 0, None), 0.0)
    out = positions.copy()
    out[:, [0, 2]] += rel[:, [0, 2]] / np.maximum(radius, 1e-9)[:, None] * push[:, None]
    return out


def radial_map(points: np.ndarray, center: np.ndarray, y_edges: np.ndarray, n_theta: int) -> np.ndarray:
    """Largest horizontal distance from the head's vertical axis per (azimuth bin, height bin), dilated one bin."""
    rel = points - center
    ti = np.floor((np.arctan2(rel[:, 0], rel[:, 2]) + np.pi) / (2 * np.pi) * n_theta).astype(int) % n_theta
    yi = np.searchsorted(y_edges, points[:, 1]) - 1
    ok = (yi >= 0) & (yi < len(y_edges) - 1)
    out = np.zeros((n_theta, len(y_edges) - 1))
    np.maximum.at(out, (ti[ok], yi[ok]), np.hypot(rel[ok, 0], rel[ok, 2]))
    for axis in (0, 1):
        for shift in (-1, 1):
            rolled = np.roll(out, shift, axis)
            if axis == 1:  # heights do not wrap
                rolled[:, 0 if shift == 1 else -1] = 0.0
            out = np.maximum(out, rolled)
    return out


def curtain_radius(skin: Part, cap: Part, center: np.ndarray, y_top: float, y_edges: np.ndarray,
                   curtain: HairCurtain) -> np.ndarray:
    """Radius of the curtain per (azimuth bin, height bin): it hangs from inside the cap, clears skin and cap, and
    below an obstacle (an ear, the back of the skull) tucks back in only slowly, as hair falls."""
    n_theta = int(curtain.bins[0])
    heights = (y_edges[:-1] + y_edges[1:]) / 2
    below = y_top - heights
    skin_r = radial_map(surface_samples(skin), center, y_edges, n_theta) + curtain.clearance
    cap_r = radial_map(surface_samples(cap), center, y_edges, n_theta)
    obstacle = np.maximum(skin_r, cap_r + curtain.clearance * smoothstep(0.0, 0.8, below))
    radius = np.zeros_like(obstacle)
    start = int(np.argmin(np.abs(heights - y_top)))
    radius[:, start] = cap_r[:, start] - 0.03
    step = y_edges[1] - y_edges[0]
    for j in range(start - 1, -1, -1):  # heights run upwards: walk down from the top
        radius[:, j] = np.maximum(obstacle[:, j], radius[:, j + 1] - curtain.fall * step)
    for axis, width in ((0, 2), (1, 2)):  # soften corners left by the bins, then keep clear of the skin again
        radius = sum(np.roll(radius, s, axis) for s in range(-width, width + 1)) / (2 * width + 1)
    return np.maximum(radius, skin_r - curtain.clearance / 2)


def hair_curtain(skin: Part, cap: Part, center: np.ndarray, half: np.ndarray, curtain: HairCurtain,
                 color: Iterable[float]) -> Part:
    """The bob's sides and back: a thick sheet hanging from inside the cap to a hem of uneven strand tips, with
    ridges and streaks along the strands. It covers the ears and the nape, and never cuts into skin or cap."""
    y_top = center[1] + curtain.top * half[1]
    n_theta, step = int(curtain.bins[0]), curtain.bins[1]
    n_tips, tip_len = int(curtain.tips[0]), curtain.tips[1]
    y_edges = np.arange(y_top + step, min(curtain.hem) - tip_len - 2 * step, -step)[::-1]
    radius = curtain_radius(skin, cap, center, y_top, y_edges, curtain)[:, ::-1]  # heights now run downwards
    heights = ((y_edges[:-1] + y_edges[1:]) / 2)[::-1]
    cols, rows = curtain.grid
    u = np.linspace(0.0, 1.0, cols)[None, :]
    v = np.linspace(0.0, 1.0, rows)[:, None]
    f0, f1, f2 = np.radians(curtain.front_deg)
    front = np.where(v < 0.5, f0 + (f1 - f0) * smoothstep(0.0, 0.5, v), f1 + (f2 - f1) * smoothstep(0.5, 1.0, v))
    theta = front + u * (2 * np.pi - 2 * front)  # from the subject's left front edge round the back
    back = smoothstep(0.0, 1.0, 1 - np.abs(np.cos(theta / 2)))  # 0 at the front edges, 1 at the back
    wobble = np.sin(theta * 5 + 0.7) + 0.5 * np.sin(theta * 11 + 2.1)
    tips = tip_len * (0.5 + 0.5 * np.cos(theta * n_tips + 1.4 * wobble)) ** 2
    tips *= 0.7 + 0.2 * wobble
    hem = curtain.hem[0] + (curtain.hem[1] - curtain.hem[0]) * back - tips
    y = y_top + (hem - y_top) * v ** 0.85
    wrapped = (theta + np.pi) % (2 * np.pi) - np.pi
    ti = (wrapped + np.pi) / (2 * np.pi) * n_theta - 0.5
    t0 = np.floor(ti).astype(int)
    ft = ti - t0
    yi = np.clip((y_top - y) / step, 0, len(heights) - 1.001)
    y0 = np.floor(yi).astype(int)
    fy = yi - y0
    r = ((1 - ft) * (1 - fy) * radius[t0 % n_theta, y0] + ft * (1 - fy) * radius[(t0 + 1) % n_theta, y0]
         + (1 - ft) * fy * radius[t0 % n_theta, y0 + 1] + ft * fy * radius[(t0 + 1) % n_theta, y0 + 1])
    (n_clump, a_clump), (n_fine, a_fine) = curtain.ridges
    clump = 0.5 + 0.5 * np.cos(theta * n_clump + 0.6 * np.sin(y * 7.0) + 2.0 * wobble)
    fine = 0.5 + 0.5 * np.cos(theta * n_fine + 1.3 * np.sin(y * 5.0 + theta * 3))
    ridge = (a_clump * clump + a_fine * fine) / (a_clump + a_fine)
    r = r + (a_clump * clump + a_fine * fine) * smoothstep(0.0, 0.25, v)
    r = r - CURTAIN_HEM_TURN * smoothstep(0.7, 1.0, v) ** 2  # the bob turns under at the hem
    radial = np.stack([np.sin(theta), np.zeros_like(theta), np.cos(theta)], -1)
    outer = center + radial * r[..., None]
    outer[..., 1] = y
    thick = curtain.thickness * (1 - 0.5 * smoothstep(0.85, 1.0, v))
    inner = outer - radial * thick[..., None]
    streak = 0.82 + 0.22 * ridge + 0.08 * np.sin(theta * 137 + y * 3.0) + 0.1 * smoothstep(0.6, 1.0, v)
    positions = np.concatenate([outer.reshape(-1, 3), inner.reshape(-1, 3)])
    base = srgb_to_linear(color)[None, :]
    colors = np.concatenate([base * streak.reshape(-1, 1), base * CURTAIN_INNER_SHADE * streak.reshape(-1, 1)])
    grid = np.arange(rows * cols).reshape(rows, cols)
    sheet = grid_triangles(rows, cols)
    n = rows * cols
    rims = []
    for edge in (grid[-1, :], grid[::-1, 0], grid[:, -1]):  # hem and the two front edges join outer to inner
        e0, e1 = edge[:-1], edge[1:]
        rims.append(np.stack([e0, e1 + n, e1], -1))
        rims.append(np.stack([e0, e0 + n, e1 + n], -1))
    triangles = np.concatenate([sheet, sheet[:, ::-1] + n, *rims])
    return Part("hair_curtain", "hair", positions, triangles, colors)
