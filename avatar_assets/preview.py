"""Render preview PNGs of the avatar GLB with a small numpy rasteriser (morph weights applied, PBR-ish shading).

``python -m avatar_assets.preview [--glb PATH] [--out DIR]`` writes one PNG per (view, pose) plus a contact sheet.
It reads the GLB the way a viewer would (accessors, sparse morph targets, node translations), so what it shows
is what the file holds. Needs Pillow only to write PNGs.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}

# Lights in camera space (x right, y up, z towards the viewer): direction to the light, linear intensity.
LIGHTS = (((-0.45, 0.55, 0.70), 2.3), ((0.65, 0.10, 0.55), 0.75), ((0.2, 0.5, -0.85), 1.1))
AMBIENT = 0.28


@dataclass
class Primitive:
    """One drawable primitive with its base attributes and named morph deltas (metres, node space)."""

    name: str
    positions: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    triangles: np.ndarray
    morphs: dict[str, np.ndarray]
    roughness: float
    double_sided: bool
    translation: np.ndarray


def _accessor(gltf: dict, blob: bytes, index: int) -> np.ndarray:
    """Decode an accessor, including sparse substitution and zero-filled accessors without a buffer view."""
    acc = gltf["accessors"][index]
    width, dtype = WIDTHS[acc["type"]], COMPONENTS[acc["componentType"]]
    count = acc["count"]
    if "bufferView" in acc:
        view = gltf["bufferViews"][acc["bufferView"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        out = np.frombuffer(blob, dtype=dtype, count=count * width, offset=start).reshape(count, width).copy()
    else:
        out = np.zeros((count, width), dtype=dtype)
    if "sparse" in acc:
        sp = acc["sparse"]
        iv, vv = gltf["bufferViews"][sp["indices"]["bufferView"]], gltf["bufferViews"][sp["values"]["bufferView"]]
        idx = np.frombuffer(blob, dtype=COMPONENTS[sp["indices"]["componentType"]], count=sp["count"],
                            offset=iv.get("byteOffset", 0) + sp["indices"].get("byteOffset", 0))
        vals = np.frombuffer(blob, dtype=dtype, count=sp["count"] * width,
                             offset=vv.get("byteOffset", 0) + sp["values"].get("byteOffset", 0))
        out[idx.astype(np.int64)] = vals.reshape(-1, width)
    if acc.get("normalized"):
        out = out.astype(np.float64) / np.iinfo(dtype).max
    return out.astype(np.float64) if out.dtype != np.float64 else out


def load_glb(path: Path) -> list[Primitive]:
    """Read every mesh primitive of a GLB with its morph targets by name (node translations only)."""
    raw = path.read_bytes()
    json_len = int.from_bytes(raw[12:16], "little")
    gltf = json.loads(raw[20:20 + json_len])
    blob = raw[20 + json_len + 8:]
    prims = []
    for node in gltf["nodes"]:
        if "mesh" not in node:
            continue
        mesh = gltf["meshes"][node["mesh"]]
        names = mesh.get("extras", {}).get("targetNames", [])
        for p in mesh["primitives"]:
            mat = gltf["materials"][p["material"]]
            attrs = p["attributes"]
            prims.append(Primitive(
                name=p.get("extras", {}).get("part", mesh.get("name", "")),
                positions=_accessor(gltf, blob, attrs["POSITION"]),
                normals=_accessor(gltf, blob, attrs["NORMAL"]),
                colors=_accessor(gltf, blob, attrs["COLOR_0"])[:, :3],
                triangles=_accessor(gltf, blob, p["indices"]).astype(np.int64).reshape(-1, 3),
                morphs={
                    n: _accessor(gltf, blob, t["POSITION"]) for n, t in zip(names, p.get("targets", []), strict=True)
                },
                roughness=mat["pbrMetallicRoughness"].get("roughnessFactor", 1.0),
                double_sided=mat.get("doubleSided", False),
                translation=np.asarray(node.get("translation", [0.0, 0.0, 0.0])),
            ))
    return prims


def _look_at(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """World-to-camera rotation for a camera orbiting the target (yaw 0 = in front, looking down -Z)."""
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    fwd = -np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    return np.stack([right, up, -fwd])


def render(prims: list[Primitive], weights: Mapping[str, float], *, yaw_deg: float = 0.0, pitch_deg: float = 0.0,
           target: tuple[float, float, float] = (0.0, 0.2, 0.05), distance: float = 1.1, fov_deg: float = 24.0,
           size: int = 512) -> np.ndarray:
    """Rasterise the primitives with morph ``weights`` into an sRGB uint8 image (size x size x 3)."""
    rot = _look_at(yaw_deg, pitch_deg)
    f = size / 2 / np.tan(np.radians(fov_deg) / 2)
    depth = np.full((size, size), -np.inf)
    gbuf = np.zeros((size, size, 7))  # normal xyz, colour rgb, roughness
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    for prim in prims:
        pos = prim.positions.copy()
        for name, w in weights.items():
            if w and name in prim.morphs:
                pos += w * prim.morphs[name]
        cam = (pos + prim.translation - np.asarray(target)) @ rot.T
        cam[:, 2] -= distance
        zc = -cam[:, 2]
        sx = size / 2 + f * cam[:, 0] / zc
        sy = size / 2 - f * cam[:, 1] / zc
        nrm = prim.normals @ rot.T
        for tri in prim.triangles:
            x, y, z = sx[tri], sy[tri], -zc[tri]
            area = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
            if area == 0 or (area > 0 and not prim.double_sided):  # screen y points down: front faces have area < 0
                continue
            x0, x1 = max(int(x.min()), 0), min(int(np.ceil(x.max())), size)
            y0, y1 = max(int(y.min()), 0), min(int(np.ceil(y.max())), size)
            if x0 >= x1 or y0 >= y1:
                continue
            px, py = xs[y0:y1, x0:x1], ys[y0:y1, x0:x1]
            w0 = ((x[1] - px) * (y[2] - py) - (x[2] - px) * (y[1] - py)) / area
            w1 = ((x[2] - px) * (y[0] - py) - (x[0] - px) * (y[2] - py)) / area
            w2 = 1 - w0 - w1
            inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
            zz = w0 * z[0] + w1 * z[1] + w2 * z[2]
            region = depth[y0:y1, x0:x1]
            hit = inside & (zz > region)
            if not hit.any():
                continue
            region[hit] = zz[hit]
            bw = np.stack([w0[hit], w1[hit], w2[hit]], 1)
            n = bw @ nrm[tri]
            if area > 0:
                n = -n
            gbuf[y0:y1, x0:x1][hit] = np.concatenate(
                [n, bw @ prim.colors[tri], np.full((len(n), 1), prim.roughness)], 1)
    return _shade(depth, gbuf, size)


def _shade(depth: np.ndarray, gbuf: np.ndarray, size: int) -> np.ndarray:
    """Lambert + Blinn-Phong shading of the G-buffer over a soft background, then sRGB encoding."""
    n = gbuf[..., :3]
    n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
    albedo, rough = gbuf[..., 3:6], gbuf[..., 6:7]
    light = np.full(depth.shape + (1,), AMBIENT) * (0.6 + 0.4 * np.clip(n[..., 1:2] * 0.5 + 0.5, 0, 1))
    spec = np.zeros(depth.shape + (1,))
    shininess = 2.0 / np.maximum(rough, 0.05) ** 4
    for direction, intensity in LIGHTS:
        ld = np.asarray(direction) / np.linalg.norm(direction)
        ndl = np.clip(n @ ld, 0, None)[..., None]
        light += intensity * ndl / np.pi * 1.6
        h = ld + np.array([0.0, 0.0, 1.0])
        h /= np.linalg.norm(h)
        ndh = np.clip(n @ h, 0, None)[..., None]
        spec += intensity * ndl * (1 - rough) ** 2 * 0.25 * ndh ** shininess
    color = albedo * light + spec
    t = np.linspace(0, 1, size)[:, None, None]
    background = (1 - t) * np.array([0.20, 0.22, 0.27]) + t * np.array([0.06, 0.07, 0.09])
    img = np.where(np.isfinite(depth)[..., None], color, np.broadcast_to(background, color.shape))
    img = color_to_srgb(img / (1 + 0.15 * img))
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def color_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear light to sRGB encoding."""
    c = np.clip(c, 0, None)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def expression_weights(name: str) -> dict[str, float]:
    """Weights of one emotion from ``expressions.json`` (the browser component's table)."""
    return json.loads((HERE / "expressions.json").read_text())[name]


