"""The audit list's filters, shared by the list and the exports. Query parameters are
validated like a request body: a bad value is a 400 with the field's error."""
from datetime import datetime, time, timezone

from rest_framework import serializers

from ..models import Audit

# Audit.budget_verdict's values (audit/services/budgets.py); "none" selects the empty one.
BUDGET_VERDICTS = [
    ("pass", "every checked limit passed: its 95% interval lies within the limit"),
    ("fail", "a limit failed: its 95% interval lies wholly above the limit"),
    ("inconclusive", "no limit failed, but one straddles its limit or rests on a vetoed measurement"),
    ("none", "no budget applies / not checked"),
]
ORDERINGS = {
    "-created_at": ("-created_at", "-id"),
    "created_at": ("created_at", "id"),
    "-finished_at": ("-finished_at", "-id"),
    "finished_at": ("finished_at", "id"),
}


class AuditFilterSerializer(serializers.Serializer):
    team = serializers.SlugField(required=False, help_text="Team slug.")
    model = serializers.IntegerField(required=False, help_text="Model id.")
    model_name = serializers.CharField(required=False, help_text="Model name (exact).")
    model_version = serializers.IntegerField(required=False, help_text="Model version id.")
    status = serializers.ChoiceField(choices=Audit.Status.choices, required=False)
    hardware = serializers.CharField(required=False, help_text="Hardware queue the audit ran on (cpu, gpu, gpu-h100...).")
    device = serializers.ChoiceField(choices=["cpu", "cuda"], required=False)
    review_status = serializers.ChoiceField(choices=Audit.ReviewStatus.choices, required=False)
    budget_verdict = serializers.ChoiceField(choices=BUDGET_VERDICTS, required=False)
    created_after = serializers.DateTimeField(required=False, help_text="ISO 8601 date or date-time, inclusive.")
    created_before = serializers.DateTimeField(required=False, help_text="ISO 8601 date or date-time, exclusive.")
    ordering = serializers.ChoiceField(choices=list(ORDERINGS), required=False, default="-created_at")

    def to_internal_value(self, data):
        # A bare date is accepted for the date filters (midnight UTC).
        data = data.copy() if hasattr(data, "copy") else dict(data)
        for key in ("created_after", "created_before"):
            value = data.get(key)
            if isinstance(value, str) and len(value) == 10:
                try:
                    day = datetime.strptime(value, "%Y-%m-%d").date()
                except ValueError:
                    continue
                data[key] = datetime.combine(day, time.min, tzinfo=timezone.utc).isoformat()
        return super().to_internal_value(data)


def filter_audits(audits, params) -> tuple:
    """Apply validated filters to an audit queryset. Raises serializers.ValidationError (400)."""
    form = AuditFilterSerializer(data=params)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    lookups = {
        "team": "model_version__asset__team__slug",
        "model": "model_version__asset_id",
        "model_name": "model_version__asset__name",
        "model_version": "model_version_id",
        "status": "status",
        "hardware": "target_queue",
        "device": "device",
        "review_status": "review_status",
        "created_after": "created_at__gte",
        "created_before": "created_at__lt",
    }
    conditions = {lookup: data[key] for key, lookup in lookups.items() if key in data}
    audits = audits.filter(**conditions)
    verdict = data.get("budget_verdict")
    if verdict:
        audits = audits.filter(budget_verdict="" if verdict == "none" else verdict)
    return audits.order_by(*ORDERINGS[data["ordering"]]), data
