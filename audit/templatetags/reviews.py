"""Review and budget pieces for templates. `_reviews.html` is included by the report page with
only `audit` in its context; it gets everything else from `{% audit_reviews audit as rv %}`."""
from django import template

from ..models import Membership, Review
from ..services.reviews import low_quality_warning, teams_led_by

register = template.Library()

LIMIT_LABELS = {
    "j_per_inference": "J per inference",
    "wh_per_1000_inferences": "Wh per 1,000 inferences",
    "latency_p95_ms": "latency p95",
    "accuracy_drop": "accuracy drop",
    "j_per_output_token": "J per output token",
    "ttft_ms_p95": "time to first token p95",
    "tpot_ms_p95": "time per output token p95",
    "fidelity": "fidelity to the baseline",
    "energy_regression": "energy vs the reference version",
    "latency_regression": "latency vs the reference version",
}
BADGE = {"approved": "succeeded", "changes-requested": "failed", "pending": "running", "comment": "queued",
         "pass": "succeeded", "fail": "failed", "inconclusive": "queued"}


@register.simple_tag(takes_context=True)
def leads_a_team(context) -> bool:
    user = context.get("user")
    return bool(user and user.is_authenticated and teams_led_by(user).exists())


@register.simple_tag(takes_context=True)
def audit_reviews(context, audit) -> dict:
    """History, the viewer's rights, and the budget results with the failures first."""
    user = context.get("user") or getattr(context.get("request"), "user", None)
    role = None
    if user is not None and user.is_authenticated:
        membership = Membership.objects.filter(user=user, team_id=audit.model_version.asset.team_id).only("role").first()
        role = membership.role if membership else None
    from ..views.reviews import pop_refused_review  # noqa: PLC0415 (views import this library's services)

    refused = pop_refused_review(context.get("request"), audit) or {}
    results = list(audit.budget_results or [])
    order = {False: 0, None: 1, True: 2}
    results.sort(key=lambda r: order.get(r.get("passed"), 1))
    return {
        "reviews": list(audit.reviews.select_related("reviewer").order_by("created_at", "id")),
        "is_lead": role == Membership.Role.LEAD,
        "can_comment": role is not None,
        "can_decide": role == Membership.Role.LEAD and audit.status == audit.Status.SUCCEEDED,
        "decisions": [(v, label) for v, label in Review.Decision.choices if v != Review.Decision.COMMENT],
        "results": results,
        "failures": [r for r in results if r.get("passed") is False],
        "unchecked": [r for r in results if r.get("passed") is None],
        "inconclusive": [r for r in results if r.get("inconclusive")],
        "low_quality_warning": low_quality_warning(audit),
        # a review refused just before: its errors beside the buttons, the comment as typed
        "refused_errors": refused.get("errors") or [],
        "refused_comment": refused.get("comment") or "",
    }


@register.filter
def limit_label(name: str) -> str:
    return LIMIT_LABELS.get(name, name)


@register.filter
def regression_ratio(limit) -> str:
    """A budget's regression limit (0.05) as the ratio it allows: "×1.05 (+5%)"."""
    return f"×{1.0 + float(limit):.4g} (+{float(limit) * 100:.4g}%)"


@register.filter
def status_badge(value: str) -> str:
    return BADGE.get(value, "queued")


@register.filter
def budget_value(value, unit: str) -> str:
    """A budget figure with its unit: J and Wh scaled (mJ, µWh...), ms and pp plain."""
    from .units import DASH, joules, millis, wh

    if value is None:
        return DASH
    if unit == "J":
        return joules(value)
    if unit == "Wh":
        return wh(value)
    if unit == "ms":
        return millis(value)
    if unit == "ratio":  # a paired ratio new / reference (release limits)
        return f"×{float(value):.3g}"
    return f"{float(value):.3g} {unit}"
