"""The energy / accuracy trade-off: Pareto frontier, the recommended variant under a team's
constraint, and projected savings at a query volume. Pure Python (no torch, no numpy), so the
CLI summary and the web pages use the same functions on a stored result document.

Conventions:
- a point is a dict with at least ``recipe``, ``energy_j_per_inference`` and ``value`` (the
  primary metric); ``higher_is_better`` says which way the metric points (accuracy: up;
  perplexity, MSE: down);
- the constraint: at most ``max_accuracy_drop`` lost in the metric's own units when higher is
  better (accuracy 0.01 = 1 point), at most ``max_metric_increase_rel`` relative increase when
  lower is better (perplexity, MSE: 0.01 = 1%);
- savings: one query = one sample, so energy per query is ``energy_j_per_sample``;
  facility energy = IT energy x PUE; kgCO2e = facility kWh x intensity (g/kWh) / 1000;
  cost = facility kWh x price per kWh.
"""

from __future__ import annotations

import math

J_PER_KWH = 3.6e6
DAYS_PER_YEAR = 365

DEFAULTS = {
    "max_accuracy_drop": 0.01,
    "max_metric_increase_rel": 0.01,
    "queries_per_day": 1_000_000,
    "electricity_price_per_kwh": 0.15,
    "currency": "USD",
}


# A saving smaller than this is not told apart from run-to-run noise, even on a quiet machine.
MIN_NOISE_FLOOR = 0.05


def noise_floor(drift: dict | None) -> float:
    """The smallest relative energy saving a recommendation may rest on: the baseline's own
    first-vs-last change during the audit (the ``drift`` entry), and at least 5%."""
    worst = (drift or {}).get("max_abs_rel_change")
    return max(MIN_NOISE_FLOOR, float(worst)) if worst is not None else MIN_NOISE_FLOOR


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _better_or_equal(a: float, b: float, higher_is_better: bool) -> bool:
    return a >= b if higher_is_better else a <= b


def dominates(p: dict, q: dict, *, higher_is_better: bool = True, energy_key: str = "energy_j_per_inference") -> bool:
    """``p`` costs no more energy than ``q`` and scores no worse, and is strictly better in one."""
    pe, qe = p[energy_key], q[energy_key]
    pv, qv = p["value"], q["value"]
    no_worse = pe <= qe and _better_or_equal(pv, qv, higher_is_better)
    strictly = pe < qe or (pv != qv and _better_or_equal(pv, qv, higher_is_better))
    return no_worse and strictly


def pareto_frontier(points: list[dict], *, higher_is_better: bool = True,
                    energy_key: str = "energy_j_per_inference") -> list[dict]:
    """The points no other point dominates, by increasing energy. Points without an energy or a
    value are left out."""
    usable = [p for p in points if _finite(p.get(energy_key)) and _finite(p.get("value"))]
    frontier = [p for p in usable
                if not any(dominates(q, p, higher_is_better=higher_is_better, energy_key=energy_key)
                           for q in usable if q is not p)]
    return sorted(frontier, key=lambda p: (p[energy_key], -p["value"] if higher_is_better else p["value"]))


def within_constraint(value: float, baseline_value: float, *, higher_is_better: bool,
                      max_accuracy_drop: float = DEFAULTS["max_accuracy_drop"],
                      max_metric_increase_rel: float = DEFAULTS["max_metric_increase_rel"]) -> bool:
    if higher_is_better:
        return value >= baseline_value - max_accuracy_drop - 1e-12
    return value <= baseline_value * (1.0 + max_metric_increase_rel) + 1e-12


