"""Cost per turn: unit prices from ``data/prices.json``, a turn's usage, its cost per preset, a monthly projection.

A *preset* names one priced item per pipeline component (``COMPONENTS``). "original" and "optimised" describe two
deployments; "actual" prices the backends the turn really ran (``"from_turn"``). Pay-per-use items (tokens,
characters, audio minutes, queries) are charged for what the turn used; items priced per hour (a dedicated GPU
endpoint, the app itself) are shared among ``turns_per_hour`` turns in the per-turn figures, and charged for every hour
of the month in ``monthly_projection``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import DATA_DIR
from core.datafiles import read_json
from core.errors import ConfigError
from core.types import TurnComplete

log = logging.getLogger(__name__)

DEFAULT_PRICES_PATH = DATA_DIR / "prices.json"
COMPONENTS: tuple[str, ...] = ("llm", "tts", "asr", "lipsync", "emotion", "retrieval", "compute")
"""The priced parts of a turn, in display order."""
FROM_TURN = "from_turn"
"""A preset value meaning "the backend recorded in the turn"."""
FROM_TURN_COMPONENTS = frozenset({"llm", "tts", "asr", "retrieval"})
"""Components whose backend a turn records (the others always run on the app CPU)."""
SECTION_UNITS: Mapping[str, tuple[str, ...]] = {
    "llm": ("input_per_1m_tokens", "output_per_1m_tokens", "per_hour"),
    "tts": ("per_1m_characters", "per_hour"),
    "asr": ("per_audio_minute", "per_hour"),
    "lipsync": ("per_hour",),
    "emotion": ("per_hour",),
    "retrieval": ("per_query", "per_hour"),
    "compute": ("per_hour",),
}
"""The price fields each section's items may have."""
TOP_LEVEL_KEYS = frozenset({"currency", "notes", "amortisation", "presets", *COMPONENTS})
HOURS_PER_MONTH = 8760 / 12
"""730 hours: an average month."""
SECONDS_PER_HOUR = 3600.0
TOKENS_PER_PRICE_UNIT = 1_000_000
CHARACTERS_PER_PRICE_UNIT = 1_000_000


