"""An experiment's report: per variant, turns, sessions, thumbs-up rate, time to first audio, cost per turn and
errors, each with a 95% confidence interval; each variant tested against the control; a verdict in plain words.

Statistics (scipy.stats): Wilson intervals for rates (``binomtest(...).proportion_ci``) and Fisher's exact test to
compare them; a distribution-free interval for the median time to first audio (``quantile_test``) and the
Mann-Whitney U test to compare latencies (they are skewed); a t interval for the mean cost per turn and Welch's t
test to compare means. Each test is two-sided at ``ALPHA``; four tests per comparison are not corrected for
multiple comparisons, which the report says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from core.errors import ConfigError
from core.experiments import Experiment, ExperimentBook
from core.turnstore import StoreUnavailable

if TYPE_CHECKING:
    from core.analytics import TurnLog

ALPHA = 0.05
CONFIDENCE = 0.95
MIN_SAMPLES = 5
"""Below this many ratings (or finished turns) in either variant a comparison is not attempted."""
MULTIPLE_TESTS_NOTE = (f"Each comparison runs four two-sided tests at p < {ALPHA:g}, not corrected for multiple "
                       "comparisons: about one experiment in five shows a difference by chance somewhere. Treat a "
                       "single p near 0.05 as a hint and wait for more sessions.")


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% interval (NaN bounds when there is too little data) and its sample size."""

    value: float
    low: float
    high: float
    n: int

    def text(self, fmt: Callable[[float], str]) -> str:
        if self.n == 0 or math.isnan(self.value):
            return "—"
        if math.isnan(self.low) or math.isnan(self.high):
            return f"{fmt(self.value)} (n={self.n})"
        return f"{fmt(self.value)} [{fmt(self.low)}, {fmt(self.high)}] (n={self.n})"


@dataclass(frozen=True)
class VariantStats:
    """One variant's numbers."""

    name: str
    sessions: int
    turns: int
    errors: int
    ratings: int
    up: int
    up_rate: Estimate
    first_audio_s: Estimate  # median
    cost_usd: Estimate  # mean per finished turn
    error_rate: Estimate
    samples: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    """The finished turns' ``first_audio_s`` and ``cost_usd`` values, for the tests."""


@dataclass(frozen=True)
class MetricTest:
    """One metric compared between a variant and the control: which is better (if significant) and the sentence."""

    metric: str
    p_value: float | None  # None: too little data to test
    better: str | None  # the variant that is significantly better, or None
    sentence: str
    short: str = ""  # the verdict's words for a significant result, e.g. "B is faster to first audio (p < 0.01)"


@dataclass(frozen=True)
class Comparison:
    """A variant against the control."""

    variant: str
    control: str
    tests: tuple[MetricTest, ...]
    verdict: str