def recommend(points: list[dict], *, baseline: str = "baseline", higher_is_better: bool = True,
              max_accuracy_drop: float = DEFAULTS["max_accuracy_drop"],
              max_metric_increase_rel: float = DEFAULTS["max_metric_increase_rel"],
              energy_key: str = "energy_j_per_inference", min_saving_rel: float = 0.0) -> dict:
    """The lowest-energy point whose metric stays within the constraint of the baseline's and
    whose saving exceeds ``min_saving_rel`` (the measurement noise, see ``noise_floor``): a
    variant that is cheaper only by noise is not recommended over the baseline.

    Returns ``{"recipe": str | None, "reason": str, "point": dict | None}``.
    """
    points = [p for p in points if _finite(p.get(energy_key)) and _finite(p.get("value"))]
    base = next((p for p in points if p["recipe"] == baseline), None)
    if base is None:
        return {"recipe": None, "reason": f"no measured and evaluated {baseline!r} with finite figures to compare with",
                "point": None}
    within = [p for p in points
              if within_constraint(p["value"], base["value"], higher_is_better=higher_is_better,
                                    max_accuracy_drop=max_accuracy_drop,
                                    max_metric_increase_rel=max_metric_increase_rel)]
    ceiling = base[energy_key] * (1.0 - min_saving_rel)
    ok = [p for p in within if p is base or p[energy_key] < ceiling]
    best = min(ok, key=lambda p: (p[energy_key], -p["value"] if higher_is_better else p["value"]))
    limit = (f"at most {max_accuracy_drop:g} lost" if higher_is_better
             else f"at most {max_metric_increase_rel:.0%} higher")
    if best["recipe"] == base["recipe"] and any(p[energy_key] < base[energy_key] for p in within if p is not base):
        reason = (f"no variant saves more than the measurement noise ({min_saving_rel:.0%}) over {baseline} "
                  f"with its metric {limit}")
    elif best["recipe"] == base["recipe"]:
        reason = f"no variant uses less energy than {baseline} with its metric {limit}"
    else:
        saved = 1.0 - best[energy_key] / base[energy_key] if base[energy_key] else 0.0
        reason = (f"lowest energy with the metric {limit}: {saved:.1%} less energy per inference, "
                  f"metric {best['value']:.4g} vs {base['value']:.4g}")
    return {"recipe": best["recipe"], "reason": reason, "point": best}


def yearly_footprint(j_per_query: float, *, queries_per_day: float, intensity_g_per_kwh: float,
                     pue: float = 1.0, price_per_kwh: float = 0.0) -> dict:
    """Facility energy, emissions and cost of serving ``queries_per_day`` for a year."""
    kwh = j_per_query * queries_per_day * DAYS_PER_YEAR / J_PER_KWH * pue
    return {"kwh_per_year": kwh, "kgco2e_per_year": kwh * intensity_g_per_kwh / 1000.0,
            "cost_per_year": kwh * price_per_kwh}


def projected_savings(*, baseline_j_per_query: float, variant_j_per_query: float, queries_per_day: float,
                      intensity_g_per_kwh: float, pue: float = 1.0, price_per_kwh: float = 0.0,
                      currency: str = "USD") -> dict:
    """Yearly energy, emissions and cost of the baseline and the variant, and what is saved."""
    site = {"queries_per_day": queries_per_day, "intensity_g_per_kwh": intensity_g_per_kwh, "pue": pue,
            "price_per_kwh": price_per_kwh}
    base, var = yearly_footprint(baseline_j_per_query, **site), yearly_footprint(variant_j_per_query, **site)
    return {
        "queries_per_day": queries_per_day,
        "intensity_g_per_kwh": intensity_g_per_kwh,
        "pue": pue,
        "price_per_kwh": price_per_kwh,
        "currency": currency,
        "baseline": base,
        "variant": var,
        "saved": {k: base[k] - var[k] for k in base},
    }


def _points(result: dict, batch_size: int) -> tuple[list[dict], str | None, bool]:
    points = []
    metric = None
    higher = True
    base_m = None
    for v in result.get("variants", []):
        if v.get("recipe") == "baseline" and v.get("status") == "succeeded":
            base_m = next((m for m in v.get("measurements", []) if m["batch_size"] == batch_size), None)
    for v in result.get("variants", []):
        if v.get("status") != "succeeded":
            continue
        m = next((m for m in v.get("measurements", []) if m["batch_size"] == batch_size), None)
        if m is None:
            continue
        ev = v.get("evaluation") or {}
        if ev:
            metric = ev.get("metric", metric)
            higher = bool(ev.get("higher_is_better", True))
        point = {
            "recipe": v["recipe"],
            "energy_j_per_inference": m.get("energy_j_per_inference"),
            "energy_j_per_sample": m.get("energy_j_per_sample"),
            "latency_ms_p50": m.get("latency_ms_p50"),
            "energy_estimated": bool(m.get("energy_estimated")),
            "value": ev.get("value") if ev else None,
        }
        if base_m:
            point["energy_ratio"] = _ratio(m.get("energy_j_per_inference"), base_m.get("energy_j_per_inference"))
            point["latency_ratio"] = _ratio(m.get("latency_ms_p50"), base_m.get("latency_ms_p50"))
        points.append(point)
    return points, metric, higher


