"""Face parts: skin colouring (lips, blush, the mouth pocket), eyebrows, eyeballs, and the teeth and tongue."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from avatar_assets.builder.geometry import Part, edges_of, front_projection, grow, smoothstep, srgb_to_linear
from avatar_assets.builder.params import Brows
from avatar_assets.builder.shape import load_viseme_map

Colors = Mapping[str, Iterable[float]]

MOUTH_FADE = (0.04, 0.14)
"""Depth behind the lips (dm) over which the inner lip's colour fades into the dark mouth pocket."""
MOUTH_SEARCH_DM = 0.6
"""Skin vertices this close (front view) to the mouth's seed are tested for being inside the pocket."""
HIDDEN_DM = 0.01
"""A vertex this far behind the front-facing skin before it counts as hidden."""
BLUSH_OFFSET = (0.10, -0.36, 0.2)
BLUSH_RADIUS, BLUSH_STRENGTH, BLUSH_STRETCH_Y = 0.2, 0.45, 1.3
FRONT_FACE_Z = (0.9, 1.2)
"""hm08 depth over which a skin point counts as facing front (blush only there)."""

@dataclass(frozen=True)
class MouthPart:
    """A mouth helper of hm08: its obj group, colour, how it is placed, and (teeth) where the teeth part.

    The part is rescaled by ``scale`` about its front-centre and moved by ``shift`` (dm); the morph ``undo`` carries
    it back. ``gaps`` are the |x| (dm) of the lines between teeth; ``gum_side`` +1 puts the gums at the top
    (upper row), -1 at the bottom.
    """

    name: str
    group: str
    material: str
    color: str
    scale: tuple[float, float, float]
    shift: tuple[float, float, float]
    undo: str | None = None
    gaps: tuple[float, ...] = ()
    gum_side: int = 0


# The teeth are narrowed so their sides stay inside the lip corners, the upper row drops to show below the upper
# lip when the jaw opens, and the tongue sits smaller, lower and further back (until it is stuck out). Tooth widths
# follow adult averages: incisors 8.5/6.5 mm, canines 7.5 mm (upper); 5.5/6 mm and 6.5 mm (lower).
MOUTH_PARTS: tuple[MouthPart, ...] = (
    MouthPart("teeth_upper", "helper-upper-teeth", "teeth", "teeth", (0.86, 1.0, 1.0), (0.0, -0.035, 0.0),
              gaps=(0.0, 0.085, 0.15, 0.225, 0.30), gum_side=1),
    MouthPart("teeth_lower", "helper-lower-teeth", "teeth", "teeth", (0.86, 1.0, 1.0), (0.0, -0.01, -0.01),
              gaps=(0.0, 0.055, 0.115, 0.18, 0.25), gum_side=-1),
    MouthPart("tongue", "helper-tongue", "tongue", "tongue", (0.8, 0.7, 0.9), (0.0, -0.04, -0.06), "tongueOut"),
)
TEETH_SUBDIVISIONS = 3
"""hm08's teeth are 68 vertices a row: subdivided so the lines between teeth and the gums can be painted."""
TOOTH_GAP_DM, TOOTH_GAP_SHADE = 0.011, 0.55
"""Half-width of the shadow between two teeth, and how dark its middle is."""
GUM_BAND_DM = 0.07
"""Height of the gum band at the root of each row."""
EDGE_BAND_DM, EDGE_SHADE = 0.03, 0.8
"""The biting edge is slightly translucent: this band at the tip keeps this fraction of the tooth colour."""
MOUTH_DEPTH_SHADE = (0.3, 0.7)
"""A mouth helper's back (towards the throat) keeps the first fraction of its colour; its front gains the second."""

