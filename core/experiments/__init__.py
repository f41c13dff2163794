"""A/B experiments: variants defined in a data file, sessions assigned at random but stably, the variant on every turn.

``data/experiments.json`` (``AVATAR_EXPERIMENTS_FILE``) lists experiments; each has two or more variants, a
``weight`` each (the split) and the turn options it changes: any mix of ``system_prompt``, ``llm`` (a backend
descriptor, e.g. "databricks/databricks-gpt-oss-20b"), ``tts`` (e.g. "edge/en-US-JennyNeural"), ``streaming`` and
``top_k``. The first variant is the control. One experiment runs at a time: the one marked ``"running": true``, or
the one ``AVATAR_EXPERIMENT`` names ("none" runs none).

A session's variant comes from a hash of the experiment and session names, so it is random across sessions, the
same on every turn and every app instance, and needs no lookup; ``ExperimentRunner`` records it once per session in
the turn store and puts it on each turn's ``TurnOptions``. ``python -m core.experiments report NAME`` prints the
report (``core.experiments.report``).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import ExperimentConfig
from core.datafiles import read_json
from core.errors import ConfigError
from core.types import TurnOptions

if TYPE_CHECKING:
    from core.analytics import TurnLog

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
"""Experiment and variant names: short lowercase slugs, as they appear in the store and on the command line."""
OPTION_TYPES: Mapping[str, type] = {"system_prompt": str, "llm": str, "tts": str, "streaming": bool, "top_k": int}
"""What a variant may change, and the JSON type of each."""
MAX_TOP_K = 20
NO_EXPERIMENT = "none"
HASH_BYTES = 8
"""64 bits of the hash place a session in [0, 1): finer than any split anyone will write."""


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: its name, its share of sessions and the turn options it sets."""

    name: str
    weight: float
    overrides: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Experiment:
    """An experiment: named variants (the first is the control) splitting sessions by weight."""

    name: str
    variants: tuple[Variant, ...]
    description: str = ""
    running: bool = False

    @property
    def control(self) -> Variant:
        return self.variants[0]

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise ConfigError(f"Experiment {self.name!r} has no variant {name!r}")

    def assign(self, session_id: str) -> Variant:
        """The session's variant: where a hash of (experiment, session) falls among the cumulative weights."""
        digest = hashlib.sha256(f"{self.name}\0{session_id}".encode()).digest()[:HASH_BYTES]
        point = int.from_bytes(digest, "big") / 2 ** (8 * HASH_BYTES) * sum(v.weight for v in self.variants)
        for variant in self.variants:
            point -= variant.weight
            if point < 0:
                return variant
        return self.variants[-1]

    def options(self, variant: Variant, base: TurnOptions | None = None) -> TurnOptions:
        """``base`` (e.g. the user's character) with the variant's options on top, labelled with the variant."""
        return replace(base or TurnOptions(), **variant.overrides, experiment=self.name, variant=variant.name)


@dataclass(frozen=True)
class ExperimentBook:
    """Every experiment in the file, and the one running (None when none is)."""

    experiments: Mapping[str, Experiment]
    running: Experiment | None
    source: str = ""

    @classmethod
    def load(cls, config: ExperimentConfig | None = None) -> ExperimentBook:
        """Read and check the file; pick the running experiment.

        Raises:
            ConfigError: the file is malformed, two experiments are marked running, or the named one is unknown.
        """
        config = config or ExperimentConfig()
        path = Path(config.file)
        raw = read_json(path) if path.exists() else {"experiments": []}
        experiments = _parse_file(raw, str(path))
        if config.name == NO_EXPERIMENT:
            running = None
        elif config.name:
            if config.name not in experiments:
                known = ", ".join(experiments) or "none defined"
                raise ConfigError(f"AVATAR_EXPERIMENT={config.name!r} is not in {path} ({known})")
            running = experiments[config.name]
        else:
            marked = [e for e in experiments.values() if e.running]
            if len(marked) > 1:
                names = ", ".join(e.name for e in marked)
                raise ConfigError(f"{path}: only one experiment can be running, not {names}")
            running = marked[0] if marked else None
        return cls(experiments, running, str(path))