def _ratio(a, b):
    return (a / b) if a is not None and b else None


def build_tradeoff(result: dict, options: dict | None = None) -> dict:
    """The result document's ``tradeoff`` section: per batch size, the points, the Pareto frontier,
    the recommended variant and the projected savings of choosing it."""
    opts = dict(DEFAULTS)
    opts.update({k: v for k, v in (options or {}).items() if k in DEFAULTS and v is not None})
    carbon = result.get("carbon") or {}
    batch_sizes = sorted({m["batch_size"] for v in result.get("variants", []) for m in v.get("measurements", [])})
    per_batch = []
    for bs in batch_sizes:
        points, metric, higher = _points(result, bs)
        entry = {"batch_size": bs, "metric": metric, "higher_is_better": higher, "points": points}
        if metric is None:
            entry.update(frontier=[], recommended=None,
                         recommended_reason="no dataset was evaluated: accuracy unknown, so nothing is recommended",
                         savings=None)
        else:
            entry["frontier"] = [p["recipe"] for p in pareto_frontier(points, higher_is_better=higher)]
            entry["noise_floor"] = noise_floor(result.get("drift"))
            rec = recommend(points, higher_is_better=higher, max_accuracy_drop=float(opts["max_accuracy_drop"]),
                            max_metric_increase_rel=float(opts["max_metric_increase_rel"]),
                            min_saving_rel=entry["noise_floor"])
            entry["recommended"] = rec["recipe"]
            entry["recommended_reason"] = rec["reason"]
            base = next((p for p in points if p["recipe"] == "baseline"), None)
            if rec["point"] is not None and base is not None and base.get("energy_j_per_sample") is not None:
                entry["savings"] = projected_savings(
                    baseline_j_per_query=base["energy_j_per_sample"],
                    variant_j_per_query=rec["point"]["energy_j_per_sample"],
                    queries_per_day=float(opts["queries_per_day"]),
                    intensity_g_per_kwh=float(carbon.get("intensity_g_per_kwh", 475.0)),
                    pue=float(carbon.get("pue", 1.0)),
                    price_per_kwh=float(opts["electricity_price_per_kwh"]),
                    currency=str(opts["currency"]),
                )
            else:
                entry["savings"] = None
        per_batch.append(entry)
    return {
        "constraint": {"max_accuracy_drop": float(opts["max_accuracy_drop"]),
                       "max_metric_increase_rel": float(opts["max_metric_increase_rel"])},
        "queries_per_day": float(opts["queries_per_day"]),
        "electricity_price_per_kwh": float(opts["electricity_price_per_kwh"]),
        "currency": str(opts["currency"]),
        "per_batch_size": per_batch,
    }


def format_tradeoff(tradeoff: dict) -> str:
    """Plain-text lines for the CLI summary."""
    lines = []
    for entry in tradeoff.get("per_batch_size", []):
        head = f"trade-off at batch size {entry['batch_size']}"
        if entry.get("metric"):
            arrow = "higher is better" if entry["higher_is_better"] else "lower is better"
            head += f" ({entry['metric']}, {arrow})"
        lines.append(head + ":")
        for p in entry["points"]:
            ratio = p.get("energy_ratio")
            value = "-" if p.get("value") is None else f"{p['value']:.4g}"
            mark = " *" if p["recipe"] in (entry.get("frontier") or []) else ""
            energy = f"energy x{ratio:.3f}" if ratio is not None else "energy -"
            lines.append(f"  {p['recipe']:<28} {energy}")
            lines[-1] += f"  latency x{p['latency_ratio']:.3f}" if p.get("latency_ratio") is not None else ""
            lines[-1] += f"  {entry.get('metric') or 'metric'} {value}{mark}"
        if entry.get("frontier"):
            lines.append(f"  Pareto frontier (*): {', '.join(entry['frontier'])}")
        lines.append(f"  recommended: {entry.get('recommended') or 'none'} ({entry.get('recommended_reason', '')})")
        s = entry.get("savings")
        if s and entry.get("recommended") != "baseline":
            cur = s["currency"]
            lines.append(
                f"  at {s['queries_per_day']:,.0f} queries/day: saves {s['saved']['kwh_per_year']:.4g} kWh/year, "
                f"{s['saved']['kgco2e_per_year']:.4g} kgCO2e/year, {s['saved']['cost_per_year']:.4g} {cur}/year "
                f"(at {s['price_per_kwh']:g} {cur}/kWh)"
            )
    return "\n".join(lines)
