"""Energy against latency over (batch size x GPU power limit): the Pareto frontier and the
cheapest setting that meets a latency target. Pure Python (no torch, no NVML), so the
worker, the engine and the tests can all use it.

Zeus's GlobalPowerLimitOptimizer picks one power limit for a training job from (energy,
time) per limit, e.g. the lowest limit within a slowdown factor (MaxSlowdownConstraint).
An inference audit has a second knob, the batch size, and a latency target rather than a
slowdown factor: so each variant's points are (batch size, power limit) settings, the
frontier is the settings no other setting beats on both energy and latency, and the pick
is the cheapest setting whose p95 latency meets the target.
"""
from __future__ import annotations

import math


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def power_limit_steps(min_w: float, default_w: float, n: int = 4) -> list[float]:
    """``n`` power limits from ``default_w`` down to ``min_w``, evenly spaced, whole watts,
    default first (the sweep starts where the GPU normally runs). Never below the minimum;
    ``n`` = 1 or a minimum at or above the default gives the default alone."""
    if not (_finite(min_w) and _finite(default_w)) or default_w <= 0:
        raise ValueError(f"power limits must be positive numbers (min {min_w!r}, default {default_w!r})")
    n = int(n)
    if n < 1:
        raise ValueError("at least one power-limit step")
    if n == 1 or min_w >= default_w:
        return [float(default_w)]
    span = default_w - min_w
    steps: list[float] = []
    for i in range(n):
        w = float(default_w) if i == 0 else float(round(default_w - i * span / (n - 1)))
        w = min(max(w, math.ceil(min_w)), float(default_w))
        if w not in steps:
            steps.append(w)
    return steps


def energy_key_of(measurements: list[dict]) -> str:
    """Generation results compare J per output token; forward results J per sample (one
    inference is one call of a whole batch, so per sample is what compares across batch
    sizes)."""
    if any(_finite(m.get("energy_j_per_output_token")) for m in measurements):
        return "energy_j_per_output_token"
    return "energy_j_per_sample"


def latency_key_of(measurements: list[dict], energy_key: str) -> str:
    """Generation: TPOT p95 (one decode step of the batch). Forward: the call's p95; in
    throughput mode (no per-call percentiles) the mean time per call."""
    if energy_key == "energy_j_per_output_token":
        return "tpot_ms_p95"
    if any(_finite(m.get("latency_ms_p95")) for m in measurements):
        return "latency_ms_p95"
    return "latency_ms_mean"


def pareto(points: list[dict], energy_key: str = "energy", latency_key: str = "latency") -> list[dict]:
    """Points no other point beats on both energy and latency (no worse in both, better in
    one), by increasing energy. Points without both figures are left out."""
    usable = [p for p in points if _finite(p.get(energy_key)) and _finite(p.get(latency_key))]

    def dominates(a, b):
        return (a[energy_key] <= b[energy_key] and a[latency_key] <= b[latency_key]
                and (a[energy_key] < b[energy_key] or a[latency_key] < b[latency_key]))

    front = [p for p in usable if not any(dominates(q, p) for q in usable if q is not p)]
    return sorted(front, key=lambda p: (p[energy_key], p[latency_key]))


def within_run_rel(m: dict, energy_key: str) -> float | None:
    """The within-run (statistical) relative uncertainty of a measurement's ``energy_key``: the
    spread of its windows, without the meter's method / scale error. Two points of one audit on
    one meter share that scale error (a CPU estimate's ±81% moves every figure together), so it
    cancels in their ratio and must not be counted when they are compared. None when unknown.

    J per output token is a difference (request - prefill) over the tokens: its own uncertainty
    is the method's and the statistical part in quadrature (generation.py), so the statistical
    part is what remains after the method's is taken out. An older result that recorded no
    method part is read as generation.py reads it: its whole uncertainty as within-run."""
    u_method = m.get("energy_uncertainty_method_rel")
    if energy_key == "energy_j_per_output_token" and _finite(m.get("energy_j_per_output_token_uncertainty_rel")):
        u_out = m["energy_j_per_output_token_uncertainty_rel"]
        return math.sqrt(max(0.0, u_out ** 2 - u_method ** 2)) if _finite(u_method) else float(u_out)
    if _finite(m.get("energy_uncertainty_stat_rel")):
        return float(m["energy_uncertainty_stat_rel"])
    if not _finite(u_method) and _finite(m.get("energy_uncertainty_rel")):
        return float(m["energy_uncertainty_rel"])
    return None


