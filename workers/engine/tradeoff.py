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

from .quality import MIN_VERDICT_GRADE, at_least, combine, grade_drift
from .carbon import world_g_per_kwh

J_PER_KWH = 3.6e6
DAYS_PER_YEAR = 365

DEFAULTS = {
    "max_accuracy_drop": 0.01,
    "max_metric_increase_rel": 0.01,
    "queries_per_day": 1_000_000,
    "electricity_price_per_kwh": 0.15,
    "currency": "USD",
    "min_fidelity": 0.98,
}


# A saving smaller than this is not told apart from run-to-run noise, even on a quiet machine.
MIN_NOISE_FLOOR = 0.05
# A paired saving must be statistically clear (its whole 95% interval below 1) and at least this
# large: with several variants and batch sizes, a few-percent "saving" whose interval just misses 1
# is as likely an order effect of the schedule as a real one.
MIN_PRACTICAL_SAVING = 0.05


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


def _energy_key(result: dict) -> str:
    generation = (result.get("scenario") or {}).get("kind") == "generation"
    return "energy_j_per_output_token" if generation else "energy_j_per_inference"


def _judged_by(result: dict) -> tuple[str | None, bool, str]:
    """(metric, higher is better, kind): the labelled metric where a dataset was evaluated, else
    the task's fidelity to the baseline (``kind`` "fidelity"), else nothing."""
    evaluations = [v.get("evaluation") for v in result.get("variants", []) if v.get("status") == "succeeded"]
    evaluations = [e for e in evaluations if e]
    labelled = next((e for e in evaluations if e.get("metric") and e.get("value") is not None), None)
    if labelled is not None:
        return labelled["metric"], bool(labelled.get("higher_is_better", True)), "labelled"
    fid = next((e for e in evaluations if e.get("fidelity_metric") and e.get("fidelity_value") is not None), None)
    if fid is not None:
        return fid["fidelity_metric"], bool(fid.get("fidelity_higher_is_better", True)), "fidelity"
    return None, True, "none"


def _points(result: dict, batch_size: int) -> tuple[list[dict], str | None, bool]:
    metric, higher, kind = _judged_by(result)
    energy_key = _energy_key(result)
    points = []
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
        value = ev.get("value") if kind == "labelled" else ev.get("fidelity_value") if kind == "fidelity" else None
        point = {
            "recipe": v["recipe"],
            "energy_j_per_inference": m.get("energy_j_per_inference"),
            "energy_j_per_sample": m.get("energy_j_per_sample"),
            "latency_ms_p50": m.get("latency_ms_p50"),
            "energy_estimated": bool(m.get("energy_estimated")),
            "quality_grade": m.get("quality_grade"),
            "value": value,
        }
        if energy_key != "energy_j_per_inference":
            point[energy_key] = m.get(energy_key)
        paired = next((c for c in v.get("comparison") or [] if c.get("batch_size") == batch_size), None)
        if paired is not None:
            point.update(energy_ratio=paired.get("energy_ratio"), latency_ratio=paired.get("latency_ratio"),
                         energy_ratio_ci95=paired.get("energy_ratio_ci95"),
                         latency_ratio_ci95=paired.get("latency_ratio_ci95"),
                         verdict=paired.get("verdict"), comparison_grade=paired.get("quality_grade"))
        elif base_m:
            point["energy_ratio"] = _ratio(m.get("energy_j_per_inference"), base_m.get("energy_j_per_inference"))
            point["latency_ratio"] = _ratio(m.get("latency_ms_p50"), base_m.get("latency_ms_p50"))
        points.append(point)
    return points, metric, higher


def _ratio(a, b):
    return (a / b) if a is not None and b else None


def within_fidelity(value: float, *, higher_is_better: bool, min_fidelity: float) -> bool:
    """Fidelity to the baseline kept: agreement / cosine at least ``min_fidelity``, or a relative
    error of at most ``1 - min_fidelity``."""
    return value >= min_fidelity - 1e-12 if higher_is_better else value <= (1.0 - min_fidelity) + 1e-12


