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


def reference_row(batch_size=1, *, energy=(1.12, 1.05, 1.19), latency=(1.03, 0.98, 1.08), verdict="costs more",
                  latency_verdict="inconclusive", grade="B") -> dict:
    """One batch size of the result's "reference" section (/tmp interface of issue 21, as
    docs/ENGINE_INTERFACE.md has it): ratios new / reference with their 95% intervals."""
    return {
        "batch_size": batch_size, "rounds": 6, "stopped_because": "interval narrow enough",
        "energy_ratio": energy[0], "energy_ratio_ci95": list(energy[1:]),
        "latency_ratio": latency[0], "latency_ratio_ci95": list(latency[1:]),
        "verdict": verdict, "latency_verdict": latency_verdict, "veto_reasons": [],
        "verdict_basis": {"min_saving": 0.05, "equivalence_margin": 0.03, "alpha": 0.05},
        "quality_grade": grade, "quality_reasons": ["6 paired rounds"],
        "reference_measurement": {"latency_ms_mean": 0.2, "energy_j_per_inference": 0.0018},
    }


def reference_section(rows=None, *, label="v6 (approved)", status="compared", reason=None, fidelity=True) -> dict:
    return {
        "label": label, "status": status, "reason": reason, "basis": "per inference",
        "inputs": "the same inputs (shape 1x64)",
        "per_batch_size": [reference_row(1)] if rows is None else rows,
        "fidelity": {"metric": "top1_agreement", "value": 0.97, "higher_is_better": True} if fidelity else None,
    }


def result_with_reference(reference: dict | None = None, *, result: dict | None = None) -> dict:
    doc = result or result_doc()
    doc["schema_version"] = 2
    doc["reference"] = reference_section() if reference is None else reference
    return doc
