"""The GLB writer: parts become primitives with vertex colours and sparse morph targets, in one binary buffer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_assets.builder.geometry import Part
from avatar_assets.builder.shape import MORPH_NAMES

DM_TO_M = 0.1
"""hm08 is modelled in decimetres; the GLB is in metres."""
GENERATOR = "avatar_assets/build_avatar.py"
MATERIALS: Mapping[str, tuple[float, float]] = {  # name: (roughness, metallic); colours come from COLOR_0
    "skin": (0.62, 0.0), "hair": (0.68, 0.0), "brow": (0.85, 0.0), "eye": (0.12, 0.0), "teeth": (0.5, 0.0),
    "tongue": (0.45, 0.0), "lash": (0.8, 0.0),
    "cloth": (0.9, 0.0),
}
DOUBLE_SIDED = ("lash", "hair")
U8_MAX = 255


@dataclass
class Avatar:
    """Everything the GLB writer needs: face-deforming parts, the two eyeballs and their centres (decimetres)."""

    head_parts: list[Part]
    eyes: dict[str, Part]
    eye_centers: dict[str, np.ndarray]
    origin: np.ndarray
    head_center: np.ndarray


class GlbWriter:
    """Accumulates binary data, buffer views and accessors for one GLB buffer."""

    def __init__(self) -> None:
        import pygltflib

        self.g = pygltflib
        self.blob = bytearray()
        self.gltf = pygltflib.GLTF2(asset=pygltflib.Asset(generator=GENERATOR, version="2.0"))

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
        """Add a dense accessor for ``arr`` (float32, uint8, uint16 or uint32 rows)."""
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
            small = count <= np.iinfo(np.uint16).max
            acc.sparse = self.g.Sparse(
                count=len(moved),
                indices=self.g.AccessorSparseIndices(
                    bufferView=self.view(moved.astype(np.uint16 if small else np.uint32)),
                    componentType=self.g.UNSIGNED_SHORT if small else self.g.UNSIGNED_INT),
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
    return np.round(rgba * U8_MAX).astype(np.uint8)


def write_glb(avatar: Avatar, out: Path) -> None:
    """Serialise the avatar: node ``Avatar`` holding ``Head`` and the two eye nodes (pivot at each eye centre)."""
    w = GlbWriter()
    g = w.g
    materials = {}
    for name, (rough, metal) in MATERIALS.items():
        w.gltf.materials.append(g.Material(
            name=name, doubleSided=name in DOUBLE_SIDED,
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
