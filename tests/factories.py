"""Rows for tests that need an audit without going through an upload."""
from django.core.files.base import ContentFile

from audit.models import Audit, ModelAsset, ModelVersion

from .models import mlp_safetensors_bytes


def make_version(team, *, name="digits-mlp", label="v1", user=None) -> ModelVersion:
    import hashlib

    content = mlp_safetensors_bytes()
    asset, _ = ModelAsset.objects.get_or_create(team=team, name=name)
    version = ModelVersion(
        asset=asset, label=label, format="safetensors", sha256=hashlib.sha256(content + label.encode()).hexdigest(),
        size_bytes=len(content), uploaded_by=user,
    )
    version.file.save("model.safetensors", ContentFile(content), save=False)
    version.save()
    return version


def make_audit(team, **fields) -> Audit:
    version = fields.pop("model_version", None) or make_version(team, label=f"v{ModelVersion.objects.count() + 1}")
    defaults = {"options": {"batch_sizes": [1], "recipes": ["baseline"]}, "target_queue": "cpu"}
    defaults.update(fields)
    return Audit.objects.create(model_version=version, **defaults)


def measurement_doc(batch_size=1, **overrides) -> dict:
    doc = {
        "batch_size": batch_size, "input_shape": {"input": [batch_size, 64]}, "iterations": 500, "windows": 3,
        "window_s": 1.0, "latency_ms_mean": 0.21, "latency_ms_std": 0.02, "latency_ms_p50": 0.2,
        "latency_ms_p95": 0.25, "latency_ms_p99": 0.3, "latency_ci95_ms": 0.002, "cv": 0.09,
        "throughput_samples_per_s": 4800.0 * batch_size, "energy_method": "estimate-tdp", "energy_estimated": True,
        "energy_uncertainty_rel": 0.05, "energy_j_per_inference": 0.002, "energy_j_per_inference_active": 0.0015,
        "energy_j_per_sample": 0.002 / batch_size, "wh_per_1000_inferences": 0.002 * 1000 / 3600,
        "samples_per_joule": batch_size / 0.002, "avg_power_w": 10.0, "idle_power_w": 2.5,
        "co2e_g_per_inference": 0.002 / 3.6e6 * 475, "peak_memory_bytes": 200_000_000,
        "power_trace": [[0.0, 9.8], [0.5, 10.1]], "flags": [],
    }
    doc.update(overrides)
    return doc


def result_doc(variants=None) -> dict:
    return {
        "schema_version": 1, "engine_version": "0.1.0", "device": "cpu",
        "model": {"format": "safetensors", "architecture": "mlp"},
        "fingerprint": {"cpu": {"model": "Test CPU", "logical_cores": 2}, "torch": "2.13.0"},
        "carbon": {"intensity_g_per_kwh": 475.0, "pue": 1.0, "source": "default"},
        "variants": variants if variants is not None else [
            {"recipe": "baseline", "recipe_params": {}, "status": "succeeded", "error": "", "params": 2410,
             "nonzero_params": 2410, "size_bytes": 9640, "flops": 4672, "macs": 2336,
             "layer_profile": [{"name": "0", "type": "Linear", "flops": 4096, "macs": 2048, "params": 2080, "share": 0.88}],
             "measurements": [measurement_doc(1), measurement_doc(8)], "evaluation": None},
        ],
        "warnings": [],
    }
