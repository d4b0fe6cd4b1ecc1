"""The engine's result document (docs/ENGINE_INTERFACE.md) as rows: variants, measurements,
evaluations, and the audit's own fields. Schema 1 documents (stored before paired rounds,
grades and generation) still store: every schema-2 field is optional here."""
from __future__ import annotations

import json

from workers.result_schema import check_reference

from ..models import Audit, Evaluation, Measurement, Variant

# "source key in the result: model field" (same name where there is no colon). Required in
# every schema.
MEASUREMENT_FIELDS = [
    "latency_ms_mean:latency_mean_ms",
    "throughput_samples_per_s",
    "energy_j_per_inference",
    "energy_j_per_inference_active",
    "energy_j_per_sample",
    "wh_per_1000_inferences",
    "samples_per_joule",
    "avg_power_w",
    "idle_power_w",
    "energy_method",
    "energy_estimated",
    "energy_uncertainty_rel",
    "co2e_g_per_inference",
    "iterations",
    "windows",
    "window_s",
]

# Optional: absent in throughput timing mode (per-call figures), in schema 1 (the rest), or on
# forward measurements (the generation figures).
OPTIONAL_MEASUREMENT_FIELDS = [
    "latency_ms_std:latency_std_ms",
    "latency_ms_p50:latency_p50_ms",
    "latency_ms_p95:latency_p95_ms",
    "latency_ms_p99:latency_p99_ms",
    "latency_ci95_ms",
    "peak_memory_bytes",
    "cv",
    "latency_ci95_rel",
    "window_cv",
    "energy_uncertainty_method_rel",
    "energy_uncertainty_stat_rel",
    "energy_assumptions",
    "meter_resolution_s",
    "meter_overhead_s",
    "prompt_tokens",
    "new_tokens",
    "ttft_ms_p50",
    "ttft_ms_p95",
    "tpot_ms_p50",
    "tpot_ms_p95",
    "output_tokens_per_s",
    "energy_j_per_prompt_token",
    "energy_j_per_output_token",
    "energy_j_per_output_token_uncertainty_rel",
    "energy_j_per_request",
    "prefill_energy_share",
    "power_limit_w",
]

# Optional with a default other than None.
DEFAULTED_MEASUREMENT_FIELDS = {
    "power_trace": list,
    "flags": list,
    "quality_reasons": list,
    "energy_domains": dict,
    "energy_boundaries": dict,
    "energy_boundary": lambda: "device",
    "co2e_boundary": lambda: "device",
    "window_means_ms": list,
    "window_energy_j": list,
    "scenario": lambda: "forward",
    "timing_mode": lambda: "latency",
    "quality_grade": str,
    "backend": str,
}

DEVICE_STATE_KEYS = ("sm_clock_mhz", "sm_clock_mhz_min", "mem_clock_mhz", "temperature_c", "temperature_c_max",
                     "power_limits_seen_w", "throttle_reasons", "slowdown")


def _split(spec: str) -> tuple[str, str]:
    source, _, target = spec.partition(":")
    return source, target or source


def measurement_from_result(variant: Variant, doc: dict, comparison: dict | None) -> Measurement:
    values = {}
    for spec in MEASUREMENT_FIELDS:
        source, target = _split(spec)
        values[target] = doc[source]
    for spec in OPTIONAL_MEASUREMENT_FIELDS:
        source, target = _split(spec)
        values[target] = doc.get(source)
    for key, default in DEFAULTED_MEASUREMENT_FIELDS.items():
        value = doc.get(key)
        values[key] = default() if value is None else value
    values["device_state"] = {k: doc[k] for k in DEVICE_STATE_KEYS if doc.get(k) is not None}
    return Measurement(variant=variant, batch_size=doc["batch_size"], input_shape=doc.get("input_shape", {}),
                       comparison=comparison, **values)


