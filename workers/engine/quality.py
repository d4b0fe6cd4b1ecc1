"""Quality grades: how far a figure can be trusted, A (best) to D, with the reasons.

A grade is the worst of the grades its factors give; each factor that lowers it adds a reason
with the figure that did so, so a reviewer sees why, not only a letter. Pure Python, no torch:
the web side grades stored v1 results with the same rules.

Factors of a measurement:
- the 95% interval of the mean latency, relative to the mean (``latency_ci95_rel``), over
  window means spread across the audit's paired rounds: within 2% A, 5% B, 15% C, else D;
- the energy method: a hardware counter (nvml-counter, rapl) A, sampled power B, an estimate C
  (an attribution, never better than C), a GPU estimate D;
- contention (another process on the GPU) C; a MIG slice C;
- windows shorter than ten updates of the meter's counter: the counter's quantisation is then
  more than ~10% of a window, C; shorter than two updates, D;
- no energy at all, or active energy clamped at zero: D.

Factors of a paired comparison: the 95% interval of the variant/baseline ratio (half-width of
the log-ratio interval), the same thresholds, and the worse of the two sides' measurement grades.

Factors of an audit: the baseline's drift between its first and last round (5% B, 15% C, 50% D)
and the grades its verdict rests on.
"""

from __future__ import annotations

import math

GRADES = ("A", "B", "C", "D")
# Verdicts (recommendations, budget pass/fail) rest on evidence graded at least this well.
MIN_VERDICT_GRADE = "C"

CI_STEPS = ((0.02, "A"), (0.05, "B"), (0.15, "C"))
DRIFT_STEPS = ((0.05, "A"), (0.15, "B"), (0.50, "C"))
METHOD_GRADE = {
    "nvml-counter": "A",
    "rapl": "A",
    "nvml-power-sampling": "B",
    "estimate-tdp": "C",
    "estimate-gpu-tdp": "D",
}


def worst(*grades: str | None) -> str:
    present = [g for g in grades if g in GRADES]
    return max(present, key=GRADES.index) if present else "A"


def at_least(grade: str | None, threshold: str = MIN_VERDICT_GRADE) -> bool:
    """True when ``grade`` is ``threshold`` or better."""
    return grade in GRADES and GRADES.index(grade) <= GRADES.index(threshold)


def _step(value: float | None, steps) -> str:
    if value is None or not math.isfinite(value):
        return "D"
    for limit, grade in steps:
        if value <= limit:
            return grade
    return "D"


class _Grader:
    def __init__(self):
        self.grade = "A"
        self.reasons: list[str] = []

    def lower(self, grade: str, reason: str) -> None:
        if grade != "A":
            self.reasons.append(f"{grade}: {reason}")
        self.grade = worst(self.grade, grade)

    def result(self) -> tuple[str, list[str]]:
        return self.grade, self.reasons


def grade_measurement(m: dict) -> tuple[str, list[str]]:
    g = _Grader()
    rel = m.get("latency_ci95_rel")
    if rel is None and m.get("latency_ci95_ms") is not None and m.get("latency_ms_mean"):
        rel = m["latency_ci95_ms"] / m["latency_ms_mean"]
    if rel is None:
        g.lower("D", "no confidence interval: a single call was all the time cap allowed")
    else:
        grade = _step(rel, CI_STEPS)
        g.lower(grade, f"95% interval of the mean latency is ±{rel:.1%}"
                + (" (time cap reached before the target)" if "time-cap-reached" in (m.get("flags") or []) else ""))
    method = m.get("energy_method") or ""
    grade = METHOD_GRADE.get(method, "C")
    if grade != "A":
        kind = "estimated" if m.get("energy_estimated") else "sampled"
        g.lower(grade, f"energy {kind} ({method}), not read from a hardware counter")
    flags = m.get("flags") or []
    if any(f.startswith("contended") for f in flags):
        g.lower("C", "another process used the device during the measurement")
    if any(f.startswith("mig") for f in flags):
        g.lower("C", "measured on a MIG slice: the counter covers the whole GPU")
    if "zero-energy" in flags:
        g.lower("D", "the meter read no energy")
    if "active-energy-negative-clamped" in flags:
        g.lower("D", "energy below the idle baseline (active energy clamped at 0)")
    resolution = m.get("meter_resolution_s")
    window = m.get("window_s")
    if resolution and window:
        updates = window / resolution
        if updates < 2:
            g.lower("D", f"windows of {window:g} s are shorter than two updates of the meter ({resolution:g} s)")
        elif updates < 10:
            g.lower("C", f"windows of {window:g} s span only {updates:.0f} updates of the meter ({resolution:g} s)")
    return g.result()


def veto_reasons(m: dict) -> list[str]:
    """What breaks a measurement as evidence for any verdict, whatever its interval says: no
    energy read, active energy clamped at zero, or windows shorter than one update of the
    meter (the reading then is the counter's quantisation, not the work). Each reason names
    the figure. Everything else that lowers a grade (a wide interval, an estimated method,
    drift) only qualifies a verdict: the interval already carries it."""
    reasons = []
    flags = m.get("flags") or []
    energy = m.get("energy_j_per_inference")
    if "zero-energy" in flags or (isinstance(energy, (int, float)) and energy <= 0):
        reasons.append("the meter read no energy")
    if "active-energy-negative-clamped" in flags:
        reasons.append("energy below the idle baseline (active energy clamped at 0)")
    resolution, window = m.get("meter_resolution_s"), m.get("window_s")
    if resolution and window and window < resolution:
        reasons.append(f"windows of {window:g} s are shorter than one update of the meter ({resolution:g} s)")
    return reasons


def grade_ratio(ci95: list | tuple | None, *sides: str | None) -> tuple[str, list[str]]:
    """Grade of a paired ratio from its 95% interval and the grades of the two measurements."""
    g = _Grader()
    if not ci95 or ci95[0] is None or ci95[1] is None or ci95[0] <= 0:
        g.lower("D", "too few paired rounds for an interval")
    else:
        half = (math.log(ci95[1]) - math.log(ci95[0])) / 2
        g.lower(_step(half, CI_STEPS), f"95% interval of the ratio is ±{half:.1%} (from paired rounds)")
    side = worst(*sides)
    if side != "A":
        g.lower(side, f"the measurements compared are graded {side}")
    return g.result()


def grade_drift(max_abs_rel_change: float | None) -> tuple[str, list[str]]:
    g = _Grader()
    if max_abs_rel_change is not None:
        g.lower(_step(max_abs_rel_change, DRIFT_STEPS),
                f"the baseline moved by {max_abs_rel_change:.0%} between its first and last round")
    return g.result()


def combine(*graded: tuple[str, list[str]]) -> tuple[str, list[str]]:
    grade = worst(*(g for g, _ in graded))
    reasons: list[str] = []
    for _, rs in graded:
        for r in rs:
            if r not in reasons:
                reasons.append(r)
    return grade, reasons
