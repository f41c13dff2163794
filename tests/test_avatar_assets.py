"""Tests for the characters' avatar GLBs, the builder and its data: morph names, deformations, size cap, hair,
the bust's shoulders, parameter-file validation and the byte-identical rebuild."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pygltflib
import pytest

from avatar_assets.build_avatar import build
from avatar_assets.builder import shape
from avatar_assets.builder.clothing import bust_bottom
from avatar_assets.builder.geometry import boundary_loops
from avatar_assets.builder.glb import DM_TO_M, MATERIALS
from avatar_assets.builder.params import CHARACTERS_DIR, character_names, load_params
from avatar_assets.preview import load_glb, render
from core.errors import ConfigError
from core.types import EMOTION_LABELS, OCULUS_VISEMES

MAX_BYTES = 8 * 1024 * 1024
CHARACTERS = character_names()


def glb_of(character: str) -> Path:
    return load_params(character).out_path


@pytest.fixture(scope="module", params=CHARACTERS)
def character(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def prims(character: str) -> dict:
    return {p.name: p for p in load_glb(glb_of(character))}


def test_both_characters_are_defined() -> None:
    assert {"ava", "sam"} <= set(CHARACTERS)
    assert load_params("sam").body.gender > 0.9 > 0.2 > load_params("ava").body.gender
    assert load_params("sam").hair.style == "short" and load_params("sam").hair.curtain is None


def test_glb_loads_with_all_morph_names(character: str) -> None:
    gltf = pygltflib.GLTF2().load(str(glb_of(character)))
    head = next(m for m in gltf.meshes if m.name == "Head")
    names = head.extras["targetNames"]
    assert set(names) >= {f"viseme_{v}" for v in OCULUS_VISEMES}
    assert set(names) >= set(shape.ARKIT_NAMES) and len(shape.ARKIT_NAMES) == 52
    assert len(names) == len(set(names)) == 67
    assert all(len(p.targets) == len(names) for p in head.primitives)
    eyes = {n.name: n for n in gltf.nodes if n.name in ("EyeLeft", "EyeRight")}
    assert set(eyes) == {"EyeLeft", "EyeRight"}
    assert eyes["EyeLeft"].translation[0] > 0 > eyes["EyeRight"].translation[0]  # the subject's left is +X


def test_file_size_under_cap(character: str) -> None:
    assert 100_000 < glb_of(character).stat().st_size < MAX_BYTES


def test_parts_present(prims: dict, character: str) -> None:
    expected = {"skin", "top", "bust_cap", "hair", "brows", "lashes_left", "lashes_right", "teeth_upper",
                "teeth_lower", "tongue", "eyeLeft", "eyeRight"}
    assert expected <= set(prims)
    assert ("hair_curtain" in prims) == (load_params(character).hair.curtain is not None)


def test_every_morph_moves_the_face_and_stays_bounded(prims: dict) -> None:
    skin = prims["skin"]
    for name in shape.MORPH_NAMES:
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
    visemes = shape.load_viseme_map()
    assert set(visemes) == {f"viseme_{v}" for v in OCULUS_VISEMES}
    assert all(visemes[v] for v in visemes)
    expressions = shape.load_expressions()
    assert set(expressions) == set(EMOTION_LABELS)
    assert expressions["joy"]["mouthSmileLeft"] > 0.3


def test_map_loader_rejects_bad_tables(tmp_path: Path) -> None:
    table = json.loads(shape.EXPRESSIONS_PATH.read_text())
    table["joy"]["mouthSmileMiddle"] = 0.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(table))
    with pytest.raises(ValueError, match="unknown ARKit name"):
        shape.load_expressions(bad)
    text = shape.EXPRESSIONS_PATH.read_text().replace('"neutral": {}', '"neutral": {}, "joy": {}')
    bad.write_text(text)
    with pytest.raises(ValueError, match="duplicate"):
        shape.load_expressions(bad)


def test_parameter_files_are_validated(tmp_path: Path) -> None:
    good = json.loads((CHARACTERS_DIR / "sam.json").read_text())
    cases = [
        (lambda d: d["body"].pop("gender"), "missing keys \\['gender'\\]"),
        (lambda d: d["hair"].update(colour="brown"), "unknown keys \\['colour'\\]"),
        (lambda d: d["body"].update(gender="male"), "body.gender: expected a number"),
        (lambda d: d["body"].update(gender=1.5), "gender must be in \\[0, 1\\]"),
        (lambda d: d["hair"].update(style="mohawk"), "hair.style must be one of"),
        (lambda d: d["hair"].update(style="bob"), "a bob needs hair.curtain"),
        (lambda d: d["colors"].pop("teeth"), "colors must be exactly"),
        (lambda d: d["body"]["races"].update(asian=0.9), "sum to 1"),
    ]
    for mutate, message in cases:
        data = json.loads(json.dumps(good))
        mutate(data)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match=message):
            load_params(path)
    with pytest.raises(ConfigError, match="Cannot read"):
        load_params("nobody")


def test_age_weights_blend_the_two_nearest_targets() -> None:
    assert shape.age_weights(25) == {"young": 1.0}
    weights = shape.age_weights(57.5)
    assert set(weights) == {"young", "old"} and weights["young"] == pytest.approx(0.5)
    assert shape.age_weights(200) == {"old": 1.0}


def test_preview_renders_the_face(prims: dict) -> None:
    img = render(list(prims.values()), {}, size=96)
    centre = img[20:80, 30:66].reshape(-1, 3).astype(int)
    skin_like = (centre[:, 0] > 150) & (centre[:, 0] > centre[:, 2] + 30)
    assert skin_like.mean() > 0.3


@pytest.mark.parametrize("name", CHARACTERS)
def test_build_is_deterministic_and_committed_glb_is_current(name: str, tmp_path: Path) -> None:
    first, second = build(name, tmp_path / "a.glb"), build(name, tmp_path / "b.glb")
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(second.read_bytes()).hexdigest()
    committed = hashlib.sha256(glb_of(name).read_bytes()).hexdigest()
    assert digest == committed, "the committed GLB is stale: python -m avatar_assets.build_avatar"


def test_bob_curtain_covers_the_ears_without_touching_them() -> None:
    glb = glb_of("ava")
    prims = {p.name: p for p in load_glb(glb)}
    centre = np.asarray(pygltflib.GLTF2().load(str(glb)).scenes[0].extras["headCenter"])
    skin, curtain = prims["skin"].positions - centre, prims["hair_curtain"].positions - centre
    for sign in (1, -1):  # each ear's outermost point: widest skin between the jaw and the temple
        side = skin[(skin[:, 1] > -0.07) & (skin[:, 1] < -0.02) & (sign * skin[:, 0] > 0)]
        ear = side[np.argmax(np.abs(side[:, 0]))]
        azimuth = np.arctan2(curtain[:, 0], curtain[:, 2]) - np.arctan2(ear[0], ear[2])
        near = curtain[(np.abs(np.angle(np.exp(1j * azimuth))) < 0.05) & (np.abs(curtain[:, 1] - ear[1]) < 0.005)]
        assert len(near) > 0
        assert np.hypot(near[:, 0], near[:, 2]).min() > np.hypot(ear[0], ear[2]) + 0.002


def test_top_is_its_own_mesh_part_and_the_bust_bottom_follows_its_curve(prims: dict, character: str) -> None:
    bust = load_params(character).bust
    top, skin = prims["top"], prims["skin"]
    assert top.roughness == MATERIALS["cloth"][0]
    rim = boundary_loops(skin.triangles)
    assert len(rim) == 1
    edge = skin.positions[rim[0]] / DM_TO_M
    lifted = edge[:, 1] + bust_bottom(edge[:, 0], bust).min()  # the origin is the bust's lowest point
    np.testing.assert_allclose(lifted, bust_bottom(edge[:, 0], bust), atol=1e-4)
