"""Tests for the avatar GLB and its data maps: morph names, deformations, size cap, deterministic build."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pygltflib
import pytest

from avatar_assets import build_avatar as ba
from avatar_assets.preview import load_glb, render
from core.types import EMOTION_LABELS, OCULUS_VISEMES

GLB = ba.DEFAULT_OUT
MAX_BYTES = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def prims() -> dict:
    return {p.name: p for p in load_glb(GLB)}


def test_glb_loads_with_all_morph_names() -> None:
    gltf = pygltflib.GLTF2().load(str(GLB))
    head = next(m for m in gltf.meshes if m.name == "Head")
    names = head.extras["targetNames"]
    assert set(names) >= {f"viseme_{v}" for v in OCULUS_VISEMES}
    assert set(names) >= set(ba.ARKIT_NAMES) and len(ba.ARKIT_NAMES) == 52
    assert len(names) == len(set(names)) == 67
    assert all(len(p.targets) == len(names) for p in head.primitives)
    eyes = {n.name: n for n in gltf.nodes if n.name in ("EyeLeft", "EyeRight")}
    assert set(eyes) == {"EyeLeft", "EyeRight"}
    assert eyes["EyeLeft"].translation[0] > 0 > eyes["EyeRight"].translation[0]  # the subject's left is +X


def test_file_size_under_cap() -> None:
    assert 100_000 < GLB.stat().st_size < MAX_BYTES


def test_every_morph_moves_the_face_and_stays_bounded(prims: dict) -> None:
    skin = prims["skin"]
    for name in ba.MORPH_NAMES:
        moved = max(np.linalg.norm(p.morphs[name], axis=1).max() for p in prims.values() if name in p.morphs)
        assert 0.0005 < moved < 0.05, (name, moved)  # metres: visible, yet under 5 cm
    assert np.linalg.norm(skin.morphs["eyeBlinkLeft"], axis=1).max() > 0.005
    for side, sign in (("Left", 1), ("Right", -1)):  # the subject's left eye is on +X
        for unit in (f"eyeBlink{side}", f"mouthSmile{side}", f"browDown{side}"):
            move = np.linalg.norm(skin.morphs[unit], axis=1)
            assert sign * (move @ skin.positions[:, 0]) / move.sum() > 0.015, unit


def test_jaw_open_moves_lower_lip_teeth_and_tongue_down(prims: dict) -> None:
    skin = prims["skin"].morphs["jawOpen"]
    assert skin[:, 1].min() < -0.015
    for part in ("teeth_lower", "tongue"):
        assert prims[part].morphs["jawOpen"][:, 1].mean() < -0.005, part
    assert "jawOpen" not in prims["teeth_upper"].morphs or np.abs(prims["teeth_upper"].morphs["jawOpen"]).max() == 0
    assert prims["skin"].morphs["viseme_aa"][:, 1].min() < -0.01


def test_eyeballs_rotate_for_gaze(prims: dict) -> None:
    eye = prims["eyeLeft"]
    pupil = eye.positions[:, 2].argmax()
    assert eye.morphs["eyeLookUpLeft"][pupil, 1] > 0.002
    assert eye.morphs["eyeLookOutLeft"][pupil, 0] > 0.002  # out = towards the subject's left, +X


def test_maps_reference_existing_names() -> None:
    visemes = ba.load_viseme_map()
    assert set(visemes) == {f"viseme_{v}" for v in OCULUS_VISEMES}
    assert all(visemes[v] for v in visemes)
    expressions = ba.load_expressions()
    assert set(expressions) == set(EMOTION_LABELS)
    assert expressions["joy"]["mouthSmileLeft"] > 0.3


def test_map_loader_rejects_bad_tables(tmp_path: Path) -> None:
    table = json.loads(ba.EXPRESSIONS_PATH.read_text())
    table["joy"]["mouthSmileMiddle"] = 0.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(table))
    with pytest.raises(ValueError, match="unknown ARKit name"):
        ba.load_expressions(bad)
    text = ba.EXPRESSIONS_PATH.read_text().replace('"neutral": {}', '"neutral": {}, "joy": {}')
    bad.write_text(text)
    with pytest.raises(ValueError, match="duplicate"):
        ba.load_expressions(bad)


def test_preview_renders_the_face(prims: dict) -> None:
    img = render(list(prims.values()), {}, size=96)
    centre = img[20:80, 30:66].reshape(-1, 3).astype(int)
    skin_like = (centre[:, 0] > 150) & (centre[:, 0] > centre[:, 2] + 30)
    assert skin_like.mean() > 0.3


def test_build_is_deterministic_and_committed_glb_is_current(tmp_path: Path) -> None:
    out = tmp_path / "avatar.glb"
    ba.write_glb(ba.build_avatar(), out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(GLB.read_bytes()).hexdigest()


def test_hair_curtain_covers_the_ears_without_touching_them(prims: dict) -> None:
    gltf = pygltflib.GLTF2().load(str(GLB))
    centre = np.asarray(gltf.scenes[0].extras["headCenter"])
    skin, curtain = prims["skin"].positions - centre, prims["hair_curtain"].positions - centre
    for sign in (1, -1):  # each ear's outermost point: widest skin between the jaw and the temple
        side = skin[(skin[:, 1] > -0.07) & (skin[:, 1] < -0.02) & (sign * skin[:, 0] > 0)]
        ear = side[np.argmax(np.abs(side[:, 0]))]
        azimuth = np.arctan2(curtain[:, 0], curtain[:, 2]) - np.arctan2(ear[0], ear[2])
        near = curtain[(np.abs(np.angle(np.exp(1j * azimuth))) < 0.05) & (np.abs(curtain[:, 1] - ear[1]) < 0.005)]
        assert len(near) > 0
        assert np.hypot(near[:, 0], near[:, 2]).min() > np.hypot(ear[0], ear[2]) + 0.002


def test_top_is_its_own_mesh_part_and_the_bust_bottom_is_a_smooth_curve(prims: dict) -> None:
    top, skin = prims["top"], prims["skin"]
    assert top.roughness == ba.MATERIALS["cloth"][0] and top.positions[:, 1].max() < 0.1
    rim = ba.boundary_loops(skin.triangles)
    assert len(rim) == 1
    edge = skin.positions[rim[0]] / ba.DM_TO_M + [0.0, ba.BUST_BOTTOM_Y, 0.0]
    np.testing.assert_allclose(edge[:, 1], ba.bust_bottom(edge[:, 0]), atol=1e-4)
