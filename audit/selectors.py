"""Reads. Every queryset a view uses comes from here and is scoped to the
teams of the user asking, so another team's object is simply not found (404)."""
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Prefetch, QuerySet
from django.utils import timezone

from .models import Audit, Dataset, Measurement, Membership, ModelAsset, ModelVersion, Team, Variant, WorkerNode


def teams_for_user(user) -> QuerySet[Team]:
    if not user.is_authenticated:
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user).order_by("name")


def role_in_team(user, team: Team) -> str | None:
    membership = Membership.objects.filter(user=user, team=team).only("role").first()
    return membership.role if membership else None


def model_assets_for_user(user) -> QuerySet[ModelAsset]:
    return (
        ModelAsset.objects.filter(team__in=teams_for_user(user))
        .select_related("team")
        .annotate(n_versions=Count("versions", distinct=True))
        .order_by("team__name", "name")
    )


def model_versions_for_user(user) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(asset__team__in=teams_for_user(user)).select_related(
        "asset", "asset__team", "uploaded_by"
    )


def datasets_for_user(user) -> QuerySet[Dataset]:
    return Dataset.objects.filter(team__in=teams_for_user(user)).select_related("team")


def audits_for_user(user) -> QuerySet[Audit]:
    return Audit.objects.filter(model_version__asset__team__in=teams_for_user(user)).select_related(
        "model_version", "model_version__asset", "model_version__asset__team", "dataset", "requested_by"
    )


def audit_report(audit: Audit) -> list[Variant]:
    """The variants of an audit with their measurements and evaluations: three queries
    whatever the number of variants."""
    return list(
        audit.variants.order_by("position").prefetch_related(
            Prefetch("measurements", queryset=Measurement.objects.order_by("batch_size")),
            "evaluations",
        )
    )


def live_workers(*, now=None) -> QuerySet[WorkerNode]:
    now = now or timezone.now()
    return WorkerNode.objects.filter(last_seen__gte=now - timedelta(seconds=settings.WORKER_STALE_AFTER_S))


def live_queues() -> list[dict]:
    """The hardware targets an audit can be sent to now: one entry per queue with a live worker."""
    queues: dict[str, dict] = {}
    for node in live_workers():
        entry = queues.setdefault(
            node.queue, {"queue": node.queue, "device": node.device, "workers": 0, "hardware": describe_hardware(node.fingerprint)}
        )
        entry["workers"] += 1
    return sorted(queues.values(), key=lambda q: q["queue"])


def describe_hardware(fingerprint: dict) -> str:
    """One line for people: the GPU if there is one, else the CPU."""
    if not fingerprint:
        return "unknown hardware"
    gpus = fingerprint.get("gpus") or []
    gpu = fingerprint.get("gpu") or (gpus[0] if gpus else None)
    if isinstance(gpu, dict) and gpu.get("name"):
        return str(gpu["name"])
    # The engine's fingerprint keeps the CPU at the top level (cpu_model, cpu_logical_cores);
    # older or hand-made ones nest it under "cpu".
    cpu = fingerprint.get("cpu") if isinstance(fingerprint.get("cpu"), dict) else {}
    name = fingerprint.get("cpu_model") or cpu.get("model") or cpu.get("name") or fingerprint.get("cpu")
    cores = fingerprint.get("cpu_logical_cores") or cpu.get("logical_cores") or cpu.get("cores")
    if not name or isinstance(name, dict):
        name = "CPU"
    return f"{name} ({cores} cores)" if cores else str(name)


def flatten_fingerprint(fingerprint: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested fingerprint -> (dotted key, readable value) rows for the report."""
    rows: list[tuple[str, str]] = []
    for key, value in (fingerprint or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten_fingerprint(value, prefix=f"{name}.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                rows += flatten_fingerprint(item, prefix=f"{name}[{i}].")
        elif isinstance(value, list):
            rows.append((name, ", ".join(str(v) for v in value)))
        elif value is not None and value != "":
            rows.append((name, str(value)))
    return rows