class ExperimentRunner:
    """Assigns sessions to the running experiment's variants and records each assignment once in the turn log."""

    def __init__(self, book: ExperimentBook, turn_log: TurnLog | None = None) -> None:
        self.book = book
        self.turn_log = turn_log
        self._recorded: set[str] = set()
        self._lock = threading.Lock()

    @property
    def experiment(self) -> Experiment | None:
        return self.book.running

    def options_for(self, session_id: str, base: TurnOptions | None = None) -> TurnOptions:
        """The turn options for a session: ``base`` as it is when no experiment runs, else with its variant's."""
        experiment = self.book.running
        if experiment is None:
            return base or TurnOptions()
        variant = experiment.assign(session_id)
        with self._lock:
            first = session_id not in self._recorded
            self._recorded.add(session_id)
        if first and self.turn_log is not None:
            self.turn_log.record_assignment(experiment.name, session_id, variant.name)
        return experiment.options(variant, base)

    def forget(self, session_id: str) -> None:
        """Drop a closed session from memory (its assignment stays in the store)."""
        with self._lock:
            self._recorded.discard(session_id)

    def status(self) -> str:
        """One line for the status panel."""
        experiment = self.book.running
        if experiment is None:
            return f"no experiment running ({len(self.book.experiments)} defined in {Path(self.book.source).name})"
        split = " / ".join(f"{v.name} {v.weight:g}" for v in experiment.variants)
        return f"experiment {experiment.name!r} running: {split}"


# -- reading the file ---------------------------------------------------------------------------------------------


def _object(item: Any, where: str, keys: set[str]) -> dict[str, Any]:
    """``item`` checked to be a JSON object with no keys but ``keys``."""
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected an object")
    unknown = set(item) - keys
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    return item


def _parse_file(raw: Any, where: str) -> dict[str, Experiment]:
    raw = _object(raw, where, {"experiments", "notes"})
    if not isinstance(raw.get("experiments"), list):
        raise ConfigError(f"{where}: expected an \"experiments\" list")
    experiments: dict[str, Experiment] = {}
    for index, item in enumerate(raw["experiments"]):
        experiment = _parse_experiment(item, f"{where}: experiments[{index}]")
        if experiment.name in experiments:
            raise ConfigError(f"{where}: experiment {experiment.name!r} is defined twice")
        experiments[experiment.name] = experiment
    return experiments


def _parse_experiment(item: Any, where: str) -> Experiment:
    item = _object(item, where, {"name", "description", "running", "variants"})
    name = _name(item.get("name"), where)
    if not isinstance(item.get("running", False), bool):
        raise ConfigError(f"{where} ({name}): \"running\" must be true or false")
    variants_raw = item.get("variants")
    if not isinstance(variants_raw, list) or len(variants_raw) < 2:
        raise ConfigError(f"{where} ({name}): an experiment needs a \"variants\" list of at least two")
    variants = tuple(_parse_variant(v, f"{where} ({name}) variants[{i}]") for i, v in enumerate(variants_raw))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where} ({name}): variant names must differ, got {names}")
    return Experiment(name, variants, str(item.get("description", "")), bool(item.get("running", False)))


def _parse_variant(item: Any, where: str) -> Variant:
    item = _object(item, where, {"name", "weight", "options", "description"})
    name = _name(item.get("name"), where)
    weight = item.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        raise ConfigError(f"{where} ({name}): \"weight\" must be a positive number, got {weight!r}")
    options = item.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{where} ({name}): \"options\" must be an object")
    for key, value in options.items():
        if key not in OPTION_TYPES:
            raise ConfigError(f"{where} ({name}): unknown option {key!r}; a variant can set {sorted(OPTION_TYPES)}")
        expected = OPTION_TYPES[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{where} ({name}): option {key!r} must be a {expected.__name__}, got {value!r}")
    _check_descriptors(options, f"{where} ({name})")
    return Variant(name, float(weight), dict(options), str(item.get("description", "")))


def _check_descriptors(options: Mapping[str, Any], where: str) -> None:
    """Backend descriptors must name registered backends, so a typo fails at start, not in a user's turn."""
    from core.llm import LLM_BACKENDS
    from core.tts import TTS_BACKENDS

    for key, registry, extra in (("llm", LLM_BACKENDS, {"auto"}), ("tts", TTS_BACKENDS, set())):
        if key in options:
            kind = options[key].partition("/")[0].strip().lower()
            if kind not in set(registry) | extra:
                raise ConfigError(f"{where}: {key} {options[key]!r} names no backend; choose one of "
                                  f"{sorted(set(registry) | extra)}")
    top_k = options.get("top_k")
    if top_k is not None and not 1 <= top_k <= MAX_TOP_K:
        raise ConfigError(f"{where}: top_k must be between 1 and {MAX_TOP_K}, got {top_k}")


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise ConfigError(f"{where}: \"name\" must be a lowercase slug (letters, digits, - _ .), got {value!r}")
    return value
