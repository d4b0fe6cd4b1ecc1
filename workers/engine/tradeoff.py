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

from .carbon import world_g_per_kwh
from .constraints import (CONSTRAINT_OPTIONS, DEFAULT_EQUIVALENCE_MARGIN, DEFAULT_MAX_ACCURACY_DROP,
                          DEFAULT_MAX_METRIC_INCREASE_REL, DEFAULT_MIN_SAVING, LOWER, OPEN, SAME, constraints_for,
                          describe, failures, fidelity_kind, figures_of, paired_verdict)
from .quality import combine, grade_drift
from .serving.answer import level_of, level_text, serving_answer
from .slo import cheapest_within_slo  # noqa: F401 - part of this module's interface

J_PER_KWH = 3.6e6
DAYS_PER_YEAR = 365

DEFAULTS = {
    "max_accuracy_drop": DEFAULT_MAX_ACCURACY_DROP,
    "max_metric_increase_rel": DEFAULT_MAX_METRIC_INCREASE_REL,
    "min_saving": DEFAULT_MIN_SAVING,
    "equivalence_margin": DEFAULT_EQUIVALENCE_MARGIN,
    "queries_per_day": 1_000_000,
    "electricity_price_per_kwh": 0.15,
    "currency": "USD",
    # min_fidelity, max_kl_divergence, max_perplexity_increase_rel: None means the default for
    # the kind of fidelity measured (constraints.py says which and why)
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
            "figures": figures_of(ev),
        }
        if energy_key != "energy_j_per_inference":
            point[energy_key] = m.get(energy_key)
        paired = next((c for c in v.get("comparison") or [] if c.get("batch_size") == batch_size), None)
        if paired is not None:
            point.update(energy_ratio=paired.get("energy_ratio"), latency_ratio=paired.get("latency_ratio"),
                         energy_ratio_ci95=paired.get("energy_ratio_ci95"),
                         latency_ratio_ci95=paired.get("latency_ratio_ci95"),
                         verdict=paired.get("verdict"), comparison_grade=paired.get("quality_grade"),
                         veto_reasons=list(paired.get("veto_reasons") or []))
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


def _ratio_text(p: dict) -> str:
    ci = p.get("energy_ratio_ci95")
    ratio = p.get("energy_ratio")
    text = f"x{ratio:.2f}" if _finite(ratio) else "x?"
    if ci and all(_finite(x) for x in ci):
        text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text


def _excluded_entry(p: dict, broken: list[dict], batch_size) -> dict:
    first = broken[0]
    return {"recipe": p["recipe"], "batch_size": batch_size, "constraint": first["constraint"],
            "figure": first["figure"], "limit": first["limit"],
            "reason": "; ".join(b["reason"] for b in broken),
            "energy": f"{_ratio_text(p)} {p.get('verdict') or ''}".strip()}


