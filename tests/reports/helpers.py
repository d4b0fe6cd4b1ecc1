"""Audits with results for the report tests, stored through the same service the worker uses."""
import json
from pathlib import Path

from audit.models import Audit
from audit.services import audits as services

from ..factories import make_audit, measurement_doc, result_doc

RECIPES = ["baseline", "fp16", "int8-dynamic", "prune-30", "distill", "prune-50", "int4", "sparse-24",
           "prune-70", "fp8", "int8-static", "prune-90"]


def variant_doc(recipe: str, *, energy: float = 0.002, accuracy: float | None = None, batch_sizes=(1, 8), status="succeeded",
                error="", layers: int = 3) -> dict:
    ms = [] if status != "succeeded" else [
        measurement_doc(b, energy_j_per_inference=energy * b ** 0.5, energy_j_per_inference_active=energy * b ** 0.5 * 0.7,
                        energy_j_per_sample=energy * b ** 0.5 / b, wh_per_1000_inferences=energy * b ** 0.5 * 1000 / 3600,
                        co2e_g_per_inference=energy * b ** 0.5 / 3.6e6 * 475, latency_ms_p50=0.2 * b ** 0.7)
        for b in batch_sizes
    ]
    return {
        "recipe": recipe, "recipe_params": {}, "status": status, "error": error,
        "params": 2410 if status == "succeeded" else None, "nonzero_params": 2410, "size_bytes": 9640,
        "flops": 4672 if status == "succeeded" else None, "macs": 2336,
        "layer_profile": [{"name": f"layer{i}", "type": "Linear", "flops": 1000 * (i + 1), "macs": 500 * (i + 1),
                           "params": 100, "share": 1.0 / layers} for i in range(layers)],
        "measurements": ms,
        "evaluation": None if accuracy is None else {"metric": "accuracy", "value": accuracy, "n_samples": 360, "fidelity": {}},
    }


def stored_audit(team, variants: list[dict] | None = None, *, fingerprint=None, device="cpu", **fields) -> Audit:
    audit = make_audit(team, device=device, **fields)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    doc = result_doc(variants)
    if fingerprint is not None:
        doc["fingerprint"] = fingerprint
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    return Audit.objects.get(pk=audit.pk)


def n_variants(n: int, *, with_accuracy: bool = False) -> list[dict]:
    return [
        variant_doc(RECIPES[i], energy=0.002 * (1 - 0.05 * i), accuracy=(0.95 - 0.002 * i) if with_accuracy else None)
        for i in range(n)
    ]


def engine_result() -> dict:
    """A real result document: `python -m workers.engine profile` of the demo's digits MLP
    with every recipe of the day (some skipped on CPU), batch sizes 1, 8, 32 and the digits
    test split as the dataset (accuracy for each variant)."""
    return json.loads((Path(__file__).parent / "data" / "engine_result_digits.json").read_text())


def stored_engine_audit(team, **fields) -> Audit:
    doc = engine_result()
    audit = make_audit(team, device="cpu", **fields)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    return Audit.objects.get(pk=audit.pk)