# ---------------------------------------------------------------------------------------------------------------
# The price table
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceItem:
    """One priced thing (a model endpoint, a voice service, a GPU endpoint...) with its rates and their source."""

    section: str
    name: str
    rates: Mapping[str, float]
    notes: str

    def rate(self, unit: str) -> float:
        """The price for ``unit`` (e.g. "per_hour"), 0 when the item is not charged that way."""
        return self.rates.get(unit, 0.0)


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Unit prices by component section and item name, the presets, and the amortisation setting."""

    items: Mapping[str, Mapping[str, PriceItem]]
    presets: Mapping[str, Mapping[str, str]]
    turns_per_hour: float
    currency: str
    source: str

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PRICES_PATH) -> PriceTable:
        """Read and validate a price file.

        Raises:
            ConfigError: the file is missing or not JSON, has a duplicate or unknown key, a negative or non-numeric
                price, an item without ``notes``, or a preset naming an item that does not exist.
        """
        data = read_json(path)
        return _parse_table(data, str(path))

    @property
    def preset_names(self) -> tuple[str, ...]:
        """Every preset, in file order."""
        return tuple(self.presets)

    def item(self, section: str, name: str) -> PriceItem | None:
        """The item ``name`` of ``section``, or None."""
        return self.items.get(section, {}).get(name)


def _fail(source: str, where: str, problem: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {problem}")


def _check_keys(source: str, where: str, obj: Any, allowed: frozenset[str] | set[str]) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(source, where, f"expected an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise _fail(source, where, f"unknown key(s) {names}; allowed: {', '.join(sorted(allowed))}")
    return obj


def _price(source: str, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(source, where, f"a price must be a number, got {value!r}")
    if value < 0:
        raise _fail(source, where, f"a price cannot be negative, got {value!r}")
    return float(value)


def _notes(source: str, where: str, obj: Mapping[str, Any]) -> str:
    notes = obj.get("notes")
    if not isinstance(notes, str) or not notes.strip():
        raise _fail(source, where, "needs a non-empty 'notes' saying where its numbers come from")
    return notes


def _parse_item(source: str, section: str, name: str, obj: Any) -> PriceItem:
    where = f"{section}.{name}"
    units = SECTION_UNITS[section]
    obj = _check_keys(source, where, obj, {*units, "notes"})
    rates = {unit: _price(source, f"{where}.{unit}", obj[unit]) for unit in units if unit in obj}
    if not rates:
        raise _fail(source, where, f"has no price; give at least one of {', '.join(units)}")
    return PriceItem(section, name, rates, _notes(source, where, obj))


def _parse_preset(source: str, name: str, obj: Any, items: Mapping[str, Mapping[str, PriceItem]]) -> dict[str, str]:
    where = f"presets.{name}"
    obj = _check_keys(source, where, obj, {*COMPONENTS, "notes"})
    _notes(source, where, obj)
    preset: dict[str, str] = {}
    for component in COMPONENTS:
        choice = obj.get(component)
        if not isinstance(choice, str):
            raise _fail(source, f"{where}.{component}", "must name an item of the section (a string)")
        if choice == FROM_TURN:
            if component not in FROM_TURN_COMPONENTS:
                allowed = ", ".join(sorted(FROM_TURN_COMPONENTS))
                raise _fail(source, f"{where}.{component}", f"{FROM_TURN!r} only works for {allowed}")
        elif choice not in items[component]:
            known = ", ".join(items[component])
            raise _fail(source, f"{where}.{component}", f"no item {choice!r} in section {component!r} ({known})")
        preset[component] = choice
    return preset


def _parse_table(data: Any, source: str) -> PriceTable:
    data = _check_keys(source, "top level", data, TOP_LEVEL_KEYS)
    missing = [key for key in ("amortisation", "presets", *COMPONENTS) if key not in data]
    if missing:
        raise _fail(source, "top level", f"missing {', '.join(missing)}")
    items: dict[str, dict[str, PriceItem]] = {}
    for section in COMPONENTS:
        entries = data[section]
        if not isinstance(entries, dict):
            raise _fail(source, section, f"expected an object of priced items, got {type(entries).__name__}")
        items[section] = {name: _parse_item(source, section, name, obj) for name, obj in entries.items()}
    amortisation = _check_keys(source, "amortisation", data["amortisation"], {"turns_per_hour", "notes"})
    _notes(source, "amortisation", amortisation)
    turns_per_hour = _price(source, "amortisation.turns_per_hour", amortisation.get("turns_per_hour"))
    if turns_per_hour <= 0:
        raise _fail(source, "amortisation.turns_per_hour", "must be greater than 0")
    presets_obj = data["presets"]
    if not isinstance(presets_obj, dict) or not presets_obj:
        raise _fail(source, "presets", "expected at least one preset")
    presets = {name: _parse_preset(source, name, obj, items) for name, obj in presets_obj.items()}
    currency = data.get("currency", "USD")
    if not isinstance(currency, str):
        raise _fail(source, "currency", "must be a string such as 'USD'")
    return PriceTable(items, presets, turns_per_hour, currency, source)


# ---------------------------------------------------------------------------------------------------------------
# What a turn used
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnUsage:
    """The billable units one turn consumed and the backends that consumed them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    tts_characters: int = 0
    asr_audio_s: float = 0.0
    retrieval_queries: int = 0
    cache_hit: bool = False
    llm_backend: str = ""
    llm_model: str = ""
    tts_backend: str = ""
    asr_backend: str = ""
    retrieval_backend: str = ""
    turn_duration_s: float = 0.0


def usage_from_turn(done: TurnComplete, asr_audio_s: float = 0.0, *, asr_backend: str = "") -> TurnUsage:
    """Read a turn's usage from its ``StageMetrics``.

    Stages and units read: "llm" (``prompt_tokens``, ``completion_tokens``), "tts" (``characters``), "asr"
    (``audio_s``; otherwise ``asr_audio_s``/``asr_backend`` from the caller, e.g. the UserTurn's transcript),
    "retrieval" (``queries``, 1 when absent), and "cache" (``hit`` > 0 marks a turn answered from the cache). The
    duration is ``timings_s["total_s"]``.
    """
    stages = {m.stage: m for m in done.metrics}
    llm, tts, asr = stages.get("llm"), stages.get("tts"), stages.get("asr")
    retrieval, cache = stages.get("retrieval"), stages.get("cache")
    return TurnUsage(
        prompt_tokens=int(llm.units.get("prompt_tokens", 0)) if llm else 0,
        completion_tokens=int(llm.units.get("completion_tokens", 0)) if llm else 0,
        tts_characters=int(tts.units.get("characters", 0)) if tts else 0,
        asr_audio_s=float(asr.units.get("audio_s", asr_audio_s)) if asr else asr_audio_s,
        retrieval_queries=int(retrieval.units.get("queries", 1)) if retrieval else 0,
        cache_hit=bool(cache and cache.units.get("hit", 0) > 0),
        llm_backend=llm.backend if llm else done.reply.backend,
        llm_model=done.reply.model,
        tts_backend=tts.backend if tts else "",
        asr_backend=asr.backend if asr else asr_backend,
        retrieval_backend=retrieval.backend if retrieval else "",
        turn_duration_s=float(done.timings_s.get("total_s", 0.0)),
    )