@dataclass(frozen=True)
class ExperimentReport:
    """Everything the dashboard and the command show."""

    experiment: str
    description: str
    variants: tuple[VariantStats, ...]
    comparisons: tuple[Comparison, ...]
    notes: tuple[str, ...] = field(default=(MULTIPLE_TESTS_NOTE,))

    @property
    def verdict(self) -> str:
        if not any(v.turns for v in self.variants):
            return f"No turns in experiment {self.experiment!r} yet."
        return " ".join(c.verdict for c in self.comparisons)

    def table(self) -> pd.DataFrame:
        """One row per variant, for the dashboard."""
        rows = [{
            "variant": v.name,
            "sessions": v.sessions,
            "turns": v.turns,
            "thumbs up rate": v.up_rate.text(_percent),
            "first audio, median s": v.first_audio_s.text(_seconds),
            "cost per turn, mean USD": v.cost_usd.text(_usd),
            "error rate": v.error_rate.text(_percent),
        } for v in self.variants]
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (no per-turn samples; NaN, where there is no data, as None)."""
        data = asdict(self)
        for variant in data["variants"]:
            variant.pop("samples")
        return _no_nan({**data, "verdict": self.verdict})

    def to_text(self) -> str:
        """The report as the command prints it."""
        lines = [f"Experiment {self.experiment}" + (f": {self.description}" if self.description else ""), ""]
        lines.append(self.table().to_string(index=False))
        lines.append("")
        lines.append("Values: estimate [95% interval] (n). Thumbs-up and error rates: Wilson interval; first audio: "
                     "median, distribution-free interval; cost: mean, t interval (the 'actual' price preset).")
        for comparison in self.comparisons:
            lines.append("")
            lines.append(f"{comparison.variant} vs {comparison.control} (control):")
            lines.extend(f"  - {t.sentence}" for t in comparison.tests)
        lines += ["", f"Verdict: {self.verdict}", "", *self.notes]
        return "\n".join(lines)


# -- building it -------------------------------------------------------------------------------------------------


def build_report(experiment: Experiment | str, turns: pd.DataFrame, sessions: pd.DataFrame) -> ExperimentReport:
    """The report from ``TurnLog.experiment_turns`` and ``experiment_sessions`` frames.

    ``experiment`` may be a name only (an experiment no longer in the file): its variants are then those seen in
    the store, the first assigned being the control.
    """
    if isinstance(experiment, Experiment):
        name, description = experiment.name, experiment.description
        names = [v.name for v in experiment.variants]
    else:
        name, description, names = experiment, "(no longer in the experiments file)", []
    seen = [*sessions["variant"], *turns["variant"].dropna()]
    names += [v for v in dict.fromkeys(seen) if v not in names]
    variants = tuple(_variant_stats(v, turns[turns["variant"] == v], sessions[sessions["variant"] == v])
                     for v in names)
    control = variants[0] if variants else None
    comparisons = tuple(_compare(v, control) for v in variants[1:]) if control else ()
    return ExperimentReport(name, description, variants, comparisons)


def _variant_stats(name: str, turns: pd.DataFrame, sessions: pd.DataFrame) -> VariantStats:
    finished = turns[~turns["error"]]
    ratings = turns["rating"].dropna()
    up = int((ratings > 0).sum())
    errors = int(turns["error"].sum())
    session_ids = set(sessions["session_id"]) | set(turns["session_id"])
    samples = {column: finished[column].dropna().to_numpy(float) for column in ("first_audio_s", "cost_usd")}
    return VariantStats(
        name=name,
        sessions=len(session_ids),
        turns=len(turns),
        errors=errors,
        ratings=len(ratings),
        up=up,
        up_rate=_rate(up, len(ratings)),
        first_audio_s=_median(samples["first_audio_s"]),
        cost_usd=_mean(samples["cost_usd"]),
        error_rate=_rate(errors, len(turns)),
        samples=samples,
    )


def _rate(k: int, n: int) -> Estimate:
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    interval = stats.binomtest(k, n).proportion_ci(CONFIDENCE, method="wilson")
    return Estimate(k / n, float(interval.low), float(interval.high), n)


def _median(values: np.ndarray) -> Estimate:
    if len(values) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    median = float(np.median(values))
    interval = stats.quantile_test(values, q=median, p=0.5).confidence_interval(CONFIDENCE)
    return Estimate(median, float(interval.low), float(interval.high), len(values))


def _mean(values: np.ndarray) -> Estimate:
    if len(values) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(values.mean())
    if len(values) < 2 or np.ptp(values) == 0:
        spread = math.nan if len(values) < 2 else 0.0
        return Estimate(mean, mean - spread, mean + spread, len(values))
    interval = stats.ttest_1samp(values, mean).confidence_interval(CONFIDENCE)
    return Estimate(mean, float(interval.low), float(interval.high), len(values))


# -- comparing ---------------------------------------------------------------------------------------------------


def _compare(variant: VariantStats, control: VariantStats) -> Comparison:
    tests = (_rating_test(variant, control), _samples_test(variant, control, "first_audio_s"),
             _samples_test(variant, control, "cost_usd"), _error_test(variant, control))
    return Comparison(variant.name, control.name, tests, _verdict(variant.name, control.name, tests))


def _p_text(p: float) -> str:
    for bound in (0.001, 0.01):
        if p < bound:
            return f"p < {bound:g}"
    return f"p = {p:.2f}" if p < 0.995 else "p = 1"


def _judge(metric: str, p: float | None, variant: str, control: str, variant_better: bool, better: str,
           detail: str, too_few: str) -> MetricTest:
    """The sentence for one test: who is better when significant, else "no difference yet", else "too few"."""
    if p is None:
        return MetricTest(metric, None, None, too_few)
    if p < ALPHA:
        winner, loser = (variant, control) if variant_better else (control, variant)
        return MetricTest(metric, p, winner, f"{winner} {better} than {loser} ({detail}, {_p_text(p)})",
                          f"{winner} {better} ({_p_text(p)})")
    return MetricTest(metric, p, None, f"no difference in {metric} yet ({detail}, {_p_text(p)})")


def _fisher(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    return float(stats.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]]).pvalue)


def _rating_test(v: VariantStats, c: VariantStats) -> MetricTest:
    detail = f"thumbs up {_percent(v.up_rate.value)} for {v.name}, {_percent(c.up_rate.value)} for {c.name}"
    p = _fisher(v.up, v.ratings, c.up, c.ratings) if min(v.ratings, c.ratings) >= MIN_SAMPLES else None
    too_few = (f"too few ratings to compare yet ({v.ratings} for {v.name}, {c.ratings} for {c.name}; "
               f"{MIN_SAMPLES} each needed)")
    return _judge("ratings", p, v.name, c.name, v.up_rate.value > c.up_rate.value, "is rated better", detail,
                  too_few)


def _error_test(v: VariantStats, c: VariantStats) -> MetricTest:
    detail = f"{v.errors} of {v.turns} turns failed for {v.name}, {c.errors} of {c.turns} for {c.name}"
    p = _fisher(v.errors, v.turns, c.errors, c.turns) if min(v.turns, c.turns) >= MIN_SAMPLES else None
    too_few = f"too few turns to compare errors yet ({v.turns} and {c.turns}; {MIN_SAMPLES} each needed)"
    return _judge("errors", p, v.name, c.name, v.error_rate.value < c.error_rate.value, "fails less often", detail,
                  too_few)


def _mann_whitney(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def _welch(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # both constant (e.g. a flat hourly price): equal, or surely different
        return 1.0 if a[0] == b[0] else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _samples_test(v: VariantStats, c: VariantStats, column: str) -> MetricTest:
    """Time to first audio (Mann-Whitney U on the medians' samples) or cost per turn (Welch's t on the means)."""
    metric, better, test, fmt, what = {
        "first_audio_s": ("time to first audio", "is faster to first audio", _mann_whitney, _seconds, "median"),
        "cost_usd": ("cost per turn", "is cheaper per turn", _welch, _usd, "mean"),
    }[column]
    a, b = v.samples[column], c.samples[column]
    mine, theirs = getattr(v, column), getattr(c, column)
    detail = f"{what} {fmt(mine.value)} for {v.name}, {fmt(theirs.value)} for {c.name}"
    p = test(a, b) if min(len(a), len(b)) >= MIN_SAMPLES else None
    too_few = f"too few finished turns to compare {metric} yet ({len(a)} and {len(b)}; {MIN_SAMPLES} each needed)"
    return _judge(metric, p, v.name, c.name, mine.value < theirs.value, better, detail, too_few)


def _verdict(variant: str, control: str, tests: Sequence[MetricTest]) -> str:
    """E.g. "whole-reply wins over clauses: whole-reply is faster to first audio (p < 0.01); no difference in
    ratings or cost per turn yet; too few turns to compare errors yet"."""
    wins = [t for t in tests if t.better == variant]
    losses = [t for t in tests if t.better == control]
    if wins and not losses:
        head = f"{variant} wins over {control}"
    elif losses and not wins:
        head = f"{control} wins over {variant}"
    elif wins and losses:
        head = f"Trade-off between {variant} and {control}"
    else:
        head = f"No winner yet between {variant} and {control}"
    parts = [t.short for t in tests if t.better]
    same = [t.metric for t in tests if t.p_value is not None and not t.better]
    if same:
        parts.append(f"no difference in {_join(same)} yet")
    untested = [t.metric for t in tests if t.p_value is None]
    if untested:
        parts.append(f"too little data to compare {_join(untested)} yet ({MIN_SAMPLES} per variant needed)")
    return f"{head}: " + "; ".join(parts) + "."


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _no_nan(value: Any) -> Any:
    """JSON has no NaN: replace it with None throughout."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value


def _percent(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.0%}"


def _seconds(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.2f} s"


def _usd(x: float) -> str:
    return "—" if math.isnan(x) else f"${x:.5f}"


def experiment_report(turn_log: TurnLog, book: ExperimentBook, name: str) -> ExperimentReport:
    """The report of experiment ``name`` from the turns in the store (raises StoreUnavailable when it is down).

    Raises:
        ConfigError: the experiment is neither in the file nor in the store.
    """
    if name not in book.experiments and name not in turn_log.experiments_seen():
        known = ", ".join(sorted(set(book.experiments) | set(turn_log.experiments_seen()))) or "none"
        raise ConfigError(f"No experiment named {name!r} (known: {known})")
    experiment = book.experiments.get(name, name)
    return build_report(experiment, turn_log.experiment_turns(name), turn_log.experiment_sessions(name))


def experiment_choices(book: ExperimentBook, turn_log: TurnLog, wanted: str | None = None
                       ) -> tuple[list[str], str | None]:
    """The experiments the dashboard offers (in the file, then only in the store) and which to show: ``wanted`` if
    offered, else the running one, else the first."""
    names = list(book.experiments)
    try:
        names += [n for n in turn_log.experiments_seen() if n not in names]
    except StoreUnavailable:
        pass  # the dashboard says the store is down
    if wanted in names:
        return names, wanted
    return names, book.running.name if book.running else (names[0] if names else None)


def report_panel(turn_log: TurnLog, book: ExperimentBook, name: str | None) -> tuple[pd.DataFrame, str]:
    """The dashboard's table and verdict (Markdown) for an experiment; problems become the message."""
    if not name:
        return pd.DataFrame(), "No experiment defined yet: add one to `data/experiments.json`."
    try:
        report = experiment_report(turn_log, book, name)
    except ConfigError as exc:
        return pd.DataFrame(), f"⚠️ {exc.user_message()}"
    except StoreUnavailable as exc:
        return pd.DataFrame(), f"⚠️ {exc}"
    return report.table(), f"**Verdict:** {report.verdict}\n\n<sub>{' '.join(report.notes)}</sub>"