def recommend_paired(points: list[dict], *, baseline: str = "baseline", constraints: list[dict] | None = None,
                     min_saving: float = DEFAULT_MIN_SAVING, equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN,
                     batch_size=None) -> dict:
    """The decision on paired rounds: among the variants that meet every quality constraint,
    the one with the lowest energy ratio whose whole 95% interval lies below 1 - ``min_saving``
    ("lower", VERDICTS.md). The grade qualifies the answer and is shown beside it; it vetoes
    nothing. Only a veto reason (what breaks the pairing itself) makes a comparison inconclusive.

    Returns ``{"recipe", "reason", "point", "verdict", "excluded"}``: verdict "recommended",
    "no measurable difference", "inconclusive" or "none"; ``excluded`` lists every variant a
    constraint excluded, with the figure and the limit that did it.
    """
    constraints = constraints or []
    base = next((p for p in points if p["recipe"] == baseline), None)
    if base is None:
        return {"recipe": None, "reason": f"no measured {baseline!r} to compare with", "point": None,
                "verdict": "none", "excluded": []}
    base_figures = base.get("figures") or {"value": base.get("value")}
    within, excluded = [], []
    for p in points:
        if p is base or "energy_ratio_ci95" not in p:
            continue
        p["verdict"] = paired_verdict(p.get("energy_ratio_ci95"), min_saving=min_saving,
                                      equivalence_margin=equivalence_margin, vetoes=p.get("veto_reasons") or ())
        broken = failures(constraints, p.get("figures") or {"value": p.get("value")}, base_figures)
        if broken:
            excluded.append(_excluded_entry(p, broken, batch_size))
        else:
            within.append(p)
    rule = f"a saving needs the whole 95% interval below x{1 - min_saving:.2f}"
    tail = _excluded_tail(excluded)
    lower = [p for p in within if p["verdict"] == LOWER]
    if lower:
        best = min(lower, key=lambda p: p["energy_ratio"])
        kept = ", ".join(_kept(c, best, base_figures) for c in constraints)
        reason = (f"energy {_ratio_text(best)} of {baseline} (95% interval, paired rounds; grade "
                  f"{best.get('comparison_grade') or '-'}){'; ' + kept if kept else ''}")
        return {"recipe": best["recipe"], "point": best, "verdict": "recommended", "reason": reason + tail,
                "excluded": excluded}
    # open: a saving of at least min_saving is still possible (the interval reaches below 1 - s)
    # or the pairing is broken; an interval wholly above 1 - s rules a worthwhile saving out
    open_ = [p for p in within if p["verdict"] == OPEN
             and (p.get("veto_reasons") or not p.get("energy_ratio_ci95") or p["energy_ratio_ci95"][0] < 1 - min_saving)]
    if open_:
        names = ", ".join(f"{p['recipe']} {_ratio_text(p)}" + (f" (pairing broken: {'; '.join(p['veto_reasons'])})"
                                                              if p.get("veto_reasons") else "") for p in open_)
        return {"recipe": None, "point": None, "verdict": "inconclusive", "excluded": excluded,
                "reason": f"{names}: a saving of {min_saving:.0%} or more is possible but not shown "
                          f"({rule}){tail}"}
    same = [p for p in within if p["verdict"] == SAME]
    if same:
        names = ", ".join(f"{p['recipe']} {_ratio_text(p)}" for p in same)
        return {"recipe": None, "point": None, "verdict": "no measurable difference", "excluded": excluded,
                "reason": f"{names}: within ±{equivalence_margin:.0%} of {baseline}{tail}"}
    if not within and not excluded:
        return {"recipe": None, "point": None, "verdict": "none", "excluded": [],
                "reason": f"no variant was compared with {baseline}"}
    return {"recipe": None, "point": None, "verdict": "none", "excluded": excluded,
            "reason": f"no variant within the constraints uses measurably less energy than {baseline} ({rule}){tail}"}


def _kept(c: dict, p: dict, base_figures: dict) -> str:
    from .constraints import _figure

    fig = _figure(c, p.get("figures") or {"value": p.get("value")}, base_figures)
    shown = "?" if fig is None else (f"{fig:+.1%}" if c["metric"].endswith("_rel") else f"{fig:.3g}")
    return f"{c['label']} {shown} (limit {describe(c)})"


def _excluded_tail(excluded: list[dict]) -> str:
    if not excluded:
        return ""
    return "; excluded by a constraint: " + ", ".join(
        f"{e['recipe']} (energy {e['energy']}): {e['reason']}" for e in excluded)


def decision_options(options: dict | None) -> dict:
    """The tradeoff options with their defaults; None and unknown keys dropped."""
    opts = dict(DEFAULTS)
    opts.update({k: v for k, v in (options or {}).items()
                 if (k in DEFAULTS or k in CONSTRAINT_OPTIONS) and v is not None})
    return opts


def audit_constraints(result: dict, options: dict | None = None) -> tuple[list[dict], str, bool, str | None]:
    """(the quality constraints, judged_by, higher_is_better, metric) of a result document."""
    metric, higher, judged_by = _judged_by(result)
    base = next((v for v in result.get("variants", []) if v.get("recipe") == "baseline"), None)
    evaluations = [v.get("evaluation") for v in result.get("variants", []) if v.get("evaluation")]
    ev = (base or {}).get("evaluation") or (evaluations[0] if evaluations else None)
    kind = fidelity_kind(ev, (result.get("model") or {}).get("task"))
    return constraints_for(judged_by, higher_is_better=higher, metric=metric, kind=kind,
                           options=decision_options(options)), judged_by, higher, metric


