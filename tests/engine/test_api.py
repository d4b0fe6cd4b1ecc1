"""The engine as a library: ``profile(...)`` and measurement windows around one's own code."""
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine import models as m
from workers.engine.api import EnergyMonitor, profile

spec = importlib.util.spec_from_file_location("_audit_fake_pynvml_api", Path(__file__).with_name("fake_pynvml.py"))
fake = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = fake
spec.loader.exec_module(fake)


def test_importing_the_api_loads_neither_torch_nor_pynvml():
    code = "import sys, workers.engine.api; print('torch' in sys.modules, 'pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["False", "False"]


def test_profile_is_the_audit_document(mlp_safetensors):
    doc = profile(mlp_safetensors, recipes=["baseline", "int8-dynamic"], options=dict(m.FAST_OPTIONS, rounds=3))
    assert doc["schema_version"] == 2 and [v["status"] for v in doc["variants"]] == ["succeeded", "succeeded"]
    assert doc["variants"][1]["comparison"][0]["energy_ratio_ci95"]


def test_profile_compares_with_a_reference_version(mlp_safetensors):
    doc = profile(mlp_safetensors, options=dict(m.FAST_OPTIONS, rounds=3),
                  reference={"path": str(mlp_safetensors), "label": "v1 (approved)"})
    ref = doc["reference"]
    assert ref["label"] == "v1 (approved)" and ref["status"] == "compared", ref.get("reason")
    assert [row["batch_size"] for row in ref["per_batch_size"]] == [1]
    assert ref["per_batch_size"][0]["verdict"] not in ("costs more", "costs less")  # the same file twice


def test_windows_nest_and_report_energy_on_the_nvml_counter(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", fake.make_nvml([fake.FakeGPU("GPU-a", energy_step_mj=2000)]))
    monitor = EnergyMonitor(device="cuda", idle_s=0.05)
    monitor.begin_window("outer", sync=False)
    monitor.begin_window("inner", sync=False)
    time.sleep(0.05)
    inner = monitor.end_window("inner", sync=False)
    outer = monitor.end_window("outer", sync=False)
    assert inner.method == outer.method == "nvml-counter" and not inner.estimated
    # the fake counter advances 2 J on every read: the outer window spans the inner one's reads
    assert inner.energy_j >= 2.0 and outer.energy_j >= inner.energy_j + 2.0
    assert outer.time_s >= inner.time_s > 0.04
    with pytest.raises(ValueError, match="no open window"):
        monitor.end_window("inner")


def test_cpu_windows_without_a_counter_are_labelled_estimates():
    monitor = EnergyMonitor(device="cpu", idle_s=0.0, options={"powercap_root": "/nonexistent"})
    monitor.begin_window("work")
    deadline = time.perf_counter() + 0.1
    while time.perf_counter() < deadline:
        pass
    window = monitor.end_window("work")
    assert window.estimated and window.method.startswith("estimate") and window.energy_j > 0
    assert window.uncertainty_rel >= 0.2
    with pytest.raises(ValueError, match="already open"):
        monitor.begin_window("x")
        monitor.begin_window("x")