def recommend_paired(points: list[dict], *, baseline: str = "baseline", higher_is_better: bool = True,
                     fits=None, min_grade: str = MIN_VERDICT_GRADE) -> dict:
    """The variant whose paired energy ratio is measurably below 1 (its whole 95% interval), whose
    comparison is graded ``min_grade`` or better, and whose metric ``fits`` the constraint; the one
    with the lowest ratio. A cheaper-looking variant whose interval holds 1 is "no measurable
    difference", one whose evidence is graded too low is "inconclusive": neither is recommended.

    Returns ``{"recipe", "reason", "point", "verdict"}`` with verdict "recommended",
    "no measurable difference", "inconclusive" or "none".
    """
    base = next((p for p in points if p["recipe"] == baseline), None)
    if base is None or not _finite(base.get("value")):
        return {"recipe": None, "reason": f"no measured and evaluated {baseline!r} to compare with", "point": None,
                "verdict": "none"}
    candidates = [p for p in points if p is not base and _finite(p.get("value")) and fits(p["value"], base["value"])]
    measurably = [p for p in candidates if p.get("verdict") == "lower"]
    lower = [p for p in measurably if p["energy_ratio"] <= 1.0 - MIN_PRACTICAL_SAVING]
    graded = [p for p in lower if at_least(p.get("comparison_grade"), min_grade)]
    if graded:
        best = min(graded, key=lambda p: p["energy_ratio"])
        lo, hi = best["energy_ratio_ci95"]
        return {"recipe": best["recipe"], "point": best, "verdict": "recommended",
                "reason": (f"energy x{best['energy_ratio']:.2f} of {baseline} (95% interval x{lo:.2f}-x{hi:.2f}, "
                           f"paired rounds, grade {best['comparison_grade']}), metric {best['value']:.4g} vs "
                           f"{base['value']:.4g}")}
    if lower:
        names = ", ".join(f"{p['recipe']} (grade {p.get('comparison_grade')})" for p in lower)
        return {"recipe": None, "point": None, "verdict": "inconclusive",
                "reason": f"{names} measured lower, but on evidence graded below {min_grade}: inconclusive"}
    if measurably:
        names = ", ".join(f"{p['recipe']} x{p['energy_ratio']:.2f}" for p in measurably)
        return {"recipe": None, "point": None, "verdict": "no measurable difference",
                "reason": (f"{names}: measurably lower, but by less than {MIN_PRACTICAL_SAVING:.0%}, "
                           "which is not worth a change")}
    cheaper_looking = [p for p in candidates if _finite(p.get("energy_ratio")) and p["energy_ratio"] < 1.0]
    if cheaper_looking:
        names = ", ".join(f"{p['recipe']} x{p['energy_ratio']:.2f}" for p in cheaper_looking)
        return {"recipe": None, "point": None, "verdict": "no measurable difference",
                "reason": f"no measurable difference: {names}, but each 95% interval holds 1"}
    return {"recipe": None, "point": None, "verdict": "none",
            "reason": f"no variant within the constraint uses measurably less energy than {baseline}"}


def _fits(kind: str, higher: bool, opts: dict):
    if kind == "fidelity":
        return lambda value, base_value: within_fidelity(value, higher_is_better=higher,
                                                         min_fidelity=float(opts["min_fidelity"]))
    return lambda value, base_value: within_constraint(
        value, base_value, higher_is_better=higher, max_accuracy_drop=float(opts["max_accuracy_drop"]),
        max_metric_increase_rel=float(opts["max_metric_increase_rel"]))


