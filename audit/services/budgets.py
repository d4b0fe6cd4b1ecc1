"""Energy budgets: the limits a team lead sets, and the check of an audit against them.

`budget_check` is pure: budgets and variants (with their measurements and evaluations)
in, one result per limit out, and a verdict. The services around it store the verdict on
the audit (`Audit.budget_verdict`, `Audit.budget_results`) when an audit succeeds, and
re-run it for the team's audits whenever one of its budgets changes.

Rules (docs/ARCHITECTURE.md, "Review, budgets and the API"):
- A budget applies to an audit when it is active, belongs to the audit's team and names
  no model or the audit's model. A limit left empty is not checked.
- Every succeeded variant is checked (baseline and compressed ones alike), at the budget's
  batch size, or at every measured batch size when the budget names none.
- Accuracy drop is the baseline's value minus the variant's, in percentage points, for
  accuracy-like metrics (higher is better). Values in [0, 1] are fractions and are
  scaled by 100.
- A limit that cannot be checked (batch size not measured, no evaluation) is reported
  with `passed: None` ("not measured") and does not fail the audit; the report shows it.
- A limit is judged on the figure's 95% interval, never on the figure alone nor on its grade
  (docs/API.md, "Budget results"): "fail" when the whole interval lies above the limit,
  "pass" when it lies wholly within it, "inconclusive" (`passed: None`, `inconclusive: True`)
  only when the limit lies inside the interval. Energy: the stated uncertainty u (one standard
  uncertainty) makes the log-normal interval [x/k, x*k], k = (1+u)**1.96, so a ±84% estimate
  spans [x/3.3, x*3.3] and never reaches below zero. Latency: the stored 95% interval of the
  mean, relative, applied the same multiplicative way; without one, the figure itself.
  The quality grade is kept beside the result and decides nothing; only what breaks an energy
  reading as evidence (workers.engine.quality.veto_reasons: no energy, active energy clamped
  at zero, windows shorter than one meter update) makes an energy limit inconclusive whatever
  its distance from the limit. Every entry carries the interval (`low`, `high`) and its
  `reason` in words ("385 mJ [117, 1270] > 10 mJ: fail (...)").
- Generative models: J per output token, TTFT p95 and TPOT p95 limits are checked on
  generation measurements (and left out for forward ones). `min_fidelity` checks the
  variants' fidelity to the baseline (higher-is-better fidelity figures only).
- Release limits (``max_energy_regression``, ``max_latency_regression``) are judged on the
  paired ratios against the audit's reference version (services/budget_regression.py); on an
  audit without a reference they are "not applicable" and take no part in the verdict.
- Energy boundary (issue 23): J and Wh per inference are read at the budget's boundary (its own
  ``boundary``, else the team's ``energy_boundary``, else device): device, host or facility, as
  the measurement recorded them (``Measurement.energy_boundaries``), with that figure's own
  uncertainty; a measurement without that boundary is "not measured" at it. Every entry names
  its ``boundary``.
- Verdict: "fail" when any limit failed decisively, "inconclusive" when none failed but some
  could not be decided, "pass" when budgets apply and every checked limit passed, "" when no
  budget applies.
"""
import math
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Prefetch, Q

from workers.engine.quality import veto_reasons

from ..models import Audit, EnergyBudget, Evaluation, Measurement, Membership, ModelAsset, Team, Variant
from .budget_regression import REGRESSION_FIELDS, regression_entries

PASS, FAIL, INCONCLUSIVE, UNCHECKED = "pass", "fail", "inconclusive", ""
Z95 = 1.96

