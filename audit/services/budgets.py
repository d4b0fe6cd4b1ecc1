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
- A verdict never outruns its evidence: a limit checked on a measurement whose quality grade
  is below C (workers/engine/quality.py), or whose threshold lies inside the figure's 95%
  interval (energy: its stated uncertainty; latency: the interval of the mean), is reported
  with `passed: None` and `inconclusive: True`.
- Generative models: J per output token, TTFT p95 and TPOT p95 limits are checked on
  generation measurements (and left out for forward ones). `min_fidelity` checks the
  variants' fidelity to the baseline (higher-is-better fidelity figures only).
- Verdict: "fail" when any limit failed decisively, "inconclusive" when none failed but some
  could not be decided, "pass" when budgets apply and every checked limit passed, "" when no
  budget applies.
"""
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Prefetch, Q

from workers.engine.quality import at_least

from ..models import Audit, EnergyBudget, Evaluation, Measurement, Membership, ModelAsset, Team, Variant

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
LIMIT_FIELDS = [f for f, *_ in MEASUREMENT_LIMITS + TOKEN_LIMITS] + [ACCURACY_LIMIT[0], FIDELITY_LIMIT[0]]
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


def _relative_uncertainty(m, unit: str) -> float | None:
    """The figure's 95% half-width relative to it: energy from its stated (one-sigma)
    uncertainty, latency from the interval of the mean."""
    if unit in ("J", "Wh"):
        return Z95 * m.energy_uncertainty_rel if m.energy_uncertainty_rel is not None else None
    return m.latency_ci95_rel


def _entry(budget, limit, variant, batch_size, value, threshold, unit, *, estimated=False, grade="",
           rel_uncertainty=None, lower_is_better=True) -> dict:
    inconclusive = False
    if value is None:
        passed = None
    else:
        passed = bool(value <= threshold) if lower_is_better else bool(value >= threshold)
        near = rel_uncertainty is not None and abs(value - threshold) <= abs(value) * rel_uncertainty
        if (grade and not at_least(grade)) or near:  # "" : a schema-1 measurement, ungraded
            passed, inconclusive = None, True
    return {
        "budget": budget.name,
        "budget_id": budget.pk,
        "limit": limit,
        "variant": variant,
        "batch_size": batch_size,
        "value": value,
        "threshold": threshold,
        "unit": unit,
        "passed": passed,
        "estimated": estimated,
        "inconclusive": inconclusive,
        "quality_grade": grade,
    }


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
            out.append(_entry(budget, limit, variant.recipe, budget.batch_size, None, threshold, unit))
        for m in sorted(rows, key=lambda m: m.batch_size):
            estimated = m.energy_estimated if unit in ("J", "Wh") else False
            out.append(_entry(budget, limit, variant.recipe, m.batch_size, getattr(m, attribute), threshold, unit,
                              estimated=estimated, grade=m.quality_grade,
                              rel_uncertainty=_relative_uncertainty(m, unit)))
    return out


def budget_check(*, budgets, variants) -> BudgetCheck:
    """Check measured variants against budgets. Pure: reads only what it is given
    (variants with `measurements` and `evaluations` prefetched)."""
    budgets = list(budgets)
    if not budgets:
        return BudgetCheck(UNCHECKED, [])
    measured = [v for v in variants if v.status == Variant.Status.SUCCEEDED]
    baseline = next((v for v in measured if v.recipe == BASELINE), None)
    baseline_accuracy = _accuracy(baseline) if baseline else None
    results: list[dict] = []
    for budget in budgets:
        for variant in measured:
            results += _measurement_entries(budget, MEASUREMENT_LIMITS, variant)
            results += _measurement_entries(budget, TOKEN_LIMITS, variant, generation_only=True)
        threshold = getattr(budget, FIDELITY_LIMIT[0])
        if threshold is not None:
            for variant in measured:
                if variant is not baseline:
                    results.append(_entry(budget, FIDELITY_LIMIT[1], variant.recipe, None, _fidelity(variant),
                                          threshold, FIDELITY_LIMIT[2], lower_is_better=False))
        threshold = getattr(budget, ACCURACY_LIMIT[0])
        if threshold is not None:
            _, limit, unit = ACCURACY_LIMIT
            others = [v for v in measured if v is not baseline]
            if baseline_accuracy is None:
                results.append(_entry(budget, limit, BASELINE, None, None, threshold, unit))
            elif not others:
                results.append(_entry(budget, limit, BASELINE, None, 0.0, threshold, unit))
            for variant in others if baseline_accuracy else []:
                accuracy = _accuracy(variant)
                value = _accuracy_drop(baseline_accuracy[1], accuracy[1]) if accuracy else None
                results.append(_entry(budget, limit, variant.recipe, None, value, threshold, unit))
    if not results:
        verdict = UNCHECKED  # no limit of these budgets applies to what this audit measured
    elif any(r["passed"] is False for r in results):
        verdict = FAIL
    elif any(r["inconclusive"] for r in results):
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


def audit_budgets_check(*, audit: Audit) -> BudgetCheck:
    """Check one audit against its team's budgets and store the verdict on it."""
    audit = Audit.objects.select_related("model_version__asset").prefetch_related(_variants_prefetch()).get(pk=audit.pk)
    check = budget_check(budgets=budgets_for_audit(audit), variants=audit.variants.all())
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
        check = budget_check(budgets=applicable, variants=audit.variants.all())
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
    if errors:
        raise ValidationError(errors)
    if all(values.get(name) is None for name in LIMIT_FIELDS):
        raise ValidationError("Set at least one limit.")


BUDGET_FIELDS = ["name", "model_asset", "batch_size", *LIMIT_FIELDS, "active"]


@transaction.atomic
def budget_create(*, user, team: Team, name: str, model_asset: ModelAsset | None = None, batch_size: int | None = None,
                  active: bool = True, **limits) -> EnergyBudget:
    """``limits``: any of LIMIT_FIELDS (max_j_per_inference, ..., max_tpot_ms_p95, min_fidelity)."""
    _require_lead(user, team)
    unknown = set(limits) - set(LIMIT_FIELDS)
    if unknown:
        raise ValueError(f"Unknown budget limits: {sorted(unknown)}")
    values = {name: limits.get(name) for name in LIMIT_FIELDS}
    _clean(team=team, model_asset=model_asset, values=values)
    budget = EnergyBudget.objects.create(
        team=team, model_asset=model_asset, name=name.strip(), batch_size=batch_size, active=active,
        created_by=user, **values,
    )
    team_budgets_recheck(team=team)
    return budget


@transaction.atomic
def budget_update(*, user, budget: EnergyBudget, **changes) -> EnergyBudget:
    _require_lead(user, budget.team)
    unknown = set(changes) - set(BUDGET_FIELDS)
    if unknown:
        raise ValueError(f"Unknown budget fields: {sorted(unknown)}")
    for name, value in changes.items():
        setattr(budget, name, value)
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
