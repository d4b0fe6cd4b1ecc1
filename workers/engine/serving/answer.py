"""The answer of a serving audit (issue 20): which variant at which load level is cheapest within
the SLO, how sure we are, and the frontier. Pure Python, a function of the variants' ``serving``
figures and ``serving_comparison`` entries, so the worker derives it again from checked figures.

- A configuration is a variant at a load level. It **meets the SLO** when its TTFT p95 and TPOT
  p95 (over the requests completed in its steady windows) are within the targets.
- Variants that break a quality constraint (``constraints.py``, the same as the trade-off) are
  excluded, with the figure that excluded them.
- The **cheapest** is the lowest J per output token among those that meet the SLO. Where a
  variant is cheapest at a level at which the baseline also meets the SLO, the claim rests on
  their paired ratio at that level: unless its whole 95% interval lies below 1 - min_saving
  ("lower"), the answer is the baseline at that level and says why. Between load levels there is
  no pairing: two configurations are told apart by the spread of their rounds (the within-run
  uncertainty), never by the meter's scale error, which both share.
- When none meets the SLO: the **nearest**, the configuration whose worst p95 / target is the
  smallest, and by how much it misses each target.
- The **frontier**: the configurations no other beats on both J per output token and TPOT p95.
"""

from __future__ import annotations

import math
import statistics

from ..constraints import describe, failures, figures_of
from ..frontier import pareto, within_uncertainty
from ..sequential import t_quantile

TARGETS = (("ttft_ms_p95", "ttft_ms", "TTFT"), ("tpot_ms_p95", "tpot_ms", "TPOT"))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def level_of(figures: dict) -> dict:
    return {"concurrency": figures["concurrency"]} if figures.get("concurrency") is not None else \
        {"request_rate": figures["request_rate"]}


def level_text(level: dict) -> str:
    return f"concurrency {level['concurrency']}" if level.get("concurrency") is not None else \
        f"{level['request_rate']:g} requests/s"


def within_run_rel(values: list) -> float | None:
    """Half-width of the 95% t-interval of the mean of the rounds' J per output token, relative."""
    values = [v for v in values or [] if _finite(v) and v > 0]
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return t_quantile(0.05, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)) / mean


def _config(v: dict, f: dict) -> dict:
    return {"recipe": v["recipe"], **level_of(f), "energy_j_per_output_token": f["energy_j_per_output_token"],
            "energy_j_per_request": f.get("energy_j_per_request"),
            "energy_within_run_rel": within_run_rel(f.get("round_energy_j_per_output_token")),
            "energy_uncertainty_rel": f.get("energy_uncertainty_rel"),
            "ttft_ms_p95": f.get("ttft_ms_p95"), "tpot_ms_p95": f.get("tpot_ms_p95"),
            "itl_ms_p95": f.get("itl_ms_p95"), "output_tokens_per_s": f.get("output_tokens_per_s"),
            "goodput_requests_per_s": f.get("goodput_requests_per_s"), "quality_grade": f.get("quality_grade")}


def misses(cfg: dict, slo: dict) -> list[dict]:
    """Each target the configuration misses: the figure, the target, and the ratio of the two."""
    out = []
    for key, target_key, name in TARGETS:
        target = slo.get(target_key)
        if target is None:
            continue
        value = cfg.get(key)
        if value is None and key == "tpot_ms_p95":
            continue  # one-token requests have no TPOT: they meet its target (figures.Slo.met)
        if not _finite(value) or value > target:
            out.append({"target": name, "figure": value, "limit": target,
                        "over": value / target if _finite(value) and target > 0 else None})
    return out


def _paired(result: dict, recipe: str, level: dict) -> dict | None:
    v = next((v for v in result.get("variants", []) if v.get("recipe") == recipe), None)
    key, value = next(iter(level.items()))
    return next((c for c in (v or {}).get("serving_comparison") or [] if c.get(key) == value), None)


def _baseline_measured(result: dict, level: dict) -> bool:
    base = next((v for v in result.get("variants", []) if v.get("recipe") == "baseline"), None)
    key, value = next(iter(level.items()))
    return any(f.get(key) == value for f in (base or {}).get("serving") or [])


def _slo_text(slo: dict) -> str:
    parts = [f"{name} p95 <= {slo[k]:g} ms" for _, k, name in TARGETS if slo.get(k) is not None]
    return " and ".join(parts) or "no latency target set"