def evaluation_from_result(variant: Variant, doc: dict) -> Evaluation:
    labelled = doc.get("labelled")
    if labelled is None:  # schema 1: an evaluation was always a labelled one
        labelled = doc.get("metric") is not None
    higher = doc.get("fidelity_higher_is_better")
    return Evaluation(
        variant=variant,
        metric=doc.get("metric") or "",
        value=doc.get("value"),
        n_samples=doc.get("n_samples") or 0,
        fidelity=doc.get("fidelity") or {},
        labelled=bool(labelled),
        fidelity_metric=doc.get("fidelity_metric") or "",
        fidelity_value=doc.get("fidelity_value"),
        fidelity_higher_is_better=True if higher is None else bool(higher),
    )


# What the engine says of a variant beyond the columns (loaders.precision_keys).
VARIANT_DETAIL_KEYS = ("dtype", "stored_dtype", "baseline_dtype")
# A serving audit's figures per load level and its paired comparisons per level (result_schema
# ServingLevel, ServingComparison): kept whole in the variant's details.
SERVING_KEYS = ("serving", "serving_comparison", "serving_failed")


def with_checked_reference(result: dict) -> dict:
    """The result with its "reference" section checked against the worker's schema, whoever
    stores it: a malformed section (a NaN ratio, an unknown verdict) is dropped with a warning
    that says why, and the audit's own measurements are stored all the same."""
    if not isinstance(result, dict) or result.get("reference") is None:
        return result
    reference, dropped = check_reference(result["reference"])
    warnings = list(result.get("warnings") or []) + ([dropped] if dropped else [])
    return {**result, "reference": reference, "warnings": warnings}


def check_storable(result: dict) -> None:
    """The last line before the rows: a NaN or an infinity stored in a float column breaks every
    page, export and budget check that reads it. The worker's schema (workers/result_schema.py)
    refuses them first; this holds for any other caller too. Raises ValueError."""
    try:
        json.dumps(result, allow_nan=False, default=str)
    except ValueError:
        raise ValueError("the result holds a number that is not finite (NaN or infinity); it cannot be stored") from None


def store_variants(audit: Audit, result: dict) -> None:
    """Replace the audit's variants with the result's (a previous attempt may have died
    mid-write); the caller holds the transaction."""
    audit.variants.all().delete()
    measurements, evaluations = [], []
    for position, doc in enumerate(result.get("variants", [])):
        comparisons = {c.get("batch_size"): c for c in doc.get("comparison") or []}
        variant = Variant.objects.create(
            audit=audit,
            position=position,
            recipe=doc["recipe"],
            recipe_params=doc.get("recipe_params") or {},
            status=doc["status"],
            error=doc.get("error") or "",
            params=doc.get("params"),
            nonzero_params=doc.get("nonzero_params"),
            size_bytes=doc.get("size_bytes"),
            flops=doc.get("flops"),
            macs=doc.get("macs"),
            layer_profile=doc.get("layer_profile") or [],
            notes=doc.get("notes") or [],
            comparison=doc.get("comparison") or [],
            details={k: doc[k] for k in VARIANT_DETAIL_KEYS + SERVING_KEYS if doc.get(k) is not None},
        )
        measurements += [measurement_from_result(variant, m, comparisons.get(m["batch_size"]))
                         for m in doc.get("measurements") or []]
        if doc.get("evaluation"):
            evaluations.append(evaluation_from_result(variant, doc["evaluation"]))
    Measurement.objects.bulk_create(measurements)
    Evaluation.objects.bulk_create(evaluations)


def apply_result_fields(audit: Audit, result: dict) -> None:
    """The audit-level parts of the result (the caller saves)."""
    quality = result.get("quality") or {}
    audit.schema_version = int(result.get("schema_version") or 1)
    audit.fingerprint = result.get("fingerprint") or {}
    audit.engine_version = str(result.get("engine_version", ""))[:20]
    audit.warnings = result.get("warnings") or []
    audit.drift = result.get("drift")
    audit.scenario = result.get("scenario") or {}
    audit.quality_grade = str(quality.get("grade") or "")[:1]
    audit.quality_reasons = list(quality.get("reasons") or [])
    audit.tradeoff = result.get("tradeoff")
    audit.carbon = result.get("carbon") or {}
    audit.sandbox = result.get("sandbox") or {}
    audit.power_sweep = result.get("power_sweep")
    audit.frontier = result.get("frontier")
    audit.reference = result.get("reference")
    audit.run_timing = result.get("run_timing")
