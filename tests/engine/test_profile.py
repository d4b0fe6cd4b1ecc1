"""profile_model / run_request: the result document a user (and the worker) gets."""

import json

import pytest

from tests.engine import models as m
from workers.engine import ENGINE_VERSION, SCHEMA_VERSION
from workers.engine.errors import EngineFailure, FormatError, LoadError
from workers.engine.profile import RECIPES, profile_model, run_request

MEASUREMENT_FIELDS = {
    "batch_size", "input_shape", "iterations", "windows", "window_s", "latency_ms_mean", "latency_ms_std",
    "latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "latency_ci95_ms", "cv", "throughput_samples_per_s",
    "energy_method", "energy_estimated", "energy_uncertainty_rel", "energy_j_per_inference",
    "energy_j_per_inference_active", "energy_j_per_sample", "wh_per_1000_inferences", "samples_per_joule",
    "avg_power_w", "idle_power_w", "co2e_g_per_inference", "peak_memory_bytes", "power_trace", "flags",
    # schema 2
    "scenario", "timing_mode", "rounds", "meter_resolution_s", "meter_overhead_s", "latency_ci95_rel", "target_rel_ci", "window_cv",
    "energy_uncertainty_method_rel", "energy_uncertainty_stat_rel", "energy_assumptions", "energy_domains",
    "window_means_ms", "window_energy_j", "quality_grade", "quality_reasons",
    # issue 23: the boundaries (meters/boundary.py)
    "energy_boundary", "energy_boundaries", "co2e_boundary",
    # issue 20: how long it warmed up, and whether the call time settled
    "warmup_calls", "warmup_s", "warmup_stable",
}
VARIANT_FIELDS = {"recipe", "recipe_params", "status", "error", "params", "nonzero_params", "size_bytes", "flops",
                  "macs", "layer_profile", "measurements", "comparison", "evaluation", "notes",
                  "stored_dtype", "baseline_dtype", "dtype"}


def _check_document(doc):
    assert doc["schema_version"] == SCHEMA_VERSION and doc["engine_version"] == ENGINE_VERSION
    assert set(doc) >= {"model", "device", "fingerprint", "carbon", "variants", "warnings"}
    for variant in doc["variants"]:
        assert set(variant) == VARIANT_FIELDS
        for measurement in variant["measurements"]:
            assert set(measurement) == MEASUREMENT_FIELDS
    json.dumps(doc)  # the worker stores it as JSON


def test_mlp_safetensors_profile(mlp_safetensors):
    events = []
    doc = profile_model(mlp_safetensors, batch_sizes=(1, 4), options=dict(m.FAST_OPTIONS, threads=1),
                        progress=events.append)
    _check_document(doc)
    assert doc["model"]["format"] == "safetensors" and doc["model"]["architecture"] == "mlp"
    assert doc["fingerprint"]["threads"] == 1
    (baseline,) = doc["variants"]
    assert baseline["status"] == "succeeded"
    assert baseline["params"] == baseline["nonzero_params"] == 16 * 32 + 32 + 32 * 16 + 16 + 16 * 4 + 4
    assert baseline["macs"] == 16 * 32 + 32 * 16 + 16 * 4 and baseline["flops"] == 2 * baseline["macs"]
    assert baseline["size_bytes"] == mlp_safetensors.stat().st_size
    assert [x["batch_size"] for x in baseline["measurements"]] == [1, 4]
    assert baseline["measurements"][1]["input_shape"] == {"input": [4, 16]}
    for x in baseline["measurements"]:
        assert x["iterations"] > 10 and x["latency_ms_p50"] > 0 and x["energy_j_per_inference"] > 0
    stages = [e["stage"] for e in events]
    assert stages[0] == "loading" and stages[-1] == "done"
    assert {"counting-flops", "idle-baseline", "measuring"} <= set(stages)
    percents = [e["percent"] for e in events]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert all(e["event"] == "progress" and e["n_variants"] == 1 for e in events)


def test_hf_bert_profile_with_seq_len(bert_zip):
    doc = profile_model(bert_zip, batch_sizes=(2,), seq_len=16, options=m.FAST_OPTIONS)
    _check_document(doc)
    assert doc["model"]["task"] == "text-classification"
    (baseline,) = doc["variants"]
    assert baseline["flops"] > 0 and baseline["layer_profile"]
    assert baseline["measurements"][0]["input_shape"] == {"input_ids": [2, 16], "attention_mask": [2, 16]}


@pytest.mark.parametrize(
    "fixture, seq_len, shape, task",
    [
        ("gpt2_dir", 8, {"input_ids": [1, 8], "attention_mask": [1, 8]}, "text-generation"),
        ("vit_zip", None, {"pixel_values": [1, 3, 32, 32]}, "image-classification"),
    ],
)
def test_gpt2_and_vit_profiles(request, fixture, seq_len, shape, task):
    # the forward-pass scenario stays available for generative models when asked for
    doc = profile_model(request.getfixturevalue(fixture), seq_len=seq_len,
                        options=dict(m.FAST_OPTIONS, time_cap_s=0.1, scenario="forward"))
    _check_document(doc)
    assert doc["model"]["format"] == "hf" and doc["model"]["task"] == task
    (baseline,) = doc["variants"]
    assert baseline["flops"] > 0 and baseline["macs"] == baseline["flops"] // 2
    assert sum(e["flops"] for e in baseline["layer_profile"]) == baseline["flops"]
    assert baseline["measurements"][0]["input_shape"] == shape