EYE_LOOK_DEG = {"Up": 22.0, "Down": 25.0, "In": 28.0, "Out": 28.0}
IRIS_EDGE_RAD, PUPIL_EDGE_RAD = 0.50, 0.20
"""Polar angles of the iris and pupil boundaries on the eyeball."""
EYE_RINGS = (4, 7, 22)
"""Rings of the pupil, the iris and the sclera; each boundary angle is repeated so colours change sharply."""
EYE_SEGMENTS = 32


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
    near = np.flatnonzero(np.linalg.norm((p - seed)[:, :2], axis=1) < MOUTH_SEARCH_DM)
    depth = np.zeros(len(p))
    for v in near:
        x, y, z = p[v]
        w0 = ((b[:, 1] - c[:, 1]) * (x - c[:, 0]) + (c[:, 0] - b[:, 0]) * (y - c[:, 1])) / det
        w1 = ((c[:, 1] - a[:, 1]) * (x - c[:, 0]) + (a[:, 0] - c[:, 0]) * (y - c[:, 1])) / det
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w0 + w1 <= 1 + 1e-9)
        zz = (w0 * a[:, 2] + w1 * b[:, 2] + (1 - w0 - w1) * c[:, 2])[inside]
        depth[v] = zz.max() - z if len(zz) else 0.0
    hidden = depth > HIDDEN_DM
    all_edges = edges_of(tris)
    edges = all_edges[hidden[all_edges].all(1)]
    region = np.zeros(len(p), dtype=bool)
    hidden_ids = np.flatnonzero(hidden)
    region[hidden_ids[np.argmin(np.linalg.norm(p[hidden_ids] - seed, axis=1))]] = True
    while True:
        grown = grow(region, edges)
        if (grown == region).all():
            break
        region = grown
    return np.where(region, depth, 0.0), grow(region, all_edges).astype(float)


def skin_colors(pos: np.ndarray, cavity: np.ndarray, lip_mask: np.ndarray,
                eyes: Mapping[str, np.ndarray], colors: Colors) -> np.ndarray:
    """Paint the skin: lips, a dark mouth pocket and blushed cheeks, as linear vertex colours."""
    col = np.tile(srgb_to_linear(colors["skin"]), (len(pos), 1))

    def mix(mask: np.ndarray, rgb: Iterable[float]) -> None:
        col[:] = col * (1 - mask[:, None]) + srgb_to_linear(rgb)[None, :] * mask[:, None]

    front = smoothstep(*FRONT_FACE_Z, pos[:, 2])
    for side, eye in eyes.items():
        sx = 1.0 if side == "Left" else -1.0
        cheek = eye + np.array([BLUSH_OFFSET[0] * sx, BLUSH_OFFSET[1], BLUSH_OFFSET[2]])
        d = np.linalg.norm((pos - cheek) * [1.0, BLUSH_STRETCH_Y, 1.0], axis=1)
        mix(BLUSH_STRENGTH * np.exp(-(d / BLUSH_RADIUS) ** 2) * front, colors["blush"])
    mix(lip_mask, colors["lips"])
    mix(smoothstep(*MOUTH_FADE, cavity), colors["mouth"])
    return col


def brow_part(skin: Part, eyes: Mapping[str, np.ndarray], brows: Brows, color: Iterable[float]) -> Part:
    """Stylised eyebrows: tapered ribbons laid on the skin above each eye, moving with the skin's morphs."""
    u = np.linspace(0.0, 1.0, brows.segments + 1)
    rows = np.array([-1.0, 0.0, 1.0])
    xy, shade = [], []
    for side, eye in eyes.items():
        sx = 1.0 if side == "Left" else -1.0
        x = eye[0] + sx * (brows.inner + brows.length * u)
        y = eye[1] + brows.lift + brows.arch * np.sin(np.pi * np.clip(u * 1.25, 0, 1)) - brows.drop * u ** 2
        half = brows.width * (1 - 0.62 * u ** 1.3) * (0.75 + 0.25 * smoothstep(0.0, 0.15, u))
        for r in rows:
            xy.append(np.stack([x, y + r * half], 1))
            shade.append(0.75 + 0.25 * smoothstep(0.0, 0.3, u))
    surface, normals, weights = front_projection(np.concatenate(xy), skin)
    positions = surface + normals * brows.lift_off_skin
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
    colors = srgb_to_linear(color)[None, :] * np.concatenate(shade)[:, None]
    return Part("brows", "brow", positions, np.asarray(tris, dtype=np.int64), colors, morphs, normals)


