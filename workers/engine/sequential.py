"""Verdicts on a paired ratio's interval, with intervals that stay valid when looked at after
every round and that cover the spread between runs.

The verdict rule (docs/ENGINE_INTERFACE.md, "verdict"): for a ratio interval [lo, hi] (variant /
baseline), a minimum saving s and an equivalence margin e,

- "lower" when hi < 1 - s, "higher" when lo > 1 + s;
- "no measurable difference" when 1 - e <= lo and hi <= 1 + e;
- "inconclusive" otherwise (the interval straddles a threshold), without an interval, or when a
  veto (``quality.veto_reasons``) breaks the pairing.

The interval. Each round gives one log ratio; their mean has a within-run standard error ``se``
(spread of the rounds / sqrt(rounds)). Two things widen it beyond the textbook t-interval:

- Repeated looks. The rounds stop as soon as every comparison is decided, so the interval is
  looked at after every round from the minimum to the maximum number of rounds: K planned looks.
  A 95% interval checked K times misses its target more than 5% of the time. Each look uses the
  Bonferroni share alpha / K of the error rate (two-sided t quantile, rounds - 1 degrees of
  freedom), so the chance that any look's interval misses the true ratio stays <= alpha: a
  verdict taken at whichever look stopped the rounds keeps its 5% error rate.
- The spread between runs. Ten runs of the same audit on one shared host moved a ratio by more
  than each run's interval claimed: the host's state (another tenant, cache and memory-bandwidth
  pressure) changes a ratio for a whole run, which no number of rounds within the run sees. A
  between-run standard deviation tau of the log ratio, per device class, calibrated by repeated
  runs of bench/paired.py (data/between_run.csv), is added in quadrature:
  half-width = q * sqrt(se^2 + tau^2).
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ALPHA = 0.05
DEFAULT_MIN_SAVING = 0.05
DEFAULT_EQUIVALENCE_MARGIN = 0.05
DECISIVE = ("lower", "higher", "no measurable difference")
BETWEEN_RUN_PATH = Path(__file__).with_name("data") / "between_run.csv"


def verdict(ci, *, min_saving: float = DEFAULT_MIN_SAVING, equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN,
            vetoed: bool = False) -> str:
    """The verdict on a ratio interval [lo, hi] (see the module doc)."""
    if vetoed or not ci or ci[0] is None or ci[1] is None:
        return "inconclusive"
    lo, hi = ci
    if hi < 1.0 - min_saving:
        return "lower"
    if lo > 1.0 + min_saving:
        return "higher"
    if 1.0 - equivalence_margin <= lo and hi <= 1.0 + equivalence_margin:
        return "no measurable difference"
    return "inconclusive"


def device_class(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


@lru_cache(maxsize=None)
def _between_run_table() -> dict:
    with BETWEEN_RUN_PATH.open(newline="", encoding="utf-8") as f:
        return {row["device_class"]: row for row in csv.DictReader(f)}


def between_run(device: str) -> dict:
    """The between-run component for ``device``'s class from data/between_run.csv: {"rel": tau,
    "status": "calibrated" | "provisional" | "default", "date": str, "runs": int, "how": str}."""
    row = _between_run_table()[device_class(device)]
    return {"rel": float(row["between_run_rel"]), "status": row["status"], "date": row["date"],
            "runs": int(row["runs"] or 0), "how": row["how"]}


@lru_cache(maxsize=256)
def t_quantile(alpha_two_sided: float, df: int) -> float:
    """Two-sided Student t quantile: P(|T_df| > q) = alpha_two_sided."""
    if df <= 0:
        return math.inf
    from scipy.stats import t  # noqa: PLC0415 (scipy comes with scikit-learn; imported only when used)

    return float(t.ppf(1.0 - alpha_two_sided / 2.0, df))


@dataclass(frozen=True)
class Plan:
    """How a comparison's intervals are built and judged during one schedule of rounds."""

    looks: int = 1  # planned looks at the interval (rounds min..max)
    between_run_rel: float = 0.0  # tau, on the log scale
    min_saving: float = DEFAULT_MIN_SAVING
    equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN
    alpha: float = ALPHA
    between_run_source: str = ""  # where tau came from, in words

    @classmethod
    def for_run(cls, *, device: str, options: dict, min_rounds: int, max_rounds: int) -> Plan:
        tau = options.get("between_run_rel")
        if tau is None:
            row = between_run(device)
            tau = row["rel"]
            source = f"{device_class(device)} between-run component {tau:g} (" + (
                f"{row['status']}, {row['runs']} runs on {row['date']}" if row["status"] != "default"
                else "a default, not calibrated") + "; workers/engine/data/between_run.csv)"
        else:
            source = f"between-run component {float(tau):g} set by the request"

        def opt(key, default):
            value = options.get(key)
            return default if value is None else float(value)

        return cls(looks=max(1, max_rounds - min_rounds + 1), between_run_rel=float(tau),
                   min_saving=opt("min_saving", DEFAULT_MIN_SAVING),
                   equivalence_margin=opt("equivalence_margin", DEFAULT_EQUIVALENCE_MARGIN),
                   between_run_source=source)

    def quantile(self, n: int) -> float:
        return t_quantile(self.alpha / self.looks, n - 1)

    def interval(self, ratios: list[float]) -> Interval:
        return Interval.of(ratios, self)

    def verdict(self, ci, vetoed: bool = False) -> str:
        return verdict(ci, min_saving=self.min_saving, equivalence_margin=self.equivalence_margin, vetoed=vetoed)

    def basis(self, n: int) -> dict:
        """What a verdict rests on, for the comparison entry's ``verdict_basis``."""
        q = self.quantile(n)
        looks = (f"alpha {self.alpha:g} split over {self.looks} planned looks (Bonferroni: {self.alpha / self.looks:.3g} "
                 "per look, one look after each round from the minimum to the maximum number of rounds)"
                 if self.looks > 1 else f"alpha {self.alpha:g}, one look")
        return {
            "min_saving": self.min_saving,
            "equivalence_margin": self.equivalence_margin,
            "alpha": self.alpha,
            "interval": (f"{n} paired rounds; t interval of the mean per-round log ratio ({n - 1} degrees of "
                         f"freedom, quantile {q:.3g}); sequential correction: {looks}; half-width "
                         f"q * sqrt(se^2 + tau^2) with tau the {self.between_run_source}"),
            "between_run_rel": self.between_run_rel,
            "looks": self.looks,
            "quantile": q if math.isfinite(q) else None,
        }


@dataclass(frozen=True)
class Interval:
    """A ratio's centre and interval from per-round ratios, under a Plan."""

    ratio: float
    ci: list | None
    se_log: float | None  # within-run standard error of the mean log ratio
    within_half: float | None  # q * se: the part of the half-width more rounds can shrink
    n: int

    @classmethod
    def of(cls, ratios: list[float], plan: Plan) -> Interval:
        logs = [math.log(r) for r in ratios if r > 0]
        if not logs:
            return cls(math.nan, None, None, None, 0)
        centre = statistics.fmean(logs)
        n = len(logs)
        if n < 2:
            return cls(math.exp(centre), None, None, None, n)
        se = statistics.stdev(logs) / math.sqrt(n)
        q = plan.quantile(n)
        half = q * math.sqrt(se ** 2 + plan.between_run_rel ** 2)
        return cls(math.exp(centre), [math.exp(centre - half), math.exp(centre + half)], se, q * se, n)
