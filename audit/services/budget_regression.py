"""Release budgets (issue 21): how much more a version may cost than its reference version.

A budget's ``max_energy_regression`` / ``max_latency_regression`` (a fraction: 0.05 = 5%) is
judged on the paired ratio new / reference of the audit's "reference" section, per batch size,
on its 95% interval, as every other limit is (services/budgets.py):
- fail when the whole interval lies above 1 + limit, pass when it lies wholly at or below it,
  inconclusive when 1 + limit lies inside it, or when no interval was computed, or (energy) when
  the comparison's veto reasons say the energy figures cannot carry a verdict;
- an audit with no reference version: the limit is "not applicable" (shown so; it never passes
  and never decides the verdict);
- a reference was asked for but the comparison was refused, failed, or its section was dropped
  as malformed: inconclusive, with the reason.
"""
from __future__ import annotations

import math

# budget field -> (limit name in results, ratio key, its interval key)
REGRESSION_LIMITS = [
    ("max_energy_regression", "energy_regression", "energy_ratio", "energy_ratio_ci95"),
    ("max_latency_regression", "latency_regression", "latency_ratio", "latency_ratio_ci95"),
]
REGRESSION_FIELDS = [f for f, *_ in REGRESSION_LIMITS]
UNIT = "ratio"
SUBJECT = "baseline"  # the audited version's baseline against the reference's


def _ratio(value: float) -> str:
    return f"×{value:.3g}"


def _row(budget_name, budget_id, limit, batch_size, value, threshold, passed, *, inconclusive=False, low=None,
         high=None, reason="", grade="", not_applicable=False) -> dict:
    return {
        "budget": budget_name, "budget_id": budget_id, "limit": limit, "variant": SUBJECT, "batch_size": batch_size,
        "value": value, "threshold": threshold, "unit": UNIT, "passed": passed, "estimated": False,
        "inconclusive": inconclusive, "quality_grade": grade, "low": low, "high": high, "reason": reason,
        "not_applicable": not_applicable,
    }


def judge_ratio(row: dict, ratio_key: str, interval_key: str, threshold: float, what: str,
                label: str) -> tuple[bool | None, bool, float | None, float | None, str]:
    """(passed, inconclusive, low, high, reason) of one paired ratio against ``threshold``."""
    value, interval = row.get(ratio_key), row.get(interval_key)
    limit = _ratio(threshold)
    if value is None or not math.isfinite(value):
        return None, True, None, None, f"{what} against {label}: inconclusive (no paired ratio at this batch size)"
    if not interval or len(interval) != 2 or not all(math.isfinite(x) for x in interval):
        return (None, True, value, value,
                f"{what} {_ratio(value)} vs {limit}: inconclusive (no 95% interval of the paired ratio)")
    low, high = interval
    figure = f"{what} {_ratio(value)} [{low:.3g}, {high:.3g}] against {label}"
    vetoes = (row.get("veto_reasons") or []) if ratio_key == "energy_ratio" else []
    if vetoes:
        return None, True, low, high, f"{figure} vs {limit}: inconclusive ({'; '.join(vetoes)})"
    if high <= threshold:
        return True, False, low, high, f"{figure} ≤ {limit}: pass (the whole 95% interval is within the limit)"
    if low > threshold:
        return False, False, low, high, f"{figure} > {limit}: fail (the whole 95% interval lies above the limit)"
    return None, True, low, high, f"{figure} vs {limit}: inconclusive (the limit lies inside the 95% interval)"


def regression_entries(budget, reference: dict | None, *, asked: bool) -> list[dict]:
    """One entry per regression limit the budget sets and per batch size compared."""
    out = []
    for budget_field, limit, ratio_key, interval_key in REGRESSION_LIMITS:
        allowed = getattr(budget, budget_field, None)
        if allowed is None:
            continue
        threshold = 1.0 + allowed
        common = (budget.name, budget.pk, limit)
        what = "energy" if ratio_key == "energy_ratio" else "latency"
        if reference is None and not asked:
            out.append(_row(*common, budget.batch_size, None, threshold, None, not_applicable=True,
                            reason="not applicable: this audit has no reference version to compare with"))
            continue
        if reference is None or reference.get("status") != "compared":
            why = ((reference or {}).get("reason") or (f"the comparison {reference.get('status')}" if reference
                   else "the comparison's result was not stored (see the warnings)"))
            out.append(_row(*common, budget.batch_size, None, threshold, None, inconclusive=True,
                            reason=f"inconclusive: no paired comparison with the reference ({why})"))
            continue
        label = reference.get("label") or "the reference"
        rows = [r for r in reference.get("per_batch_size") or [] if budget.batch_size in (None, r.get("batch_size"))]
        if not rows:
            out.append(_row(*common, budget.batch_size, None, threshold, None,
                            reason=f"not measured: batch {budget.batch_size} was not compared with the reference"))
        for r in sorted(rows, key=lambda r: r.get("batch_size") or 0):
            passed, inconclusive, low, high, reason = judge_ratio(r, ratio_key, interval_key, threshold, what, label)
            out.append(_row(*common, r.get("batch_size"), r.get(ratio_key), threshold, passed,
                            inconclusive=inconclusive, low=low, high=high, reason=reason,
                            grade=r.get("quality_grade") or ""))
    return out