def build_tradeoff(result: dict, options: dict | None = None) -> dict:
    """The result document's ``tradeoff`` section: per batch size, the points, the Pareto frontier,
    the recommended variant, the variants a constraint excluded and the projected savings of the
    choice; every constraint applied (``constraints``); for generation, the cheapest
    configuration meeting the latency SLO within the same constraints."""
    opts = decision_options(options)
    carbon = result.get("carbon") or {}
    constraints, kind, higher_is_better, _ = audit_constraints(result, options)
    s, e = float(opts["min_saving"]), float(opts["equivalence_margin"])
    energy_key = _energy_key(result)
    batch_sizes = sorted({m["batch_size"] for v in result.get("variants", []) for m in v.get("measurements", [])})
    per_batch = []
    for bs in batch_sizes:
        points, metric, higher = _points(result, bs)
        entry = {"batch_size": bs, "metric": metric, "judged_by": kind, "higher_is_better": higher,
                 "energy_key": energy_key, "points": points, "excluded": []}
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
            rec = recommend_paired(points, constraints=constraints, min_saving=s, equivalence_margin=e, batch_size=bs)
            entry["excluded"] = rec["excluded"]
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
                       "min_fidelity": next((c["limit"] for c in constraints if c["name"] == "min_fidelity"
                                             and c["op"] == ">="), None),
                       "min_saving": s, "equivalence_margin": e},
        "constraints": constraints,
        "decision_rule": {"min_saving": s, "equivalence_margin": e, "interval": "95% paired ratio interval",
                          "text": f"a saving is claimed when the whole 95% interval of the paired energy ratio lies "
                                  f"below x{1 - s:.2f}; no measurable difference when it lies within "
                                  f"x{1 - e:.2f}-x{1 + e:.2f}; otherwise inconclusive"},
        "queries_per_day": float(opts["queries_per_day"]),
        "electricity_price_per_kwh": float(opts["electricity_price_per_kwh"]),
        "currency": str(opts["currency"]),
        "per_batch_size": per_batch,
    }
    if energy_key == "energy_j_per_output_token":
        doc["slo"] = cheapest_within_slo(result, ttft_ms_p95=(options or {}).get("slo_ttft_ms_p95"),
                                         tpot_ms_p95=(options or {}).get("slo_tpot_ms_p95"),
                                         constraints=constraints)
    if (result.get("scenario") or {}).get("kind") == "serving":
        doc["serving"] = serving_answer(result, slo={"ttft_ms": (options or {}).get("slo_ttft_ms_p95"),
                                                     "tpot_ms": (options or {}).get("slo_tpot_ms_p95")},
                                        constraints=constraints)
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


def audit_quality(result: dict) -> dict:
    """The audit's grade: the baseline's measurements, its drift, and the comparisons the verdict
    rests on (the recommended variant's, at every batch size where one is recommended)."""
    graded = []
    for v in result.get("variants", []):
        if v.get("recipe") == "baseline":
            graded.extend((m["quality_grade"], m.get("quality_reasons") or []) for m in v.get("measurements", [])
                          if m.get("quality_grade"))
            graded.extend((f["quality_grade"], [f"baseline serving at {level_text(level_of(f))}: {r}"
                                                for r in f.get("quality_reasons") or []])
                          for f in v.get("serving") or [] if f.get("quality_grade"))
    graded.append(grade_drift((result.get("drift") or {}).get("max_abs_rel_change")))
    for entry in (result.get("tradeoff") or {}).get("per_batch_size", []):
        for p in entry.get("points", []):
            if p["recipe"] == entry.get("recommended") and p.get("comparison_grade"):
                graded.append((p["comparison_grade"], [f"{p['recipe']} vs baseline at batch {entry['batch_size']}: "
                                                       f"grade {p['comparison_grade']}"]))
    cheapest = ((result.get("tradeoff") or {}).get("serving") or {}).get("cheapest")
    if cheapest and cheapest["recipe"] != "baseline":
        level = level_of(cheapest)
        key, value = next(iter(level.items()))
        v = next((v for v in result.get("variants", []) if v.get("recipe") == cheapest["recipe"]), {})
        entry = next((c for c in v.get("serving_comparison") or [] if c.get(key) == value), None)
        if entry and entry.get("quality_grade"):
            graded.append((entry["quality_grade"], [f"{cheapest['recipe']} vs baseline at {level_text(level)}: "
                                                    f"grade {entry['quality_grade']}"]))
    if not any(g for g, _ in graded[:-1]) and not result.get("variants"):
        return {"grade": None, "reasons": ["nothing was measured"]}
    grade, reasons = combine(*graded)
    return {"grade": grade, "reasons": reasons}


def format_tradeoff(tradeoff: dict) -> str:
    """Plain-text lines for the CLI summary."""
    lines = []
    applied = [f"{describe(c)} ({c['why']})" for c in tradeoff.get("constraints") or []]
    rule = (tradeoff.get("decision_rule") or {}).get("text")
    if applied:
        lines.append("constraints: " + "; ".join(applied))
    if rule:
        lines.append("decision rule: " + rule)
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
        for e in entry.get("excluded") or []:
            lines.append(f"  excluded: {e['recipe']}: {e['reason']}")
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