POSES: dict[str, dict[str, float]] = {
    "neutral": {},
    "jawOpen": {"jawOpen": 1.0},
    "viseme_aa": {"viseme_aa": 1.0},
    "viseme_U": {"viseme_U": 1.0},
    "viseme_PP": {"viseme_PP": 1.0},
    "viseme_FF": {"viseme_FF": 1.0},
    "viseme_E": {"viseme_E": 1.0},
    "blink": {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0},
    "lookLeft": {"eyeLookOutLeft": 0.8, "eyeLookInRight": 0.8},
}
VIEWS: dict[str, dict[str, float]] = {
    "front": {"yaw_deg": 0.0},
    "three_quarter": {"yaw_deg": 35.0, "pitch_deg": 5.0},
    "side": {"yaw_deg": 90.0},
    "face": {"yaw_deg": 0.0, "distance": 0.5, "target": (0.0, 0.2, 0.08)},
}


def main(argv: list[str] | None = None) -> None:
    """Render the preview set and a contact sheet."""
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glb", type=Path, default=HERE / "sam.glb")
    parser.add_argument("--out", type=Path, default=Path("/tmp/avatar_work/preview"))
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--shots", default="front:neutral,three_quarter:neutral,side:neutral,face:neutral,"
                        "face:jawOpen,face:viseme_aa,face:joy,face:sadness,face:surprise,face:anger,face:blink,"
                        "face:viseme_U")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prims = load_glb(args.glb)
    args.out.mkdir(parents=True, exist_ok=True)
    tiles = []
    for shot in args.shots.split(","):
        view, pose = shot.split(":")
        weights = POSES[pose] if pose in POSES else expression_weights(pose)
        img = render(prims, weights, size=args.size, **VIEWS[view])
        Image.fromarray(img).save(args.out / f"{view}_{pose}.png")
        tiles.append(img)
        log.info("rendered %s %s", view, pose)
    cols = min(3, len(tiles))
    rows = -(-len(tiles) // cols)
    sheet = np.zeros((rows * args.size, cols * args.size, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * args.size:(r + 1) * args.size, c * args.size:(c + 1) * args.size] = tile
    Image.fromarray(sheet).save(args.out / "sheet.png")


if __name__ == "__main__":
    main()
