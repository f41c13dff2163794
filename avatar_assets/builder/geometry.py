"""Mesh helpers shared by the parts: the ``Part`` record, normals, cutting, subdivision, loops, triangulation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

SRGB_LINEAR_KNEE, SRGB_LINEAR_SLOPE, SRGB_OFFSET, SRGB_SCALE, SRGB_GAMMA = 0.04045, 12.92, 0.055, 1.055, 2.4
"""The sRGB transfer function's constants (IEC 61966-2-1)."""


def srgb_to_linear(c: Iterable[float]) -> np.ndarray:
    """Convert sRGB components (0-1) to linear light, as glTF colours are linear."""
    c = np.asarray(list(c), dtype=np.float64)
    return np.where(c <= SRGB_LINEAR_KNEE, c / SRGB_LINEAR_SLOPE, ((c + SRGB_OFFSET) / SRGB_SCALE) ** SRGB_GAMMA)


@dataclass
class Part:
    """One primitive's geometry in hm08 decimetres: triangles, per-vertex linear colours and morph deltas."""

    name: str
    material: str
    positions: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray
    morphs: dict[str, np.ndarray] = field(default_factory=dict)
    normals: np.ndarray | None = None


def edges_of(triangles: np.ndarray) -> np.ndarray:
    """The three directed edges of every triangle, (01, 12, 20) blocks."""
    return np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])


def smooth_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals."""
    a, b, c = (positions[triangles[:, i]] for i in range(3))
    face_n = np.cross(b - a, c - a)
    normals = np.zeros_like(positions)
    for i in range(3):
        np.add.at(normals, triangles[:, i], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(length > 0, length, 1.0)


def submesh(
    name: str, material: str, vertices: np.ndarray, triangles: np.ndarray,
    morphs: Mapping[str, np.ndarray], color: Iterable[float],
) -> Part:
    """Cut the triangles' vertices out of the full mesh, keeping their morph deltas; uniform colour."""
    used, local = np.unique(triangles, return_inverse=True)
    colors = np.tile(srgb_to_linear(color), (len(used), 1))
    part_morphs = {k: d[used] for k, d in morphs.items() if np.abs(d[used]).max() > 0}
    return Part(name, material, vertices[used], local.reshape(-1, 3), colors, part_morphs)


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``e0`` to 1 at ``e1``."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def boundary_loops(triangles: np.ndarray) -> list[list[int]]:
    """Closed loops of edges used by exactly one triangle, each in the triangles' winding order."""
    edges = edges_of(triangles)
    key = np.sort(edges, axis=1)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    nxt = {int(a): int(b) for a, b in edges[counts[inv.ravel()] == 1]}
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(loop)
    return loops