# ---------------------------------------------------------------------------------------------------------------
# Cost of a turn
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """What one turn cost under one preset, per component (USD).

    ``usage_usd`` is the pay-per-use part of the total (the rest is hourly items' shares); ``hourly_usd`` is what the
    preset's hourly items cost per hour while running; ``saved_usd`` is the pay-per-use LLM + TTS cost a cache hit
    avoided; ``unpriced`` names components whose backend has no price (counted as 0, so the total is a lower bound).
    """

    preset: str
    llm_usd: float
    tts_usd: float
    asr_usd: float
    lipsync_usd: float
    emotion_usd: float
    retrieval_usd: float
    compute_usd: float
    usage_usd: float
    hourly_usd: float
    turns_per_hour: float
    saved_usd: float = 0.0
    unpriced: tuple[str, ...] = ()

    @property
    def total_usd(self) -> float:
        """The sum of the components."""
        return sum(self.components().values())

    def components(self) -> dict[str, float]:
        """Cost per component, keyed by the names in ``COMPONENTS``."""
        return {component: getattr(self, f"{component}_usd") for component in COMPONENTS}


def _resolve(
    table: PriceTable, preset: Mapping[str, str], component: str, usage: TurnUsage
) -> tuple[PriceItem | None, str]:
    """The item a preset uses for a component, and the name looked up (for messages)."""
    choice = preset[component]
    if choice != FROM_TURN:
        return table.item(component, choice), choice
    if component == "llm":
        item = table.item("llm", usage.llm_model) or table.item("llm", usage.llm_backend)
        return item, usage.llm_model or usage.llm_backend
    backend = {"tts": usage.tts_backend, "asr": usage.asr_backend, "retrieval": usage.retrieval_backend}[component]
    return table.item(component, backend), backend


def _usage_cost(component: str, item: PriceItem, usage: TurnUsage) -> float:
    """The pay-per-use part of a component's cost."""
    if component == "llm":
        return (
            usage.prompt_tokens * item.rate("input_per_1m_tokens")
            + usage.completion_tokens * item.rate("output_per_1m_tokens")
        ) / TOKENS_PER_PRICE_UNIT
    if component == "tts":
        return usage.tts_characters * item.rate("per_1m_characters") / CHARACTERS_PER_PRICE_UNIT
    if component == "asr":
        return usage.asr_audio_s / 60.0 * item.rate("per_audio_minute")
    if component == "retrieval":
        return usage.retrieval_queries * item.rate("per_query")
    return 0.0


def _used(component: str, usage: TurnUsage) -> bool:
    """Whether the turn used a component at all (a cache hit skips the LLM and the TTS)."""
    if component in ("llm", "tts"):
        return not usage.cache_hit
    if component == "asr":
        return usage.asr_audio_s > 0
    if component == "retrieval":
        return usage.retrieval_queries > 0
    return True


