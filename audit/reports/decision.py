"""The report's answer for a schema-2 audit: the recommendation and the latency-SLO answer, each
with the constraints it applied and every variant (or configuration) a constraint excluded.

The answer is re-derived here with the engine's own code (workers/engine/tradeoff.py) from the
stored rows the page shows: the measurements table, the paired comparisons and the evaluations.
So an audit stored before the current rules (grade vetoes, a hidden fidelity floor) is judged by
them too, a limit asked on the page is applied to the same figures, and the SLO answer cannot
disagree with the measurements table beside it. Pure functions over model rows; no queries
beyond the rows already loaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from workers.engine.constraints import CONSTRAINT_OPTIONS, describe
from workers.engine.tradeoff import build_tradeoff

from ..services.results import MEASUREMENT_FIELDS, OPTIONAL_MEASUREMENT_FIELDS
from . import formatting as units

SLO_OPTIONS = ("slo_ttft_ms_p95", "slo_tpot_ms_p95")
LOWER_IS_BETTER = ("mse", "mae", "perplexity", "nll_per_token")
# the engine's sentence and the list beside it say the same: the page shows the list
_EXCLUDED_TAIL = "; excluded by a constraint: "
_SLO_EXCLUDED_TAIL = "; meet the targets but excluded by a constraint: "


@dataclass
class Verdict:
    """The report's first line: what to do, how precise the evidence is, and what it rests on."""

    kind: str  # "recommended", "no measurable difference", "inconclusive", "none"
    headline: str
    reason: str
    key: str | None = None  # the recommended variant
    paired: bool = False
    slo: str = ""  # generation: the cheapest configuration meeting the latency SLO
    grade: str = ""  # the grade of the comparison the answer rests on, shown beside it
    constraints: list = field(default_factory=list)  # [{"text", "why"}]
    rule: str = ""  # the decision rule (minimum saving, equivalence margin)
    excluded: list = field(default_factory=list)  # [{"recipe", "reason", "energy", ...}]
    slo_excluded: list = field(default_factory=list)
    frontier: list = field(default_factory=list)  # the Pareto frontier's recipes
    judged_by: str = ""  # "labelled", "fidelity" or "none"
    # each variant's verdict on its paired energy ratio under the rule applied above (an audit
    # stored under an older rule keeps its old words in `comparison`; the table shows these)
    variant_verdicts: dict = field(default_factory=dict)

    @property
    def css(self) -> str:
        return {"recommended": "yes", "inconclusive": "inconclusive"}.get(self.kind, "none")


def _measurement_doc(m) -> dict:
    doc = {"batch_size": m.batch_size, "quality_grade": m.quality_grade, "flags": list(m.flags or [])}
    for spec in MEASUREMENT_FIELDS + OPTIONAL_MEASUREMENT_FIELDS:
        source, _, target = spec.partition(":")
        doc[source] = getattr(m, target or source, None)
    return doc


def _evaluation_doc(evaluations) -> dict | None:
    ev = next(iter(evaluations), None)
    if ev is None:
        return None
    return {"metric": ev.metric or None, "value": ev.value, "labelled": ev.labelled, "fidelity": ev.fidelity or {},
            "fidelity_metric": ev.fidelity_metric or None, "fidelity_value": ev.fidelity_value,
            "fidelity_higher_is_better": ev.fidelity_higher_is_better,
            # not stored: the engine's labelled metrics that point down (evaluation.py)
            "higher_is_better": (ev.metric or "").lower() not in LOWER_IS_BETTER}


def result_doc(audit, rows) -> dict:
    """The parts of the engine's result document the decision reads, from the stored rows."""
    return {
        # the fidelity's kind is not stored: a generation audit's model is a language model
        "model": {"task": "text-generation" if (audit.scenario or {}).get("kind") == "generation"
                  else audit.model_version.asset.task},
        "scenario": audit.scenario or {},
        "carbon": audit.carbon or {},
        "drift": audit.drift,
        "variants": [{"recipe": r.key, "status": r.variant.status,
                      "measurements": [_measurement_doc(m) for m in r.measurements],
                      "comparison": list(r.variant.comparison or []),
                      "evaluation": _evaluation_doc(r.variant.evaluations.all())} for r in rows],
    }


