"""The host fingerprint: no torch at import, GPU facts from (fake) NVML."""
import importlib.util
import subprocess
import sys
from pathlib import Path

from workers.engine.fingerprint import host_fingerprint

spec = importlib.util.spec_from_file_location("_audit_fake_pynvml", Path(__file__).with_name("fake_pynvml.py"))
fake = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = fake
spec.loader.exec_module(fake)


def test_importing_does_not_import_torch():
    code = ("import sys, workers.engine.fingerprint as f, workers.engine.meters, workers.engine.sandbox, workers.engine.supervise; "
            "fp = f.host_fingerprint('cpu'); "
            "assert 'torch' not in sys.modules and 'pynvml' not in sys.modules, sorted(sys.modules); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "ok", out.stderr


def test_cpu_fingerprint():
    fp = host_fingerprint("cpu")
    assert fp["cpu_model"]
    assert fp["cpu_logical_cores"] >= fp["cpu_physical_cores"] >= 1
    assert fp["ram_bytes"] > 0
    assert fp["python"].count(".") == 2
    assert fp["versions"]["torch"].startswith("2.")
    assert set(fp["versions"]) >= {"torch", "transformers", "onnxruntime"}
    assert fp["torch_threads"] >= 1
    assert "gpu" not in fp


def test_cuda_fingerprint_from_nvml(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")
    a = fake.FakeGPU("GPU-aaaa", name="NVIDIA A100-SXM4-40GB", power_limit_w=400.0)
    b = fake.FakeGPU("GPU-bbbb", name="NVIDIA H100 80GB HBM3", power_limit_w=700.0, mig_mode=1)
    monkeypatch.setitem(sys.modules, "pynvml", fake.make_nvml([a, b]))
    fp = host_fingerprint("cuda")
    assert fp["gpu"] == {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-bbbb", "power_limit_w": 700.0,
                         "memory_bytes": 80 << 30, "mig_enabled": True}
    assert fp["gpu_driver"] == "550.54.15" and fp["cuda_driver_version"] == "12.4"
    assert [g["uuid"] for g in fp["gpus"]] == ["GPU-aaaa", "GPU-bbbb"]


def test_cuda_fingerprint_without_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    fp = host_fingerprint("cuda")
    assert fp["gpu"] is None and "NVML unavailable" in fp["gpu_error"]