def turn_cost(
    usage: TurnUsage, table: PriceTable, preset: str, *, turns_per_hour: float | None = None
) -> CostBreakdown:
    """Price one turn's usage under a preset.

    For each component, with ``p`` the preset's item (or, for ``"from_turn"``, the item named like the turn's
    model or backend) and ``N`` = ``turns_per_hour`` (default: the table's ``amortisation.turns_per_hour``)::

        pay-per-use   llm  = (prompt_tokens * p.input_per_1m_tokens + completion_tokens * p.output_per_1m_tokens) / 1e6
                      tts  = characters / 1e6 * p.per_1m_characters
                      asr  = audio_s / 60 * p.per_audio_minute
                      retrieval = queries * p.per_query
        hourly share  p.per_hour / N            (a dedicated endpoint running an hour serves N turns)
                      compute: p.per_hour * max(1 / N, turn_duration_s / 3600)
                      (the app works on one turn at a time, so a turn longer than 3600 / N seconds pays its own time)

    A component the turn did not use costs 0 in that turn: ASR without audio, retrieval without a query, and the
    LLM and TTS on a cache hit (``saved_usd`` then holds the pay-per-use LLM + TTS cost the hit avoided). An
    hourly item is billed whether used or not; ``monthly_projection`` charges it for every hour.

    Raises:
        ConfigError: unknown preset, or ``turns_per_hour`` not positive.
    """
    if preset not in table.presets:
        raise ConfigError(f"Unknown cost preset {preset!r}; choose one of: {', '.join(table.preset_names)}")
    per_hour_turns = table.turns_per_hour if turns_per_hour is None else turns_per_hour
    if per_hour_turns <= 0:
        raise ConfigError(f"turns_per_hour must be greater than 0, got {per_hour_turns}")
    choices = table.presets[preset]
    costs: dict[str, float] = {}
    usage_usd = hourly_usd = saved_usd = 0.0
    unpriced: list[str] = []
    for component in COMPONENTS:
        item, looked_up = _resolve(table, choices, component, usage)
        if item is None:
            costs[component] = 0.0
            if _used(component, usage):
                unpriced.append(f"{component}: {looked_up or 'unknown backend'}")
                log.warning("no price for %s %r (preset %s); counted as 0", component, looked_up, preset)
            continue
        hourly_usd += item.rate("per_hour")
        pay_per_use = _usage_cost(component, item, usage)
        if not _used(component, usage):
            costs[component] = 0.0
            if component in ("llm", "tts"):
                saved_usd += pay_per_use
            continue
        share = 1.0 / per_hour_turns
        if component == "compute":
            share = max(share, usage.turn_duration_s / SECONDS_PER_HOUR)
        costs[component] = pay_per_use + item.rate("per_hour") * share
        usage_usd += pay_per_use
    return CostBreakdown(
        preset=preset,
        **{f"{component}_usd": cost for component, cost in costs.items()},
        usage_usd=usage_usd,
        hourly_usd=hourly_usd,
        turns_per_hour=per_hour_turns,
        saved_usd=saved_usd,
        unpriced=tuple(unpriced),
    )


def costs_by_preset(usage: TurnUsage, table: PriceTable) -> dict[str, CostBreakdown]:
    """The turn priced under every preset of the table."""
    return {preset: turn_cost(usage, table, preset) for preset in table.preset_names}


def monthly_projection(
    turn_costs: Sequence[CostBreakdown],
    conversations_per_day: float,
    turns_per_conversation: float,
    *,
    hours_per_month: float = HOURS_PER_MONTH,
) -> dict[str, dict[str, float]]:
    """Project a month of traffic from sample turns, per preset.

    With ``T`` = conversations_per_day * turns_per_conversation * hours_per_month / 24 turns a month:
    ``usage_usd`` = mean pay-per-use cost per turn * T; ``always_on_usd`` = mean hourly price * hours_per_month
    (dedicated endpoints and the app run all month, whatever the traffic); ``total_usd`` is their sum and
    ``per_turn_usd`` = total / T. ``cache_savings_usd`` = mean ``saved_usd`` * T. ``sample_turns`` counts the inputs.

    Raises:
        ValueError: negative traffic.
    """
    if conversations_per_day < 0 or turns_per_conversation < 0 or hours_per_month < 0:
        raise ValueError("Traffic and hours must not be negative.")
    turns_per_month = conversations_per_day * turns_per_conversation * hours_per_month / 24.0
    grouped: dict[str, list[CostBreakdown]] = {}
    for cost in turn_costs:
        grouped.setdefault(cost.preset, []).append(cost)
    projection: dict[str, dict[str, float]] = {}
    for preset, costs in grouped.items():
        n = len(costs)
        usage = sum(c.usage_usd for c in costs) / n * turns_per_month
        always_on = sum(c.hourly_usd for c in costs) / n * hours_per_month
        total = usage + always_on
        projection[preset] = {
            "turns_per_month": turns_per_month,
            "usage_usd": usage,
            "always_on_usd": always_on,
            "total_usd": total,
            "per_turn_usd": total / turns_per_month if turns_per_month else 0.0,
            "cache_savings_usd": sum(c.saved_usd for c in costs) / n * turns_per_month,
            "sample_turns": float(n),
        }
    return projection
