"""Shared rows for the API, review and budget tests."""
from django.core.files.base import ContentFile

from audit.models import Audit, Dataset, Evaluation, Variant
from audit.services import audits as services

from ..factories import make_audit, measurement_doc, result_doc


def finished_audit(team, *, user=None, result=None, **fields) -> Audit:
    """An audit taken through claim and result, as the worker does it (budgets are checked)."""
    audit = make_audit(team, requested_by=user, **fields)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=result or result_doc())
    return Audit.objects.get(pk=audit.pk)


def two_variant_result(*, baseline_j=0.002, int8_j=0.001, p95_ms=0.25) -> dict:
    doc = result_doc()
    base = doc["variants"][0]
    base["measurements"] = [measurement_doc(1, energy_j_per_inference=baseline_j, latency_ms_p95=p95_ms),
                            measurement_doc(8, energy_j_per_inference=baseline_j * 4, latency_ms_p95=p95_ms * 3)]
    int8 = {**base, "recipe": "int8-dynamic",
            "measurements": [measurement_doc(1, energy_j_per_inference=int8_j, latency_ms_p95=p95_ms / 2)]}
    doc["variants"] = [base, int8]
    return doc


def add_accuracy(audit: Audit, values: dict[str, float]) -> None:
    for variant in audit.variants.filter(status=Variant.Status.SUCCEEDED):
        if variant.recipe in values:
            Evaluation.objects.create(variant=variant, metric="accuracy", value=values[variant.recipe], n_samples=100)


def make_dataset(team, name="digits") -> Dataset:
    import hashlib

    content = b"text,label\nhello,1\nworld,0\n"
    dataset = Dataset(team=team, name=name, format="csv", n_samples=2, sha256=hashlib.sha256(content + name.encode()).hexdigest(),
                      size_bytes=len(content))
    dataset.file.save("data.csv", ContentFile(content), save=False)
    dataset.save()
    return dataset
