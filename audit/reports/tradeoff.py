"""Accuracy against energy: the Pareto frontier, the recommended variant, and what a choice
saves in a year. Pure functions over plain values; no database, no Django."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from workers.engine import tradeoff as engine_tradeoff

DEFAULT_MAX_ACCURACY_DROP_PTS = 1.0
ACCURACY_METRICS = ("accuracy", "top1", "top-1", "acc")


@dataclass(frozen=True)
class Point:
    """One variant at the report's reference batch size."""

    key: str  # the variant's recipe (unique within an audit)
    energy_j: float | None  # J per inference
    accuracy_pct: float | None = None  # percent, 0-100; None when not evaluated
    latency_ms: float | None = None
    is_baseline: bool = False


@dataclass(frozen=True)
class Recommendation:
    key: str | None  # the recommended variant's key; None: nothing recommended
    reason: str
    accuracy_known: bool
    max_drop_pts: float = DEFAULT_MAX_ACCURACY_DROP_PTS
    candidates: tuple[str, ...] = field(default=())


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def accuracy_pct(value) -> float | None:
    """Evaluations store accuracy as a fraction (0-1) or a percentage; the report speaks percent."""
    if not finite(value):
        return None
    return float(value) * 100.0 if 0.0 <= value <= 1.0 else float(value)


def pick_accuracy(evaluations) -> float | None:
    """The accuracy-like metric of a variant's evaluations (objects or dicts with metric/value)."""
    for ev in evaluations:
        metric = (getattr(ev, "metric", None) or (ev.get("metric") if isinstance(ev, dict) else "") or "").lower()
        value = getattr(ev, "value", None) if not isinstance(ev, dict) else ev.get("value")
        if metric in ACCURACY_METRICS or metric.startswith("accuracy"):
            return accuracy_pct(value)
    return None


def _as_engine_points(points: list[Point]) -> list[dict]:
    """The engine's trade-off functions work on plain dicts; accuracy in percent is the metric."""
    return [
        {"recipe": p.key, "energy_j_per_inference": p.energy_j, "value": p.accuracy_pct, "point": p}
        for p in points
        if finite(p.energy_j) and finite(p.accuracy_pct)
    ]


def pareto_frontier(points: list[Point]) -> list[Point]:
    """The points no other point beats on both axes (less or equal energy and more or equal
    accuracy, strictly better on one), sorted by energy. Points without energy or accuracy
    take no part. Same rule as the engine's CLI summary (workers.engine.tradeoff)."""
    return [d["point"] for d in engine_tradeoff.pareto_frontier(_as_engine_points(points))]


def recommend(points: list[Point], *, max_drop_pts: float = DEFAULT_MAX_ACCURACY_DROP_PTS,
              min_saving_rel: float = 0.0) -> Recommendation:
    """The least energy per inference among the variants that lose at most `max_drop_pts`
    points of accuracy against the baseline and save more than `min_saving_rel` (the
    measurement noise: a saving within it is no saving). Without the baseline's accuracy
    nothing is recommended: the accuracy price of a saving is unknown, and inventing one is worse."""
    baseline = next((p for p in points if p.is_baseline), None)
    if baseline is None or not finite(baseline.energy_j):
        return Recommendation(None, "No measured baseline to compare against.", accuracy_known=False, max_drop_pts=max_drop_pts)
    if not finite(baseline.accuracy_pct):
        return Recommendation(
            None,
            "Accuracy is unknown (no evaluation on a dataset), so no variant is recommended: "
            "the energy figures alone cannot say what a saving costs.",
            accuracy_known=False,
            max_drop_pts=max_drop_pts,
        )
    engine_points = _as_engine_points(points)
    choice = engine_tradeoff.recommend(engine_points, baseline=baseline.key, max_accuracy_drop=max_drop_pts,
                                       min_saving_rel=min_saving_rel)
    best: Point = choice["point"]["point"]
    eligible = [
        d["point"] for d in engine_points
        if engine_tradeoff.within_constraint(d["value"], baseline.accuracy_pct, higher_is_better=True,
                                             max_accuracy_drop=max_drop_pts)
    ]
    if best.key == baseline.key and any(p.energy_j < baseline.energy_j for p in eligible if p is not baseline):
        reason = (f"No variant saves more than the measurement noise ({min_saving_rel:.0%}: the baseline's own "
                  f"change between its first and last measurement, at least 5%) while losing at most "
                  f"{max_drop_pts:g} point(s) of accuracy; the baseline stays.")
    elif best.key == baseline.key:
        reason = f"No variant uses less energy than the baseline while losing at most {max_drop_pts:g} point(s) of accuracy."
    else:
        saved = 1 - best.energy_j / baseline.energy_j if baseline.energy_j else 0.0
        drop = baseline.accuracy_pct - best.accuracy_pct
        price = (f"for {drop:.2f} points of accuracy lost (limit {max_drop_pts:g})" if drop > 0
                 else f"with no accuracy lost ({-drop:+.2f} points)")
        reason = f"{best.key} uses {saved:.0%} less energy per inference than the baseline {price}."
    return Recommendation(best.key, reason, accuracy_known=True, max_drop_pts=max_drop_pts,
                          candidates=tuple(p.key for p in eligible))


def relative_change(new, old) -> float | None:
    """(new - old) / old; None when either is missing or old is 0."""
    if not finite(new) or not finite(old) or old == 0:
        return None
    return (float(new) - float(old)) / abs(float(old))


@dataclass(frozen=True)
class Savings:
    kwh_per_year: float
    kgco2e_per_year: float
    cost_per_year: float


def yearly_footprint(
    *, j_per_query: float, queries_per_day: float, pue: float, grid_g_per_kwh: float, price_per_kwh: float
) -> Savings | None:
    """Energy, carbon and cost of serving `queries_per_day` for a year at `j_per_query`
    (device energy; the facility's PUE multiplies it, as the engine does for carbon)."""
    if not all(finite(v) for v in (j_per_query, queries_per_day, pue, grid_g_per_kwh, price_per_kwh)):
        return None
    year = engine_tradeoff.yearly_footprint(
        j_per_query, queries_per_day=queries_per_day, intensity_g_per_kwh=grid_g_per_kwh, pue=pue,
        price_per_kwh=price_per_kwh,
    )
    return Savings(**year)