# budget field -> (limit name in results, measurement attribute, unit)
MEASUREMENT_LIMITS = [
    ("max_j_per_inference", "j_per_inference", "energy_j_per_inference", "J"),
    ("max_wh_per_1000_inferences", "wh_per_1000_inferences", "wh_per_1000_inferences", "Wh"),
    ("max_latency_p95_ms", "latency_p95_ms", "latency_p95_ms", "ms"),
]
# Checked on generation measurements only.
TOKEN_LIMITS = [
    ("max_j_per_output_token", "j_per_output_token", "energy_j_per_output_token", "J"),
    ("max_ttft_ms_p95", "ttft_ms_p95", "ttft_ms_p95", "ms"),
    ("max_tpot_ms_p95", "tpot_ms_p95", "tpot_ms_p95", "ms"),
]
FIDELITY_LIMIT = ("min_fidelity", "fidelity", "")
ACCURACY_LIMIT = ("max_accuracy_drop", "accuracy_drop", "pp")
LIMIT_FIELDS = ([f for f, *_ in MEASUREMENT_LIMITS + TOKEN_LIMITS] + [ACCURACY_LIMIT[0], FIDELITY_LIMIT[0]]
                + REGRESSION_FIELDS)
# Metrics where higher is better: a drop from the baseline is a loss of accuracy.
ACCURACY_METRICS = {"accuracy", "top1", "top1_accuracy", "top5_accuracy", "f1", "macro_f1", "exact_match"}
BASELINE = "baseline"


@dataclass
class BudgetCheck:
    verdict: str
    results: list[dict] = field(default_factory=list)

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.results if r["passed"] is False]