def within_uncertainty(energy_a: float, u_a: float | None, energy_b: float, u_b: float | None) -> bool | None:
    """Whether two energies of one audit on one meter are within each other's within-run 95%
    uncertainty: |ln(b / a)| <= 1.96 x the combined log standard uncertainty (the ratio's
    uncertainty is multiplicative; a relative u is read as ln(1 + u)). None when either
    uncertainty is unknown: the shared scale error says nothing about the two points' difference."""
    if not (_finite(u_a) and _finite(u_b) and _finite(energy_a) and _finite(energy_b)) or energy_a <= 0 or energy_b <= 0:
        return None
    s = math.hypot(math.log1p(u_a), math.log1p(u_b))
    return abs(math.log(energy_b / energy_a)) <= 1.96 * s


def _point(m: dict, energy_key: str, latency_key: str) -> dict:
    return {"batch_size": m.get("batch_size"), "power_limit_w": m.get("power_limit_w"),
            "energy": m.get(energy_key), "latency": m.get(latency_key),
            "energy_uncertainty_rel": m.get("energy_uncertainty_rel"),
            "energy_within_run_rel": within_run_rel(m, energy_key),
            "quality_grade": m.get("quality_grade"),
            "throttle_reasons": m.get("throttle_reasons")}


def _setting(p: dict) -> str:
    limit = f"{p['power_limit_w']:g} W" if _finite(p.get("power_limit_w")) else "the power limit as found"
    return f"batch size {p['batch_size']} at {limit}"


def cheapest_meeting(points: list[dict], target_ms: float | None, *, latency_key: str,
                     target_key: str, unit: str) -> tuple[dict | None, str]:
    """(the cheapest point whose latency meets ``target_ms``, a sentence saying so or why
    none does). Without a target: the cheapest point overall."""
    usable = [p for p in points if _finite(p.get("energy"))]
    if not usable:
        return None, "no setting has an energy figure"
    if target_ms is None:
        ok = usable
        target = "no latency target set"
    elif latency_key != target_key:
        return None, (f"the target is on {target_key} but these measurements have only {latency_key} "
                      "(throughput mode measures no per-call percentiles); no setting can be checked against it")
    else:
        ok = [p for p in usable if _finite(p.get("latency")) and p["latency"] <= target_ms]
        target = f"{target_key} <= {target_ms:g} ms"
    if not ok:
        fastest = min((p for p in usable if _finite(p.get("latency"))), key=lambda p: p["latency"], default=None)
        tail = f"; the fastest, {_setting(fastest)}, measured {fastest['latency']:.4g} ms" if fastest else ""
        return None, f"no setting meets {target}{tail}"
    ranked = sorted(ok, key=lambda p: (p["energy"], p["latency"] if _finite(p.get("latency")) else math.inf))
    best = ranked[0]
    sentence = (f"cheapest meeting {target}: {_setting(best)}, {best['energy']:.4g} {unit}")
    if len(ranked) > 1:
        runner = ranked[1]
        # within-run uncertainty only: the meter's scale error is common to both and cancels
        if within_uncertainty(best["energy"], best.get("energy_within_run_rel"),
                              runner["energy"], runner.get("energy_within_run_rel")):
            sentence += f"; {_setting(runner)} is within the measurement uncertainty of it (within-run)"
    return best, sentence


def build_frontier(result: dict, options: dict | None = None) -> dict:
    """The ``frontier`` section of a swept result document: per succeeded variant, every
    (batch size, power limit) point of ``measurements`` + ``sweep_measurements``, its Pareto
    frontier, and the cheapest point meeting the latency target (options
    ``latency_target_ms_p95`` for forward results, ``slo_tpot_ms_p95`` for generation)."""
    options = options or {}
    section = {"variants": []}
    for v in result.get("variants", []):
        if v.get("status") != "succeeded":
            continue
        ms = list(v.get("measurements") or []) + list(v.get("sweep_measurements") or [])
        if not ms:
            continue
        energy_key = energy_key_of(ms)
        latency_key = latency_key_of(ms, energy_key)
        generation = energy_key == "energy_j_per_output_token"
        target_key = "tpot_ms_p95" if generation else "latency_ms_p95"
        target = options.get("slo_tpot_ms_p95" if generation else "latency_target_ms_p95")
        target = float(target) if _finite(target) else None
        unit = "J per output token" if generation else "J per sample"
        points = sorted((_point(m, energy_key, latency_key) for m in ms),
                        key=lambda p: (p["batch_size"] or 0, -(p["power_limit_w"] or 0)))
        front = pareto(points)
        best, reason = cheapest_meeting(points, target, latency_key=latency_key, target_key=target_key, unit=unit)
        section["variants"].append({
            "recipe": v.get("recipe"), "energy_key": energy_key, "latency_key": latency_key,
            "target": {"key": target_key, "limit_ms": target},
            "points": points,
            "pareto": [{"batch_size": p["batch_size"], "power_limit_w": p["power_limit_w"]} for p in front],
            "cheapest": best, "reason": reason,
        })
    return section
