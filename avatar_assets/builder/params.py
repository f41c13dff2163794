"""A character's build parameters: one JSON file per character under ``avatar_assets/characters/``, validated.

Every key of the file is required and no other key is allowed (a typo is an error, not a silent default); keys
starting with ``_`` are comments. Lengths are hm08 decimetres unless a name says otherwise; colours are sRGB 0-1.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from core.datafiles import read_json
from core.errors import ConfigError

CHARACTERS_DIR = Path(__file__).resolve().parents[1] / "characters"
COLOR_NAMES: tuple[str, ...] = (
    "skin", "blush", "lips", "brow", "hair", "shirt", "iris", "sclera", "pupil", "teeth", "gums", "tongue", "mouth",
    "lash",
)
HAIR_STYLES: tuple[str, ...] = ("bob", "short")
RACES: tuple[str, ...] = ("african", "asian", "caucasian")


@dataclass(frozen=True)
class Body:
    """MakeHuman macro weights and face modifiers.

    ``gender`` 0 is female, 1 male; ``age_years`` is blended between MakeHuman's age targets; ``muscle`` and
    ``weight`` run from 0 (minimum) over 0.5 (average) to 1 (maximum); ``face_tweaks`` maps a modifier target
    (path under ``mpfb2/targets`` without ``.target.gz``) to its weight. ``chin_y`` is the shaped body's chin line
    (dm): the head's box, which places the hair, is everything above it.
    """

    gender: float
    age_years: float
    races: dict[str, float]
    muscle: float
    weight: float
    ideal_proportions: float
    face_tweaks: dict[str, float]
    chin_y: float


@dataclass(frozen=True)
class Bust:
    """Where the bust is cut and how its top is dressed.

    The bottom edge rises towards the shoulders: ``y = bottom_y + rounding[0] * (|x| / half_width) ** rounding[1]``;
    ``shoulder_drop`` (dm) pulls the outer shoulders down over the last ``shoulder_span`` of the half-width, so the
    bust ends in sloping shoulders. ``neckline`` is the crew neckline's height at the back and its dip at the
    front; ``collar`` the rolled band's ridge height, its distance below the neckline and its half-width.
    """

    bottom_y: float
    half_width: float
    rounding: tuple[float, ...]
    shoulder_drop: float
    shoulder_span: float
    neckline: tuple[float, ...]
    cloth_offset: float
    collar: tuple[float, ...]


@dataclass(frozen=True)
class HairCap:
    """The cap over the skull: hairline ``a + b cos(t) + c cos(2t)`` in head-box units (t 0 = the nose), volume."""

    hairline: tuple[float, ...]
    volume: float
    body: float
    edge_rise: float
    clump: float
    drape_bins: int
    drape_taper: float
    edge: float
    quiff: float
    subdivisions: int
    wisps: float
    smooth_iterations: int


@dataclass(frozen=True)
class HairCurtain:
    """A bob's hanging sides and back (see ``hair.hair_curtain``)."""

    grid: tuple[int, ...]
    top: float
    front_deg: tuple[float, ...]
    hem: tuple[float, ...]
    clearance: float
    fall: float
    thickness: float
    tips: tuple[float, ...]
    ridges: tuple[tuple[float, ...], ...]
    bins: tuple[float, ...]


@dataclass(frozen=True)
class Hair:
    """A hair style: ``bob`` (cap plus curtain) or ``short`` (the cap alone, close to the skull)."""

    style: str
    cap: HairCap
    curtain: HairCurtain | None


@dataclass(frozen=True)
class Brows:
    """Eyebrow ribbons, relative to each eye centre ("inner" is signed towards the nose)."""

    segments: int
    inner: float
    length: float
    lift: float
    arch: float
    drop: float
    width: float
    lift_off_skin: float


@dataclass(frozen=True)
class CharacterParams:
    """Everything that makes one character's avatar: body, bust, hair, brows and colours."""

    name: str
    out: str
    body: Body
    bust: Bust
    hair: Hair
    brows: Brows
    colors: dict[str, tuple[float, ...]]

    @property
    def out_path(self) -> Path:
        """The GLB this character builds to (relative names are under ``avatar_assets/``)."""
        return CHARACTERS_DIR.parent / self.out


def _convert(kind: Any, value: Any, where: str) -> Any:
    """Check ``value`` against a field type (number, str, tuple, dict, dataclass, optional) and convert it."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if is_dataclass(kind):
        return _dataclass(kind, value, where)
    if kind is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
            raise ConfigError(f"{where}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        return kind(value)
    if origin is tuple:
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: expected a non-empty list, got {value!r}")
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(f"{where}: unsupported field type {kind!r}")  # a programming error in this module


def _dataclass(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    data = {k: v for k, v in data.items() if not k.startswith("_")}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    missing, unknown = sorted(set(names) - set(data)), sorted(set(data) - set(names))
    if missing or unknown:
        raise ConfigError(f"{where}: missing keys {missing}, unknown keys {unknown}")
    return cls(**{n: _convert(hints[n], data[n], f"{where}.{n}") for n in names})


def _check(params: CharacterParams, where: str) -> None:
    """Cross-field rules the types cannot say."""
    body, hair = params.body, params.hair
    if not 0.0 <= body.gender <= 1.0:
        raise ConfigError(f"{where}: body.gender must be in [0, 1], got {body.gender}")
    if set(body.races) != set(RACES) or abs(sum(body.races.values()) - 1.0) > 1e-6:
        raise ConfigError(f"{where}: body.races must weight exactly {list(RACES)} and sum to 1")
    if set(params.colors) != set(COLOR_NAMES) or any(len(c) != 3 for c in params.colors.values()):
        raise ConfigError(f"{where}: colors must be exactly {list(COLOR_NAMES)}, each [r, g, b]")
    if hair.style not in HAIR_STYLES:
        raise ConfigError(f"{where}: hair.style must be one of {list(HAIR_STYLES)}, got {hair.style!r}")
    if (hair.style == "bob") != (hair.curtain is not None):
        raise ConfigError(f"{where}: a bob needs hair.curtain, a short style must set it to null")


def load_params(name_or_path: str | Path) -> CharacterParams:
    """Load a character's parameters by name (``avatar_assets/characters/<name>.json``) or by path.

    Raises:
        ConfigError: the file is missing, not strict JSON, or any key is missing, unknown or of the wrong type.
    """
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = CHARACTERS_DIR / f"{name_or_path}.json"
    params = _dataclass(CharacterParams, read_json(path), path.name)
    _check(params, path.name)
    return params


def character_names() -> list[str]:
    """The characters that have a parameter file, sorted."""
    return sorted(p.stem for p in CHARACTERS_DIR.glob("*.json"))
