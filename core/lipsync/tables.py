"""Loads and validates the phoneme → Oculus viseme → Rhubarb shape tables in ``data/visemes/``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from core.config import DATA_DIR
from core.datafiles import read_json
from core.errors import ConfigError
from core.types import OCULUS_VISEMES, RHUBARB_SHAPES

VISEME_DIR = DATA_DIR / "visemes"


@dataclass(frozen=True, slots=True)
class PhonemeTable:
    """One phoneme alphabet: each phoneme's visemes (its time is split evenly) and the symbol classes around them.

    ``attach_next`` symbols (stress marks) give their time to the next phoneme, ``attach_previous`` ones (length,
    diacritics) to the previous one, ``word_boundary`` symbols half to each neighbour; ``silence`` symbols are rest.
    """

    alphabet: str
    phonemes: Mapping[str, tuple[str, ...]]
    silence: frozenset[str]
    word_boundary: frozenset[str] = frozenset()
    attach_next: frozenset[str] = frozenset()
    attach_previous: frozenset[str] = frozenset()
    longest_key: int = 1
    """Length in characters of the longest phoneme key (for longest-match tokenising)."""


@dataclass(frozen=True, slots=True)
class ShapeTable:
    """Oculus viseme → Rhubarb shape, and the viseme that stands for each shape when only shapes are known."""

    shapes: Mapping[str, str]
    representative: Mapping[str, str]


def _read(path: Path) -> dict:
    return read_json(path)


def _viseme(path: Path, key: str, value: object) -> str:
    if value not in OCULUS_VISEMES:
        raise ConfigError(f"{path}: {key!r} maps to unknown viseme {value!r}; valid: {', '.join(OCULUS_VISEMES)}")
    return str(value)


def _symbols(path: Path, raw: dict, field: str) -> frozenset[str]:
    values = raw.get(field, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{path}: {field!r} must be a list of non-empty strings")
    if len(set(values)) != len(values):
        raise ConfigError(f"{path}: {field!r} lists a symbol twice")
    return frozenset(values)


def load_phoneme_table(path: Path, alphabet: str) -> PhonemeTable:
    """Read one phoneme table; raise ConfigError on an unknown viseme, a duplicate key or overlapping classes."""
    raw = _read(path)
    entries = raw.get("phonemes")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{path}: 'phonemes' must be a non-empty object")
    phonemes: dict[str, tuple[str, ...]] = {}
    for key, value in entries.items():
        visemes = value if isinstance(value, list) else [value]
        if not visemes:
            raise ConfigError(f"{path}: {key!r} maps to an empty list")
        phonemes[key] = tuple(_viseme(path, key, v) for v in visemes)
    names = ("silence", "word_boundary", "attach_next", "attach_previous")
    classes = {name: _symbols(path, raw, name) for name in names}
    seen: set[str] = set(phonemes)
    for name, symbols in classes.items():
        overlap = seen & symbols
        if overlap:
            raise ConfigError(f"{path}: {sorted(overlap)} listed both in {name!r} and elsewhere")
        seen |= symbols
    return PhonemeTable(alphabet=alphabet, phonemes=phonemes, **classes, longest_key=max(map(len, phonemes)))


def load_shape_table(path: Path) -> ShapeTable:
    """Read the Oculus → Rhubarb table; every viseme and every shape must be covered exactly once."""
    raw = _read(path)
    shapes = raw.get("shapes", {})
    representative = raw.get("representative", {})
    if set(shapes) != set(OCULUS_VISEMES):
        raise ConfigError(f"{path}: 'shapes' must cover exactly the 15 Oculus visemes; got {sorted(shapes)}")
    for viseme, shape in shapes.items():
        if shape not in RHUBARB_SHAPES:
            raise ConfigError(f"{path}: viseme {viseme!r} maps to unknown shape {shape!r}")
    if set(representative) != set(RHUBARB_SHAPES):
        raise ConfigError(f"{path}: 'representative' must cover exactly the shapes {', '.join(RHUBARB_SHAPES)}")
    for shape, viseme in representative.items():
        _viseme(path, shape, viseme)
    return ShapeTable(shapes=shapes, representative=representative)


@cache
def phoneme_table(alphabet: str) -> PhonemeTable:
    """The table for "ipa" or "arpabet", loaded once from ``data/visemes/<alphabet>.json``."""
    if alphabet not in ("ipa", "arpabet"):
        raise ConfigError(f"unknown phoneme alphabet {alphabet!r}; choose 'ipa' or 'arpabet'")
    return load_phoneme_table(VISEME_DIR / f"{alphabet}.json", alphabet)


@cache
def shape_table() -> ShapeTable:
    """The Oculus → Rhubarb table, loaded once from ``data/visemes/oculus_to_rhubarb.json``."""
    return load_shape_table(VISEME_DIR / "oculus_to_rhubarb.json")


@cache
def letter_table() -> Mapping[str, tuple[str, ...]]:
    """Letter/digit → ARPAbet phonemes for words CMUdict lacks, from ``data/visemes/letters.json``."""
    path = VISEME_DIR / "letters.json"
    letters = _read(path).get("letters")
    if not isinstance(letters, dict) or not letters:
        raise ConfigError(f"{path}: 'letters' must be a non-empty object")
    known = phoneme_table("arpabet").phonemes
    table: dict[str, tuple[str, ...]] = {}
    for letter, phonemes in letters.items():
        if len(letter) != 1 or not isinstance(phonemes, list) or not phonemes:
            raise ConfigError(f"{path}: {letter!r} must be one character mapped to a non-empty list")
        unknown = [p for p in phonemes if p not in known]
        if unknown:
            raise ConfigError(f"{path}: {letter!r} uses phonemes missing from arpabet.json: {unknown}")
        table[letter] = tuple(phonemes)
    return table
