"""Generation: the cheapest configuration (variant x batch size) whose TTFT p95 and TPOT p95 meet
the latency targets and whose quality meets the audit's constraints (constraints.py), the ones
that meet the targets but a constraint excluded (each with the figure that did), and whether the
runner-up is told apart from the cheapest. Pure Python.

The answer is read from the same figures the measurements table shows (each measurement's
``ttft_ms_p95``, ``tpot_ms_p95`` and ``energy_j_per_output_token``), so the two cannot disagree.
"""
from __future__ import annotations

import math

from .constraints import describe, failures, figures_of
from .frontier import within_run_rel, within_uncertainty


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _meets(cfg: dict, ttft_ms_p95, tpot_ms_p95) -> bool:
    return ((ttft_ms_p95 is None or (_finite(cfg["ttft_ms_p95"]) and cfg["ttft_ms_p95"] <= ttft_ms_p95))
            and (tpot_ms_p95 is None or (_finite(cfg["tpot_ms_p95"]) and cfg["tpot_ms_p95"] <= tpot_ms_p95)))


def _config(v: dict, m: dict) -> dict:
    return {"recipe": v["recipe"], "batch_size": m["batch_size"],
            "energy_j_per_output_token": m["energy_j_per_output_token"],
            "energy_uncertainty_rel": m.get("energy_uncertainty_rel"),
            "energy_within_run_rel": within_run_rel(m, "energy_j_per_output_token"),
            "ttft_ms_p95": m.get("ttft_ms_p95"), "tpot_ms_p95": m.get("tpot_ms_p95"),
            "quality_grade": m.get("quality_grade")}


def _paired_ci(result: dict, recipe: str, batch_size) -> list | None:
    v = next((v for v in result.get("variants", []) if v.get("recipe") == recipe), None)
    c = next((c for c in (v or {}).get("comparison") or [] if c.get("batch_size") == batch_size), None)
    ci = (c or {}).get("energy_ratio_ci95")
    return ci if ci and all(_finite(x) and x > 0 for x in ci) else None


def told_apart(result: dict, a: dict, b: dict) -> bool | None:
    """Whether configurations ``a`` and ``b`` of one audit differ in energy beyond their
    uncertainty. At one batch size the paired interval says it (against the baseline directly;
    between two variants, their two log intervals combined); across batch sizes the within-run
    uncertainty of each figure, never the meter's scale error, which both share. None: unknown."""
    if a["batch_size"] == b["batch_size"]:
        bs = a["batch_size"]
        ci_a, ci_b = _paired_ci(result, a["recipe"], bs), _paired_ci(result, b["recipe"], bs)
        if "baseline" in (a["recipe"], b["recipe"]) and (ci_a or ci_b):
            lo, hi = ci_a or ci_b
            return not (lo <= 1.0 <= hi)
        if ci_a and ci_b:  # two variants: the difference of two log ratios, half-widths combined
            centre = 0.5 * abs(math.log(ci_a[0] * ci_a[1]) - math.log(ci_b[0] * ci_b[1]))
            half = math.hypot(0.5 * math.log(ci_a[1] / ci_a[0]), 0.5 * math.log(ci_b[1] / ci_b[0]))
            return centre > half
    close = within_uncertainty(a["energy_j_per_output_token"], a.get("energy_within_run_rel"),
                               b["energy_j_per_output_token"], b.get("energy_within_run_rel"))
    return None if close is None else not close


def cheapest_within_slo(result: dict, *, ttft_ms_p95=None, tpot_ms_p95=None, constraints=None) -> dict:
    """The configuration with the lowest J per output token that meets the targets and the
    constraints. ``excluded``: each configuration that meets the targets but breaks a constraint,
    with the figure and the limit; ``reason``: one sentence naming the targets, the constraints
    applied, the answer and what was excluded."""
    constraints = constraints or []
    base = next((v for v in result.get("variants", []) if v.get("recipe") == "baseline"), None)
    base_figures = figures_of((base or {}).get("evaluation"))
    meeting, missed, excluded = [], [], []
    for v in result.get("variants", []):
        if v.get("status") != "succeeded":
            continue
        broken = [] if v is base else failures(constraints, figures_of(v.get("evaluation")), base_figures)
        for m in v.get("measurements", []):
            if not _finite(m.get("energy_j_per_output_token")):
                continue
            cfg = _config(v, m)
            if not _meets(cfg, ttft_ms_p95, tpot_ms_p95):
                missed.append(cfg)
            elif broken:
                excluded.append(dict(cfg, constraint=broken[0]["constraint"], figure=broken[0]["figure"],
                                     limit=broken[0]["limit"], reason="; ".join(b["reason"] for b in broken)))
            else:
                meeting.append(cfg)
    slo = {"ttft_ms_p95": ttft_ms_p95, "tpot_ms_p95": tpot_ms_p95,
           "constraints": [describe(c) for c in constraints],
           "excluded": [{k: e[k] for k in ("recipe", "batch_size", "constraint", "figure", "limit", "reason",
                                           "energy_j_per_output_token", "ttft_ms_p95", "tpot_ms_p95")}
                        for e in excluded]}
    target = " and ".join(f"{k.replace('_ms_p95', '').upper()} p95 <= {lim:g} ms" for k, lim in
                          (("ttft_ms_p95", ttft_ms_p95), ("tpot_ms_p95", tpot_ms_p95)) if lim is not None) \
        or "no latency target set"
    within = f" within {', '.join(slo['constraints'])}" if constraints else ""
    tail = ""
    if excluded:
        tail = "; meet the targets but excluded by a constraint: " + ", ".join(
            f"{e['recipe']} at batch {e['batch_size']} ({e['reason']})" for e in excluded)
    if not meeting:
        fastest = ""
        if not excluded:
            best_ttft = min((c["ttft_ms_p95"] for c in missed if _finite(c["ttft_ms_p95"])), default=None)
            best_tpot = min((c["tpot_ms_p95"] for c in missed if _finite(c["tpot_ms_p95"])), default=None)
            if best_ttft is not None and best_tpot is not None:
                fastest = f"; the fastest measured: TTFT p95 {best_ttft:.4g} ms, TPOT p95 {best_tpot:.4g} ms"
        return dict(slo, cheapest=None, reason=f"no configuration meets {target}{within}{fastest}{tail}")
    ranked = sorted(meeting, key=lambda c: c["energy_j_per_output_token"])
    best = ranked[0]
    close = ""
    if len(ranked) > 1 and told_apart(result, best, ranked[1]) is False:
        close = (f"; {ranked[1]['recipe']} at batch {ranked[1]['batch_size']} is within the measurement "
                 "uncertainty of it")
    return dict(slo, cheapest=best,
                reason=(f"cheapest meeting {target}{within}: {best['recipe']} at batch size {best['batch_size']}, "
                        f"{best['energy_j_per_output_token']:.4g} J per output token{close}{tail}"))