def serving_answer(result: dict, *, slo: dict | None = None, constraints=None) -> dict | None:
    """The answer (see the module doc); None when the result has no serving figures."""
    slo = {k: v for k, v in (slo or {}).items() if v is not None}
    constraints = constraints or []
    variants = [v for v in result.get("variants", []) if v.get("status") == "succeeded" and v.get("serving")]
    if not variants:
        return None
    base = next((v for v in result.get("variants", []) if v.get("recipe") == "baseline"), None)
    base_figures = figures_of((base or {}).get("evaluation"))
    configs, excluded = [], []
    for v in variants:
        broken = [] if v is base else failures(constraints, figures_of(v.get("evaluation")), base_figures)
        for f in v["serving"]:
            if not _finite(f.get("energy_j_per_output_token")):
                continue
            cfg = _config(v, f)
            cfg["misses"] = misses(cfg, slo)
            if broken:
                excluded.append(dict(cfg, reason="; ".join(b["reason"] for b in broken)))
            else:
                configs.append(cfg)
    frontier = pareto([dict(c, energy=c["energy_j_per_output_token"], latency=c["tpot_ms_p95"])
                       for c in configs if _finite(c["tpot_ms_p95"])])
    answer = {"slo": {"ttft_ms_p95": slo.get("ttft_ms"), "tpot_ms_p95": slo.get("tpot_ms")},
              "constraints": [describe(c) for c in constraints],
              "configurations": configs, "excluded": excluded,
              "frontier": [{"recipe": c["recipe"], **level_of(c)} for c in
                           sorted(frontier, key=lambda c: c["tpot_ms_p95"])],
              "cheapest": None, "nearest": None, "evidence": None}
    meeting = sorted((c for c in configs if not c["misses"]), key=lambda c: c["energy_j_per_output_token"])
    target = _slo_text(slo)
    tail = ("; excluded by a constraint: " + ", ".join(f"{e['recipe']} ({e['reason']})"
                                                       for e in _distinct(excluded))) if excluded else ""
    if not meeting:
        nearest = min(configs, key=lambda c: max((m["over"] or math.inf) for m in c["misses"]), default=None)
        answer["nearest"] = nearest
        if nearest is None:
            answer["reason"] = f"no configuration could be judged{tail}"
            return answer
        by = ", ".join(f"{m['target']} p95 {m['figure']:.4g} ms against {m['limit']:g} ms (x{m['over']:.2f})"
                       if m["over"] is not None else f"{m['target']} p95 not measured (no request completed)"
                       for m in nearest["misses"])
        answer["reason"] = (f"no configuration meets {target}; the nearest is {nearest['recipe']} at "
                            f"{level_text(level_of(nearest))}, which misses by {by}{tail}")
        return answer
    best, passed_over = _choose(result, meeting)
    answer["evidence"], note = _evidence(result, best, meeting)
    if passed_over:
        first = passed_over[0]
        ci = first.get("energy_ratio_ci95")
        shown = f" (paired energy ratio x{ci[0]:.2f}-x{ci[1]:.2f})" if ci else ""
        more = f" and {len(passed_over) - 1} more" if len(passed_over) > 1 else ""
        answer["evidence"]["passed_over"] = passed_over
        note = (f"; {first['recipe']} at {level_text(level_of(first))}{more} measured lower but no saving over "
                f"the baseline at that level is shown by the paired rounds{shown}, so it is not the answer") + note
    answer["cheapest"] = best
    answer["reason"] = (f"cheapest meeting {target}: {best['recipe']} at {level_text(level_of(best))}, "
                        f"{best['energy_j_per_output_token']:.4g} J per output token{note}{tail}")
    return answer


def _choose(result: dict, meeting: list[dict]) -> tuple[dict, list[dict]]:
    """The cheapest configuration that may be claimed, and those passed over on the way: a
    variant whose baseline at the same level also meets the SLO is claimed only with a paired
    "lower" verdict there; the baseline, or a variant whose level the baseline does not meet (or
    was not measured at: said in the evidence), stands on its own figures."""
    passed_over = []
    for cfg in meeting:
        if cfg["recipe"] == "baseline":
            return cfg, passed_over
        level = level_of(cfg)
        base_here = any(c["recipe"] == "baseline" and level_of(c) == level for c in meeting)
        paired = _paired(result, cfg["recipe"], level)
        if not base_here or (paired is not None and paired.get("verdict") == "lower"):
            return cfg, passed_over
        passed_over.append({"recipe": cfg["recipe"], **level,
                            "energy_ratio_ci95": (paired or {}).get("energy_ratio_ci95"),
                            "verdict": (paired or {}).get("verdict")})
    return meeting[0], passed_over  # not reached: the baseline meets wherever a variant was passed over


def _distinct(excluded: list[dict]) -> list[dict]:
    seen, out = set(), []
    for e in excluded:
        if e["recipe"] not in seen:
            seen.add(e["recipe"])
            out.append(e)
    return out


def _evidence(result: dict, best: dict, meeting: list[dict]) -> tuple[dict, str]:
    """What the answer's lead rests on: against the baseline at its level (paired), and against
    the runner-up (paired at one level, the rounds' spread across levels)."""
    level = level_of(best)
    evidence, note = {}, ""
    if best["recipe"] != "baseline":
        paired = _paired(result, best["recipe"], level)
        if paired is not None and paired.get("energy_ratio_ci95"):
            ci = paired["energy_ratio_ci95"]
            evidence.update(energy_ratio_ci95=ci, verdict=paired.get("verdict"), rounds=paired.get("rounds"))
            note = f"; against the baseline at this level (paired): x{ci[0]:.2f}-x{ci[1]:.2f}, {paired.get('verdict')}"
        elif not _baseline_measured(result, level):
            evidence["unpaired"] = "the baseline was not measured at this level"
            note = "; not paired: the baseline was not measured at this level"
        else:
            note = "; the baseline does not meet the targets at this level"
    others = [c for c in meeting[meeting.index(best) + 1:]
              if not (c["recipe"] == "baseline" and level_of(c) == level and best["recipe"] != "baseline")]
    if others:
        runner = others[0]
        close = within_uncertainty(best["energy_j_per_output_token"], best["energy_within_run_rel"],
                                   runner["energy_j_per_output_token"], runner["energy_within_run_rel"])
        evidence["runner_up"] = {"recipe": runner["recipe"], **level_of(runner), "told_apart":
                                 None if close is None else not close}
        if close:
            note += (f"; {runner['recipe']} at {level_text(level_of(runner))} is within the measurement "
                    "uncertainty of it")
    return evidence, note