def eye_part(side: str, radius: float, colors: Colors) -> Part:
    """An eyeball centred on the origin looking down +Z: sclera, iris and pupil as hard-edged colour rings."""
    n_pupil, n_iris, n_sclera = EYE_RINGS
    rings = np.concatenate([
        np.linspace(0.0, PUPIL_EDGE_RAD, n_pupil), np.linspace(PUPIL_EDGE_RAD, IRIS_EDGE_RAD, n_iris),
        np.linspace(IRIS_EDGE_RAD, np.pi, n_sclera),
    ])
    phi = np.linspace(0, 2 * np.pi, EYE_SEGMENTS, endpoint=False)
    th = rings[:, None]
    pos = np.stack([np.sin(th) * np.cos(phi), np.sin(th) * np.sin(phi), np.cos(th) * np.ones_like(phi)], -1)
    pos = pos.reshape(-1, 3) * radius
    ring_id = np.repeat(np.arange(len(rings)), EYE_SEGMENTS)
    theta = rings[ring_id]
    which = np.where(ring_id < n_pupil, 0, np.where(ring_id < n_pupil + n_iris, 1, 2))
    iris_shade = 0.55 + 0.6 * (theta - PUPIL_EDGE_RAD) / (IRIS_EDGE_RAD - PUPIL_EDGE_RAD)
    iris_shade = np.clip(np.where(theta > IRIS_EDGE_RAD - 0.06, 0.45, iris_shade), 0.3, 1.2)
    vertex_colors = np.where((which == 0)[:, None], srgb_to_linear(colors["pupil"]),
                             np.where((which == 1)[:, None], srgb_to_linear(colors["iris"]) * iris_shade[:, None],
                                      srgb_to_linear(colors["sclera"])))
    tris = []
    for r in range(len(rings) - 1):
        if rings[r] == rings[r + 1]:
            continue
        for s in range(EYE_SEGMENTS):
            a, b = r * EYE_SEGMENTS + s, r * EYE_SEGMENTS + (s + 1) % EYE_SEGMENTS
            c, d = a + EYE_SEGMENTS, b + EYE_SEGMENTS
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
    return Part(f"eye{side}", "eye", pos, np.asarray(tris, dtype=np.int64), vertex_colors, morphs, normals)


def shade_teeth(part: Part, mouth: MouthPart, colors: Colors) -> None:
    """Paint a row of teeth as teeth: darker lines between them, gums at the root, a translucent biting edge."""
    x, y = np.abs(part.positions[:, 0]), part.positions[:, 1]
    gap = np.min(np.abs(x[:, None] - np.asarray(mouth.gaps)[None, :]), axis=1)
    shade = 1 - (1 - TOOTH_GAP_SHADE) * np.exp(-((gap / TOOTH_GAP_DM) ** 2))
    root, tip = (y.max(), y.min()) if mouth.gum_side > 0 else (y.min(), y.max())
    from_root = np.abs(y - root)
    edge = EDGE_SHADE + (1 - EDGE_SHADE) * smoothstep(0.0, EDGE_BAND_DM, np.abs(y - tip))
    gums = 1 - smoothstep(0.6 * GUM_BAND_DM, GUM_BAND_DM, from_root)
    tooth = srgb_to_linear(colors["teeth"])[None, :] * (shade * edge)[:, None]
    part.colors = tooth * (1 - gums[:, None]) + srgb_to_linear(colors["gums"])[None, :] * gums[:, None]


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
    depth = smoothstep(z.min(), z.max(), z)
    part.colors = part.colors * (MOUTH_DEPTH_SHADE[0] + MOUTH_DEPTH_SHADE[1] * depth)[:, None]
