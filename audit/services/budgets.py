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
- Verdict: "fail" when any limit failed, "pass" when budgets apply and none failed,
  "" when no budget applies.
"""
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Prefetch, Q

from ..models import Audit, EnergyBudget, Evaluation, Measurement, Membership, ModelAsset, Team, Variant

PASS, FAIL, UNCHECKED = "pass", "fail", ""

# budget field -> (limit name in results, measurement attribute, unit)
MEASUREMENT_LIMITS = [
    ("max_j_per_inference", "j_per_inference", "energy_j_per_inference", "J"),
    ("max_wh_per_1000_inferences", "wh_per_1000_inferences", "wh_per_1000_inferences", "Wh"),
    ("max_latency_p95_ms", "latency_p95_ms", "latency_p95_ms", "ms"),
]
ACCURACY_LIMIT = ("max_accuracy_drop", "accuracy_drop", "pp")
LIMIT_FIELDS = [f for f, *_ in MEASUREMENT_LIMITS] + [ACCURACY_LIMIT[0]]
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


def _entry(budget, limit, variant, batch_size, value, threshold, unit, *, estimated=False) -> dict:
    passed = None if value is None else bool(value <= threshold)
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
    }


def _accuracy_drop(baseline_value: float, value: float) -> float:
    scale = 100.0 if 0.0 <= baseline_value <= 1.0 and 0.0 <= value <= 1.0 else 1.0
    return round((baseline_value - value) * scale, 6)


def _accuracy(variant) -> tuple[str, float] | None:
    for evaluation in variant.evaluations.all():
        if evaluation.metric.lower() in ACCURACY_METRICS:
            return evaluation.metric, evaluation.value
    return None


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
        for budget_field, limit, attribute, unit in MEASUREMENT_LIMITS:
            threshold = getattr(budget, budget_field)
            if threshold is None:
                continue
            for variant in measured:
                rows = [m for m in variant.measurements.all() if budget.batch_size in (None, m.batch_size)]
                if not rows:
                    results.append(_entry(budget, limit, variant.recipe, budget.batch_size, None, threshold, unit))
                for m in sorted(rows, key=lambda m: m.batch_size):
                    estimated = m.energy_estimated if unit in ("J", "Wh") else False
                    results.append(
                        _entry(budget, limit, variant.recipe, m.batch_size, getattr(m, attribute), threshold, unit,
                               estimated=estimated)
                    )
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
    verdict = FAIL if any(r["passed"] is False for r in results) else PASS
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
    if errors:
        raise ValidationError(errors)
    if all(values.get(name) is None for name in LIMIT_FIELDS):
        raise ValidationError("Set at least one limit.")


BUDGET_FIELDS = ["name", "model_asset", "batch_size", *LIMIT_FIELDS, "active"]


@transaction.atomic
def budget_create(*, user, team: Team, name: str, model_asset: ModelAsset | None = None, batch_size: int | None = None,
                  max_j_per_inference: float | None = None, max_wh_per_1000_inferences: float | None = None,
                  max_latency_p95_ms: float | None = None, max_accuracy_drop: float | None = None,
                  active: bool = True) -> EnergyBudget:
    _require_lead(user, team)
    values = {
        "max_j_per_inference": max_j_per_inference, "max_wh_per_1000_inferences": max_wh_per_1000_inferences,
        "max_latency_p95_ms": max_latency_p95_ms, "max_accuracy_drop": max_accuracy_drop,
    }
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