def grow(mask: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Add to a vertex mask every vertex that shares one of ``edges`` with it."""
    grown = mask.copy()
    grown[edges[mask[edges[:, 0]], 1]] = True
    grown[edges[mask[edges[:, 1]], 0]] = True
    return grown


def subdivide(positions: np.ndarray, normals: np.ndarray, triangles: np.ndarray,
              levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split every triangle into four ``levels`` times (edge midpoints shared; normals interpolated)."""
    for _ in range(levels):
        edges = np.sort(edges_of(triangles), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        mid = len(positions) + inverse.ravel().reshape(3, -1).T  # midpoint ids of edges (01, 12, 20) per triangle
        positions = np.concatenate([positions, positions[unique].mean(1)])
        nm = normals[unique].sum(1)
        normals = np.concatenate([normals, nm / np.linalg.norm(nm, axis=1, keepdims=True)])
        a, b, c = triangles.T
        m01, m12, m20 = mid.T
        triangles = np.concatenate([np.stack(t, 1) for t in
                                    ((a, m01, m20), (m01, b, m12), (m20, m12, c), (m01, m12, m20))])
    return positions, normals, triangles


def subdivide_part(part: Part, levels: int) -> Part:
    """Subdivide a part ``levels`` times; colours and morph deltas are interpolated like the positions."""
    names = sorted(part.morphs)
    columns = np.concatenate([part.positions, part.colors, *(part.morphs[k] for k in names)], axis=1)
    normals = smooth_normals(part.positions, part.triangles)
    columns, _, triangles = subdivide(columns, normals, part.triangles, levels)
    positions, colors = columns[:, :3], columns[:, 3:6]
    morphs = {k: columns[:, 6 + 3 * i:9 + 3 * i] for i, k in enumerate(names)}
    return Part(part.name, part.material, positions, triangles, colors, morphs)


def surface_samples(part: Part, k: int = 3) -> np.ndarray:
    """Points spread over every triangle of a part (a barycentric grid of ``k`` steps per edge)."""
    a, b, c = (part.positions[part.triangles[:, i]] for i in range(3))
    steps = [(i / k, j / k) for i in range(k + 1) for j in range(k + 1 - i)]
    return np.concatenate([a * u + b * v + c * (1 - u - v) for u, v in steps])


def grid_triangles(rows: int, cols: int) -> np.ndarray:
    """Two triangles per cell of a ``rows`` x ``cols`` vertex grid (row-major ids), facing the same way."""
    grid = np.arange(rows * cols).reshape(rows, cols)
    a, b, c, d = grid[:-1, :-1], grid[:-1, 1:], grid[1:, :-1], grid[1:, 1:]
    return np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])


def ear_clip(xy: np.ndarray) -> list[tuple[int, ...]]:
    """Triangulate a simple polygon (points in order) by ear clipping; triangles keep the polygon's winding."""
    def cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))

    area = sum(cross(np.zeros(2), xy[i - 1], xy[i]) for i in range(len(xy)))
    sign = 1.0 if area > 0 else -1.0
    left, tris = list(range(len(xy))), []
    while len(left) > 3:
        for j in range(len(left)):
            a, b, c = left[j - 1], left[j], left[(j + 1) % len(left)]
            if sign * cross(xy[a], xy[b], xy[c]) <= 0:
                continue  # a reflex corner is no ear
            others = [v for v in left if v not in (a, b, c)]
            if any(sign * cross(xy[a], xy[b], xy[v]) >= 0 and sign * cross(xy[b], xy[c], xy[v]) >= 0
                   and sign * cross(xy[c], xy[a], xy[v]) >= 0 for v in others):
                continue
            tris.append((a, b, c))
            left.pop(j)
            break
        else:
            break  # degenerate leftovers: stop rather than loop forever
    return tris + [tuple(left)] if len(left) == 3 else tris


def front_projection(xy: np.ndarray, surface: Part) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop front-view points (x, y) onto the front-most surface of a part.

    Returns the surface points, their normals, and a (points x part-vertices) interpolation matrix.
    """
    tri = surface.triangles[(surface.normals[surface.triangles][:, :, 2] > 0.1).all(1)]
    a, b, c = (surface.positions[tri[:, i]] for i in range(3))
    weights = np.zeros((len(xy), len(surface.positions)))
    det = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    for k, (x, y) in enumerate(xy):
        w0 = ((b[:, 1] - c[:, 1]) * (x - c[:, 0]) + (c[:, 0] - b[:, 0]) * (y - c[:, 1])) / det
        w1 = ((c[:, 1] - a[:, 1]) * (x - c[:, 0]) + (a[:, 0] - c[:, 0]) * (y - c[:, 1])) / det
        w2 = 1 - w0 - w1
        inside = np.flatnonzero((w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9))
        z = w0[inside] * a[inside, 2] + w1[inside] * b[inside, 2] + w2[inside] * c[inside, 2]
        best = inside[np.argmax(z)]
        np.add.at(weights[k], tri[best], [w0[best], w1[best], w2[best]])
    points = weights @ surface.positions
    normals = weights @ surface.normals
    return points, normals / np.linalg.norm(normals, axis=1, keepdims=True), weights