def build_tradeoff(result: dict, options: dict | None = None) -> dict:
    """The result document's ``tradeoff`` section: per batch size, the points, the Pareto frontier,
    the recommended variant and the projected savings of choosing it; for generation, the cheapest
    configuration meeting the latency SLO."""
    opts = dict(DEFAULTS)
    opts.update({k: v for k, v in (options or {}).items() if k in DEFAULTS and v is not None})
    carbon = result.get("carbon") or {}
    _, _, kind = _judged_by(result)
    energy_key = _energy_key(result)
    batch_sizes = sorted({m["batch_size"] for v in result.get("variants", []) for m in v.get("measurements", [])})
    per_batch = []
    for bs in batch_sizes:
        points, metric, higher = _points(result, bs)
        entry = {"batch_size": bs, "metric": metric, "judged_by": kind, "higher_is_better": higher,
                 "energy_key": energy_key, "points": points}
        if metric is None:
            entry.update(frontier=[], recommended=None, verdict="none",
                         recommended_reason="no dataset was evaluated and no fidelity to the baseline is known: "
                                            "accuracy unknown, so nothing is recommended",
                         savings=None)
            per_batch.append(entry)
            continue
        entry["frontier"] = [p["recipe"] for p in pareto_frontier(points, higher_is_better=higher,
                                                                  energy_key=energy_key)]
        paired = any("energy_ratio_ci95" in p for p in points)
        if paired:
            rec = recommend_paired(points, higher_is_better=higher, fits=_fits(kind, higher, opts))
        else:  # a v1 result: no paired rounds, the baseline's drift is the noise floor
            entry["noise_floor"] = noise_floor(result.get("drift"))
            rec = recommend(points, higher_is_better=higher, max_accuracy_drop=float(opts["max_accuracy_drop"]),
                            max_metric_increase_rel=float(opts["max_metric_increase_rel"]),
                            min_saving_rel=entry["noise_floor"])
            rec["verdict"] = "recommended" if rec["recipe"] not in (None, "baseline") else "none"
        entry["recommended"] = rec["recipe"]
        entry["verdict"] = rec["verdict"]
        entry["recommended_reason"] = rec["reason"]
        entry["savings"] = _savings(points, rec, carbon, opts)
        per_batch.append(entry)
    doc = {
        "constraint": {"max_accuracy_drop": float(opts["max_accuracy_drop"]),
                       "max_metric_increase_rel": float(opts["max_metric_increase_rel"]),
                       "min_fidelity": float(opts["min_fidelity"])},
        "queries_per_day": float(opts["queries_per_day"]),
        "electricity_price_per_kwh": float(opts["electricity_price_per_kwh"]),
        "currency": str(opts["currency"]),
        "per_batch_size": per_batch,
    }
    if energy_key == "energy_j_per_output_token":
        doc["slo"] = cheapest_within_slo(result, ttft_ms_p95=(options or {}).get("slo_ttft_ms_p95"),
                                         tpot_ms_p95=(options or {}).get("slo_tpot_ms_p95"),
                                         fits=_fits(kind, _judged_by(result)[1], opts) if kind != "none" else None)
    return doc


def _savings(points, rec, carbon, opts) -> dict | None:
    base = next((p for p in points if p["recipe"] == "baseline"), None)
    point = rec.get("point")
    if point is None or base is None or base.get("energy_j_per_sample") is None:
        return None
    ratio = point.get("energy_ratio")
    if "energy_ratio_ci95" in point and _finite(ratio):
        variant_j = base["energy_j_per_sample"] * ratio  # the paired ratio, not two drifting absolutes
    else:
        variant_j = point["energy_j_per_sample"]
    return projected_savings(
        baseline_j_per_query=base["energy_j_per_sample"], variant_j_per_query=variant_j,
        queries_per_day=float(opts["queries_per_day"]),
        intensity_g_per_kwh=float(carbon.get("intensity_g_per_kwh", world_g_per_kwh())), pue=float(carbon.get("pue", 1.0)),
        price_per_kwh=float(opts["electricity_price_per_kwh"]), currency=str(opts["currency"]))