# Units scaled for the reason in words: the interval is written in the value's unit.
SCALES = {
    "J": [(1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ")],
    "Wh": [(1e3, "kWh"), (1.0, "Wh"), (1e-3, "mWh"), (1e-6, "µWh")],
    "ms": [(1e3, "s"), (1.0, "ms"), (1e-3, "µs")],
}


@dataclass(frozen=True)
class Judgement:
    """One limit's outcome: passed True/False, or None (inconclusive, or not measured), with
    the interval it was judged on and the reason in words."""
    passed: bool | None
    inconclusive: bool = False
    low: float | None = None
    high: float | None = None
    reason: str = ""


def _number(value: float) -> str:
    """Three significant figures, without an exponent below a million: 1272 -> "1270"."""
    return f"{float(f'{value:.3g}'):g}"


def _figure(value: float, unit: str, low: float | None = None, high: float | None = None) -> str:
    """"385 mJ [117, 1270]": the value in a readable scale, its interval in the same scale."""
    steps = SCALES.get(unit, [(1.0, unit)])
    factor, name = next(((f, n) for f, n in steps if abs(value) >= f), steps[-1])
    text = f"{_number(value / factor)} {name}".rstrip()
    if low is not None and high is not None and (low, high) != (value, value):
        text += f" [{_number(low / factor)}, {_number(high / factor)}]"
    return text


def energy_interval(value: float, uncertainty_rel: float | None) -> tuple[float, float, str]:
    """Log-normal 95% interval of an energy figure from its relative standard uncertainty:
    [x/k, x*k], k = (1+u)**1.96. Multiplicative, so a wide estimate never reaches below zero."""
    if not uncertainty_rel or uncertainty_rel <= 0:
        return value, value, "no energy uncertainty stated: judged on the figure"
    k = (1.0 + uncertainty_rel) ** Z95
    return value / k, value * k, f"energy ±{uncertainty_rel:.0%} as one standard uncertainty, log-normal"


def latency_interval(value: float, ci95_rel: float | None) -> tuple[float, float, str]:
    """The measurement's 95% latency interval (of the mean, relative) applied to the figure
    multiplicatively, [x/(1+r), x*(1+r)]; the figure itself when none was stored."""
    if not ci95_rel or ci95_rel <= 0 or not math.isfinite(ci95_rel):
        return value, value, "no latency interval stored: judged on the figure"
    return value / (1.0 + ci95_rel), value * (1.0 + ci95_rel), f"latency interval of the mean ±{ci95_rel:.1%}"


def _latency_ci95_rel(m) -> float | None:
    if m.latency_ci95_rel is not None:
        return m.latency_ci95_rel
    if m.latency_ci95_ms is not None and m.latency_mean_ms:
        return m.latency_ci95_ms / m.latency_mean_ms
    return None


def _measurement_vetoes(m) -> list[str]:
    return veto_reasons({"flags": m.flags, "energy_j_per_inference": m.energy_j_per_inference,
                         "window_s": m.window_s, "meter_resolution_s": m.meter_resolution_s})


def judge_maximum(value: float, threshold: float, unit: str, low: float, high: float, basis: str,
                  vetoes: list[str] = ()) -> Judgement:
    """A "not more than" limit judged on the interval [low, high]."""
    figure, limit = _figure(value, unit, low, high), _figure(threshold, unit)
    if vetoes:
        return Judgement(None, True, low, high, f"{figure} vs {limit}: inconclusive ({'; '.join(vetoes)})")
    if high <= threshold:
        why = f"the whole 95% interval is within the limit; {basis}" if low != high else basis
        return Judgement(True, False, low, high, f"{figure} ≤ {limit}: pass ({why})")
    if low > threshold:
        why = f"the whole 95% interval lies above the limit; {basis}" if low != high else basis
        return Judgement(False, False, low, high, f"{figure} > {limit}: fail ({why})")
    return Judgement(None, True, low, high,
                     f"{figure} vs {limit}: inconclusive (the limit lies inside the 95% interval; {basis})")


def judge_minimum(value: float, threshold: float, unit: str) -> Judgement:
    """A "not less than" limit (fidelity), judged on the figure: no interval is stored for it."""
    figure, limit = _figure(value, unit), _figure(threshold, unit)
    if value >= threshold:
        return Judgement(True, False, value, value, f"{figure} ≥ {limit}: pass")
    return Judgement(False, False, value, value, f"{figure} < {limit}: fail")


def _energy_uncertainty(m, attribute: str) -> float:
    """The figure's own relative uncertainty: J per output token has one of its own (decode is the
    request less the prefill, so its statistical part is the larger); the others share the
    measurement's."""
    if attribute == "energy_j_per_output_token" and m.energy_j_per_output_token_uncertainty_rel is not None:
        return m.energy_j_per_output_token_uncertainty_rel
    return m.energy_uncertainty_rel


# Limits read at the budget's energy boundary (issue 23): J and Wh per inference. The per-token
# limits stay on the device figure (the boundaries are recorded per inference).
BOUNDARY_ATTRIBUTES = {"energy_j_per_inference": 1.0, "wh_per_1000_inferences": 1000.0 / 3600.0}


def budget_boundary(budget) -> str:
    """The boundary a budget's energy limits apply to: its own, else its team's, else device."""
    return budget.boundary or getattr(budget.team, "energy_boundary", "") or "device"


def _at_boundary(m, attribute: str, boundary: str) -> tuple[float | None, float | None, bool, str]:
    """(value, relative uncertainty, estimated, why not) of an energy figure at ``boundary``."""
    if attribute not in BOUNDARY_ATTRIBUTES or boundary == (m.energy_boundary or "device"):
        return getattr(m, attribute), _energy_uncertainty(m, attribute), bool(m.energy_estimated), ""
    figure = m.boundary_figure(boundary)
    if not figure or not isinstance(figure.get("j_per_inference"), (int, float)):
        return None, None, False, (f"not measured: this audit recorded no {boundary} figure (its energy figures "
                                   f"are at the {m.energy_boundary or 'device'} boundary)")
    uncertainty = figure.get("uncertainty_rel")
    return (figure["j_per_inference"] * BOUNDARY_ATTRIBUTES[attribute],
            m.energy_uncertainty_rel if uncertainty is None else uncertainty, bool(figure.get("estimated")), "")


def _judge_measurement(m, attribute: str, unit: str, threshold: float, boundary: str = "device") -> Judgement:
    value, uncertainty, _, why_not = _at_boundary(m, attribute, boundary)
    if value is None or not math.isfinite(value):
        return Judgement(None, reason=why_not or "not measured: this measurement has no such figure")
    if unit in ("J", "Wh"):
        if not math.isfinite(uncertainty):  # a row stored before results were validated
            return Judgement(None, True, reason=f"{_figure(value, unit)} vs {_figure(threshold, unit)}: "
                                                "inconclusive (its energy uncertainty is not a number)")
        low, high, basis = energy_interval(value, uncertainty)
        return judge_maximum(value, threshold, unit, low, high, basis, _measurement_vetoes(m))
    low, high, basis = latency_interval(value, _latency_ci95_rel(m))
    return judge_maximum(value, threshold, unit, low, high, basis)


def _entry(budget, limit, variant, batch_size, value, threshold, unit, judgement: Judgement, *,
           estimated=False, grade="", boundary=None) -> dict:
    return {
        "budget": budget.name,
        "boundary": boundary,  # the energy boundary the limit was read at (energy limits only)
        "budget_id": budget.pk,
        "limit": limit,
        "variant": variant,
        "batch_size": batch_size,
        "value": value,
        "threshold": threshold,
        "unit": unit,
        "passed": judgement.passed,
        "estimated": estimated,
        "inconclusive": judgement.inconclusive,
        "quality_grade": grade,  # shown beside the result; it decides nothing
        "low": judgement.low,
        "high": judgement.high,
        "reason": judgement.reason,
    }


def _on_figure(value, threshold, unit) -> Judgement:
    """Accuracy drop: a "not more than" limit with no interval stored, judged on the figure."""
    return judge_maximum(value, threshold, unit, value, value, "judged on the figure")


def _accuracy_drop(baseline_value: float, value: float) -> float:
    scale = 100.0 if 0.0 <= baseline_value <= 1.0 and 0.0 <= value <= 1.0 else 1.0
    return round((baseline_value - value) * scale, 6)


def _accuracy(variant) -> tuple[str, float] | None:
    for evaluation in variant.evaluations.all():
        if evaluation.metric.lower() in ACCURACY_METRICS and evaluation.value is not None:
            return evaluation.metric, evaluation.value
    return None


def _fidelity(variant) -> float | None:
    for evaluation in variant.evaluations.all():
        if evaluation.fidelity_value is not None and evaluation.fidelity_higher_is_better:
            return evaluation.fidelity_value
    return None


def _measurement_entries(budget, limits, variant, *, generation_only=False) -> list[dict]:
    out = []
    rows = [m for m in variant.measurements.all() if budget.batch_size in (None, m.batch_size)]
    if generation_only:
        rows = [m for m in rows if m.scenario == "generation"]
    for budget_field, limit, attribute, unit in limits:
        threshold = getattr(budget, budget_field)
        if threshold is None:
            continue
        if not rows and not generation_only:
            out.append(_entry(budget, limit, variant.recipe, budget.batch_size, None, threshold, unit,
                              Judgement(None, reason=f"not measured: batch {budget.batch_size} was not measured")))
        boundary = budget_boundary(budget) if attribute in BOUNDARY_ATTRIBUTES else None
        for m in sorted(rows, key=lambda m: m.batch_size):
            value, _, estimated, _ = _at_boundary(m, attribute, boundary or "device")
            estimated = estimated if unit in ("J", "Wh") else False
            out.append(_entry(budget, limit, variant.recipe, m.batch_size, value, threshold, unit,
                              _judge_measurement(m, attribute, unit, threshold, boundary or "device"),
                              estimated=estimated, grade=m.quality_grade,
                              boundary=boundary if unit in ("J", "Wh") else None))
    return out


def budget_check(*, budgets, variants, reference: dict | None = None, reference_asked: bool = False) -> BudgetCheck:
    """Check measured variants against budgets. Pure: reads only what it is given
    (variants with `measurements` and `evaluations` prefetched; the audit's stored reference
    section, and whether the audit asked for one, for the regression limits)."""
    budgets = list(budgets)
    if not budgets:
        return BudgetCheck(UNCHECKED, [])
    measured = [v for v in variants if v.status == Variant.Status.SUCCEEDED]
    baseline = next((v for v in measured if v.recipe == BASELINE), None)
    baseline_accuracy = _accuracy(baseline) if baseline else None
    results: list[dict] = []
    for budget in budgets:
        results += regression_entries(budget, reference, asked=reference_asked)
        for variant in measured:
            results += _measurement_entries(budget, MEASUREMENT_LIMITS, variant)
            results += _measurement_entries(budget, TOKEN_LIMITS, variant, generation_only=True)
        threshold = getattr(budget, FIDELITY_LIMIT[0])
        if threshold is not None:
            for variant in measured:
                if variant is not baseline:
                    value = _fidelity(variant)
                    judgement = (judge_minimum(value, threshold, FIDELITY_LIMIT[2]) if value is not None
                                 else Judgement(None, reason="not measured: no fidelity figure"))
                    results.append(_entry(budget, FIDELITY_LIMIT[1], variant.recipe, None, value,
                                          threshold, FIDELITY_LIMIT[2], judgement))
        threshold = getattr(budget, ACCURACY_LIMIT[0])
        if threshold is not None:
            _, limit, unit = ACCURACY_LIMIT
            others = [v for v in measured if v is not baseline]
            if baseline_accuracy is None:
                results.append(_entry(budget, limit, BASELINE, None, None, threshold, unit,
                                      Judgement(None, reason="not measured: no accuracy evaluation of the baseline")))
            elif not others:
                results.append(_entry(budget, limit, BASELINE, None, 0.0, threshold, unit,
                                      _on_figure(0.0, threshold, unit)))
            for variant in others if baseline_accuracy else []:
                accuracy = _accuracy(variant)
                value = _accuracy_drop(baseline_accuracy[1], accuracy[1]) if accuracy else None
                judgement = (_on_figure(value, threshold, unit) if value is not None
                             else Judgement(None, reason="not measured: no accuracy evaluation of this variant"))
                results.append(_entry(budget, limit, variant.recipe, None, value, threshold, unit, judgement))
    applicable = [r for r in results if not r.get("not_applicable")]  # shown, never a pass
    if not applicable:
        verdict = UNCHECKED  # no limit of these budgets applies to what this audit measured
    elif any(r["passed"] is False for r in applicable):
        verdict = FAIL
    elif any(r["inconclusive"] for r in applicable):
        verdict = INCONCLUSIVE
    else:
        verdict = PASS
    return BudgetCheck(verdict, results)


def budgets_for_audit(audit: Audit):
    """The active budgets of the audit's team that apply to its model."""
    asset = audit.model_version.asset
    return EnergyBudget.objects.filter(team_id=asset.team_id, active=True).filter(
        Q(model_asset__isnull=True) | Q(model_asset_id=asset.pk)
    ).order_by("name", "id")


def _variants_prefetch() -> Prefetch:
    return Prefetch(
        "variants",
        queryset=Variant.objects.order_by("position").prefetch_related(
            Prefetch("measurements", queryset=Measurement.objects.order_by("batch_size")),
            Prefetch("evaluations", queryset=Evaluation.objects.order_by("metric")),
        ),
    )


def _reference_of(audit: Audit) -> dict:
    return {"reference": audit.reference,
            "reference_asked": audit.reference_version_id is not None or audit.reference is not None}


def audit_budgets_check(*, audit: Audit) -> BudgetCheck:
    """Check one audit against its team's budgets and store the verdict on it."""
    audit = Audit.objects.select_related("model_version__asset").prefetch_related(_variants_prefetch()).get(pk=audit.pk)
    check = budget_check(budgets=budgets_for_audit(audit), variants=audit.variants.all(), **_reference_of(audit))
    Audit.objects.filter(pk=audit.pk).update(budget_verdict=check.verdict, budget_results=check.results)
    return check


def team_budgets_recheck(*, team: Team) -> int:
    """Re-run the check for every succeeded audit of the team (after a budget changed).
    Returns the number of audits checked."""
    budgets = list(EnergyBudget.objects.filter(team=team, active=True).order_by("name", "id"))
    audits = (
        Audit.objects.filter(model_version__asset__team=team, status=Audit.Status.SUCCEEDED)
        .select_related("model_version")
        .prefetch_related(_variants_prefetch())
        .order_by("pk")
    )
    batch: list[Audit] = []
    n = 0
    for audit in audits.iterator(chunk_size=200):
        applicable = [b for b in budgets if b.model_asset_id in (None, audit.model_version.asset_id)]
        check = budget_check(budgets=applicable, variants=audit.variants.all(), **_reference_of(audit))
        audit.budget_verdict, audit.budget_results = check.verdict, check.results
        batch.append(audit)
        n += 1
        if len(batch) >= 200:
            Audit.objects.bulk_update(batch, ["budget_verdict", "budget_results"])
            batch = []
    if batch:
        Audit.objects.bulk_update(batch, ["budget_verdict", "budget_results"])
    return n


def _require_lead(user, team: Team) -> None:
    if not Membership.objects.filter(user=user, team=team, role=Membership.Role.LEAD).exists():
        raise PermissionDenied("Only a lead of the team can set its energy budgets.")


def _clean(*, team: Team, model_asset: ModelAsset | None, values: dict) -> None:
    if model_asset is not None and model_asset.team_id != team.pk:
        raise ValidationError({"model_asset": "That model belongs to another team."})
    errors = {}
    for name in LIMIT_FIELDS:
        value = values.get(name)
        if value is not None and value < 0:
            errors[name] = "A limit cannot be negative."
    fidelity = values.get(FIDELITY_LIMIT[0])
    if fidelity is not None and fidelity > 1:
        errors[FIDELITY_LIMIT[0]] = "Fidelity is between 0 and 1 (e.g. 0.98)."
    for name in REGRESSION_FIELDS:
        if values.get(name) is not None and values[name] > 10:
            errors[name] = "A regression limit is a fraction of the reference: 0.05 allows 5% more."
    if errors:
        raise ValidationError(errors)
    if all(values.get(name) is None for name in LIMIT_FIELDS):
        raise ValidationError("Set at least one limit.")


BUDGET_FIELDS = ["name", "model_asset", "batch_size", "boundary", *LIMIT_FIELDS, "active"]
BOUNDARIES = ("", "device", "host", "facility")


@transaction.atomic
def budget_create(*, user, team: Team, name: str, model_asset: ModelAsset | None = None, batch_size: int | None = None,
                  active: bool = True, boundary: str = "", **limits) -> EnergyBudget:
    """``limits``: any of LIMIT_FIELDS (max_j_per_inference, ..., max_tpot_ms_p95, min_fidelity);
    ``boundary``: the energy boundary the energy limits apply to ("" = the team's)."""
    _require_lead(user, team)
    if (boundary or "") not in BOUNDARIES:
        raise ValidationError({"boundary": f"“{boundary}” is not an energy boundary: device, host or facility."})
    unknown = set(limits) - set(LIMIT_FIELDS)
    if unknown:
        raise ValueError(f"Unknown budget limits: {sorted(unknown)}")
    values = {name: limits.get(name) for name in LIMIT_FIELDS}
    _clean(team=team, model_asset=model_asset, values=values)
    budget = EnergyBudget.objects.create(
        team=team, model_asset=model_asset, name=name.strip(), batch_size=batch_size, active=active,
        boundary=boundary or "", created_by=user, **values,
    )
    team_budgets_recheck(team=team)
    return budget


@transaction.atomic
def budget_update(*, user, budget: EnergyBudget, **changes) -> EnergyBudget:
    _require_lead(user, budget.team)
    unknown = set(changes) - set(BUDGET_FIELDS)
    if unknown:
        raise ValueError(f"Unknown budget fields: {sorted(unknown)}")
    if (changes.get("boundary") or "") not in BOUNDARIES:
        raise ValidationError({"boundary": f"“{changes['boundary']}” is not an energy boundary: device, host or facility."})
    for name, value in changes.items():
        setattr(budget, name, value if name != "boundary" else (value or ""))
    _clean(team=budget.team, model_asset=budget.model_asset, values={f: getattr(budget, f) for f in LIMIT_FIELDS})
    budget.save()
    team_budgets_recheck(team=budget.team)
    return budget


@transaction.atomic
def budget_delete(*, user, budget: EnergyBudget) -> None:
    _require_lead(user, budget.team)
    team = budget.team
    budget.delete()
    team_budgets_recheck(team=team)