def test_onnx_profile_counts_graph_flops(cnn_onnx, cnn_safetensors):
    doc = profile_model(cnn_onnx, batch_sizes=(2,), options=m.FAST_OPTIONS)
    torch_doc_flops = profile_model(cnn_safetensors, options=dict(m.FAST_OPTIONS, time_cap_s=0.05))
    (onnx_variant,) = doc["variants"]
    assert onnx_variant["status"] == "succeeded"
    assert onnx_variant["flops"] == pytest.approx(torch_doc_flops["variants"][0]["flops"], rel=0.01)
    assert onnx_variant["measurements"][0]["input_shape"] == {"input": [2, 3, 16, 16]}
    assert onnx_variant["params"] > 0


def test_unknown_recipe_is_skipped_and_baseline_goes_on(mlp_safetensors):
    doc = profile_model(mlp_safetensors, recipes=("baseline", "int8-magic"), options=m.FAST_OPTIONS)
    baseline, unknown = doc["variants"]
    assert baseline["status"] == "succeeded" and baseline["measurements"]
    assert unknown["status"] == "skipped" and "unknown recipe 'int8-magic'" in unknown["error"]
    assert unknown["measurements"] == []


def test_recipe_that_does_not_apply_or_fails(mlp_safetensors, monkeypatch):
    from workers.engine.profile import Recipe

    def broken(loaded, params):
        raise RuntimeError("cannot compress this")

    monkeypatch.setitem(RECIPES, "onnx-only", Recipe("onnx-only", lambda l, p: l, formats=("onnx",)))
    monkeypatch.setitem(RECIPES, "broken", Recipe("broken", broken, defaults={"bits": 8}))
    doc = profile_model(mlp_safetensors, recipes=("baseline", "onnx-only", "broken"),
                        options=dict(m.FAST_OPTIONS, recipe_params={"broken": {"bits": 4}}))
    baseline, onnx_only, failed = doc["variants"]
    assert baseline["status"] == "succeeded"
    assert onnx_only["status"] == "skipped" and "applies to onnx" in onnx_only["error"]
    assert failed["status"] == "failed" and "cannot compress this" in failed["error"]
    assert failed["recipe_params"] == {"bits": 4}


def test_carbon_settings_flow_into_the_document(mlp_safetensors):
    options = dict(m.FAST_OPTIONS, grid_intensity_g_per_kwh=100.0, pue=1.5, carbon_source="team setting")
    doc = profile_model(mlp_safetensors, options=options)
    assert doc["carbon"] == {"intensity_g_per_kwh": 100.0, "pue": 1.5, "source": "team setting", "pue_known": True}
    x = doc["variants"][0]["measurements"][0]
    # a PUE was set: the grams rest on the facility figure, host (package + DRAM) x PUE
    b = x["energy_boundaries"]
    assert x["co2e_boundary"] == "facility"
    assert b["facility"]["j_per_inference"] == pytest.approx(b["host"]["j_per_inference"] * 1.5)
    assert b["host"]["j_per_inference"] >= x["energy_j_per_inference"]
    assert x["co2e_g_per_inference"] == pytest.approx(b["facility"]["j_per_inference"] / 3.6e6 * 100.0)


def test_refusals_raise_before_measuring(tmp_path):
    with pytest.raises(FormatError, match="pickled nn.Module"):
        profile_model(m.save_pickled_module(tmp_path / "m.pt"), options=m.FAST_OPTIONS)
    with pytest.raises(LoadError, match="architecture"):
        profile_model(m.save_safetensors(tmp_path / "w.safetensors", "mlp", m.MLP_CONFIG, with_metadata=False),
                      options=m.FAST_OPTIONS)


def test_run_request_maps_the_contract_request(mlp_safetensors):
    events = []
    request = {"command": "profile", "path": str(mlp_safetensors), "format": "auto", "device": "cpu",
               "batch_sizes": [2], "seq_len": None, "recipes": ["baseline"], "dataset": None,
               "options": dict(m.FAST_OPTIONS, architecture=None, architecture_config={}, input_overrides={})}
    doc = run_request(request, events.append)
    assert doc["variants"][0]["measurements"][0]["batch_size"] == 2
    assert events[-1]["stage"] == "done"
    with pytest.raises(LoadError, match="unknown engine command"):
        run_request({"command": "evaluate", "path": "x"}, events.append)


def test_through_the_real_sandboxed_child(mlp_safetensors, tmp_path):
    from workers.engine.supervise import run_engine

    request = {"command": "profile", "path": str(mlp_safetensors), "batch_sizes": [1], "options": m.FAST_OPTIONS}
    events = []
    doc = run_engine(request, timeout_s=120, on_event=events.append)
    _check_document(doc)
    assert doc["variants"][0]["status"] == "succeeded"
    assert events and events[-1]["stage"] == "done"
    bad = m.save_pickled_module(tmp_path / "evil.pt")
    with pytest.raises(EngineFailure) as err:
        run_engine(dict(request, path=str(bad)), timeout_s=120, on_event=lambda e: None)
    assert err.value.kind == "load-error" and "pickled nn.Module is refused" in err.value.message


def test_without_a_region_the_world_average_is_used_and_says_where_it_came_from(mlp_safetensors):
    doc = profile_model(mlp_safetensors, options=dict(m.FAST_OPTIONS, carbon_warning="live intensity unavailable: timeout"))
    assert doc["carbon"]["region"] == "WORLD" and doc["carbon"]["intensity_g_per_kwh"] == 481.0
    assert doc["carbon"]["year"] == 2023 and doc["carbon"]["source_url"].startswith("https://")
    assert "live intensity unavailable: timeout" in doc["warnings"]