def cheapest_within_slo(result: dict, *, ttft_ms_p95=None, tpot_ms_p95=None, fits=None) -> dict:
    """The configuration (variant x batch size) with the lowest J per output token whose TTFT p95
    and TPOT p95 meet the SLO (and whose quality fits, where known); says when none does."""
    base = next((v for v in result.get("variants", []) if v.get("recipe") == "baseline"), None)
    base_value = _judged_value(base) if base else None
    configs, missed = [], []
    for v in result.get("variants", []):
        if v.get("status") != "succeeded":
            continue
        value = _judged_value(v)
        if fits is not None and value is not None and base_value is not None and not fits(value, base_value):
            continue
        for m in v.get("measurements", []):
            if not _finite(m.get("energy_j_per_output_token")):
                continue
            cfg = {"recipe": v["recipe"], "batch_size": m["batch_size"],
                   "energy_j_per_output_token": m["energy_j_per_output_token"],
                   "energy_uncertainty_rel": m.get("energy_uncertainty_rel"),
                   "ttft_ms_p95": m.get("ttft_ms_p95"), "tpot_ms_p95": m.get("tpot_ms_p95"),
                   "quality_grade": m.get("quality_grade")}
            ok = ((ttft_ms_p95 is None or (_finite(cfg["ttft_ms_p95"]) and cfg["ttft_ms_p95"] <= ttft_ms_p95))
                  and (tpot_ms_p95 is None or (_finite(cfg["tpot_ms_p95"]) and cfg["tpot_ms_p95"] <= tpot_ms_p95)))
            (configs if ok else missed).append(cfg)
    slo = {"ttft_ms_p95": ttft_ms_p95, "tpot_ms_p95": tpot_ms_p95}
    target = " and ".join(f"{k.replace('_ms_p95', '').upper()} p95 <= {lim:g} ms" for k, lim in slo.items()
                          if lim is not None) or "no latency target set"
    if not configs:
        best_ttft = min((c["ttft_ms_p95"] for c in missed if _finite(c["ttft_ms_p95"])), default=None)
        best_tpot = min((c["tpot_ms_p95"] for c in missed if _finite(c["tpot_ms_p95"])), default=None)
        fastest = (f"; the fastest measured: TTFT p95 {best_ttft:.4g} ms, TPOT p95 {best_tpot:.4g} ms"
                   if best_ttft is not None and best_tpot is not None else "")
        return dict(slo, cheapest=None, reason=f"no configuration meets {target}{fastest}")
    best = min(configs, key=lambda c: c["energy_j_per_output_token"])
    runner = sorted(configs, key=lambda c: c["energy_j_per_output_token"])[1:2]
    close = ""
    if runner:
        u = max(best.get("energy_uncertainty_rel") or 0.0, runner[0].get("energy_uncertainty_rel") or 0.0)
        if runner[0]["energy_j_per_output_token"] <= best["energy_j_per_output_token"] * (1 + 2 * u):
            close = (f"; {runner[0]['recipe']} at batch {runner[0]['batch_size']} is within the measurement "
                     "uncertainty of it")
    return dict(slo, cheapest=best,
                reason=(f"cheapest meeting {target}: {best['recipe']} at batch size {best['batch_size']}, "
                        f"{best['energy_j_per_output_token']:.4g} J per output token{close}"))


def _judged_value(variant: dict):
    ev = (variant or {}).get("evaluation") or {}
    if ev.get("metric") and ev.get("value") is not None:
        return ev["value"]
    return ev.get("fidelity_value")


def audit_quality(result: dict) -> dict:
    """The audit's grade: the baseline's measurements, its drift, and the comparisons the verdict
    rests on (the recommended variant's, at every batch size where one is recommended)."""
    graded = []
    for v in result.get("variants", []):
        if v.get("recipe") == "baseline":
            graded.extend((m["quality_grade"], m.get("quality_reasons") or []) for m in v.get("measurements", [])
                          if m.get("quality_grade"))
    graded.append(grade_drift((result.get("drift") or {}).get("max_abs_rel_change")))
    for entry in (result.get("tradeoff") or {}).get("per_batch_size", []):
        for p in entry.get("points", []):
            if p["recipe"] == entry.get("recommended") and p.get("comparison_grade"):
                graded.append((p["comparison_grade"], [f"{p['recipe']} vs baseline at batch {entry['batch_size']}: "
                                                       f"grade {p['comparison_grade']}"]))
    if not any(g for g, _ in graded[:-1]) and not result.get("variants"):
        return {"grade": None, "reasons": ["nothing was measured"]}
    grade, reasons = combine(*graded)
    return {"grade": grade, "reasons": reasons}


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
            ci = p.get("energy_ratio_ci95")
            if ci:
                energy += f" [{ci[0]:.3f}-{ci[1]:.3f}] {p.get('verdict', '')}, grade {p.get('comparison_grade')}"
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
    slo = tradeoff.get("slo")
    if slo:
        lines.append(f"latency SLO: {slo['reason']}")
    return "\n".join(lines)