def decision_options(audit, max_drop_pts: float | None) -> dict:
    """The audit's own constraints and latency targets: the options it was requested with, else
    what the engine recorded having applied (a limit set for the run, the SLO targets; never an
    old result's hidden default); a limit asked on the page replaces both (accuracy in points:
    the metric is stored as a fraction)."""
    stored = audit.tradeoff or {}
    options = {k: v for k, v in (stored.get("decision_rule") or {}).items() if k in CONSTRAINT_OPTIONS}
    for c in stored.get("constraints") or []:
        if not c.get("default"):  # regression's floor is stored as the relative error it allows
            options[c["name"]] = 1.0 - c["limit"] if c["name"] == "min_fidelity" and c["op"] == "<=" else c["limit"]
    options.update({k: (stored.get("slo") or {}).get(k.removeprefix("slo_")) for k in SLO_OPTIONS})
    options.update({k: v for k, v in ((k, (audit.options or {}).get(k)) for k in CONSTRAINT_OPTIONS + SLO_OPTIONS)
                    if v is not None})
    if max_drop_pts is not None:
        options["max_accuracy_drop"] = max_drop_pts / 100.0
    return {k: v for k, v in options.items() if v is not None}


def _constraint_lines(tradeoff: dict) -> list[dict]:
    return [{"text": describe(c), "why": c.get("why", ""), "name": c["name"]} for c in tradeoff.get("constraints") or []]


def paired_verdict(audit, rows, ref_batch, max_drop_pts) -> Verdict:
    """Schema 2: the engine's decision on the paired ratios at the reference batch size. The
    grade is shown beside the answer; it makes nothing inconclusive."""
    tradeoff = build_tradeoff(result_doc(audit, rows), decision_options(audit, max_drop_pts))
    slo = tradeoff.get("slo") or {}
    # the engine writes its figures plainly (0.03376 J): the page writes them in its own units (33.8 mJ)
    common = {"paired": True, "slo": units.page_units((slo.get("reason") or "").split(_SLO_EXCLUDED_TAIL)[0]),
              "slo_excluded": slo.get("excluded") or [], "constraints": _constraint_lines(tradeoff),
              "rule": (tradeoff.get("decision_rule") or {}).get("text", "")}
    entry = next((e for e in tradeoff["per_batch_size"] if e["batch_size"] == ref_batch), None)
    if entry is None:
        return Verdict("none", "No recommendation", f"Nothing was measured at batch size {ref_batch}.", **common)
    verdict, key = entry.get("verdict") or "none", entry.get("recommended")
    reason = units.page_units((entry.get("recommended_reason") or "").split(_EXCLUDED_TAIL)[0])
    if max_drop_pts is not None and entry.get("judged_by") == "labelled":
        reason += f" (accuracy drop limit {max_drop_pts:g} points, asked on this page)"
    common.update(excluded=entry.get("excluded") or [], frontier=entry.get("frontier") or [],
                  judged_by=entry.get("judged_by") or "",
                  variant_verdicts={p["recipe"]: p["verdict"] for p in entry.get("points") or []
                                    if p.get("verdict") and "energy_ratio_ci95" in p})
    if verdict == "recommended" and key:
        row = next((r for r in rows if r.key == key), None)
        c = (row.comparison if row else None) or {}
        headline = f"Recommended: {key} — energy {units.ratio(c.get('energy_ratio'), c.get('energy_ratio_ci95'))}"
        return Verdict("recommended", headline, reason, key=key, grade=c.get("quality_grade") or "", **common)
    headlines = {"no measurable difference": "No measurable difference", "inconclusive": "Inconclusive"}
    if verdict in headlines:
        return Verdict(verdict, headlines[verdict], reason, **common)
    return Verdict("none", "No recommendation", reason or "No variant was compared.", **common)
