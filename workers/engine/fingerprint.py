"""The hardware and software a measurement ran on, stored with every result.

Imported by the web process when a worker registers itself: nothing here
imports torch (versions come from importlib.metadata), and pynvml is imported
only when a CUDA device is asked about.
"""
from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata

from workers.engine.cpuinfo import (  # noqa: F401 - re-exported: callers read them from here
    _cpuinfo,
    cpu_model,
    cpu_packages,
    logical_cpus_per_package,
    physical_cores,
    ram_bytes,
)

PACKAGES = ("torch", "transformers", "onnxruntime", "onnx", "numpy", "safetensors", "nvidia-ml-py")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def torch_threads() -> tuple[int, str]:
    """(intra-op thread count, how it was obtained).

    Read from torch only when it is already imported (the engine child);
    otherwise the count torch will pick: OMP_NUM_THREADS, else physical cores.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.get_num_threads(), "torch.get_num_threads()"
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env), "OMP_NUM_THREADS"
    return physical_cores(), "expected default (physical cores)"


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gpu_info(nvml, handle) -> dict:
    from workers.engine.meters import _text  # noqa: PLC0415

    def safe(fn, *args):
        try:
            return fn(*args)
        except (nvml.NVMLError, AttributeError):
            return None

    limit_mw = safe(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    mig = safe(nvml.nvmlDeviceGetMigMode, handle)
    name = safe(nvml.nvmlDeviceGetName, handle)
    uuid = safe(nvml.nvmlDeviceGetUUID, handle)
    return {
        "name": _text(name) if name is not None else None,
        "uuid": _text(uuid) if uuid is not None else None,
        "power_limit_w": limit_mw / 1000.0 if limit_mw is not None else None,
        "memory_bytes": getattr(safe(nvml.nvmlDeviceGetMemoryInfo, handle), "total", None),
        "mig_enabled": bool(mig[0]) if mig else False,
    }


def _cuda_version(nvml) -> str | None:
    """The CUDA version the driver supports, and torch's build CUDA if torch is loaded."""
    try:
        v = nvml.nvmlSystemGetCudaDriverVersion()
        driver_cuda = f"{v // 1000}.{(v % 1000) // 10}"
    except (nvml.NVMLError, AttributeError):
        driver_cuda = None
    return driver_cuda


def gpu_fingerprint(device: str) -> dict:
    """The selected GPU (resolved by UUID) and every GPU the process can see."""
    from workers.engine.meters import MeterError, _text, mig_parent, nvml_module, resolve_nvml_handle  # noqa: PLC0415

    try:
        nvml = nvml_module()
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001
        return {"gpu": None, "gpu_error": f"NVML unavailable: {exc}"}
    try:
        try:
            driver = _text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError:
            driver = None
        out = {"gpu_driver": driver, "cuda_driver_version": _cuda_version(nvml)}
        torch = sys.modules.get("torch")
        out["cuda_torch_version"] = getattr(getattr(torch, "version", None), "cuda", None) if torch else None
        try:
            handle, _uuid = resolve_nvml_handle(nvml, device)
            whole, is_mig = mig_parent(nvml, handle)
            info = gpu_info(nvml, whole)
            info["mig_enabled"] = info["mig_enabled"] or is_mig
            out["gpu"] = info
        except (nvml.NVMLError, MeterError, ValueError) as exc:
            out["gpu"] = None
            out["gpu_error"] = str(exc)
        gpus = []
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                gpus.append(gpu_info(nvml, nvml.nvmlDeviceGetHandleByIndex(i)))
        except nvml.NVMLError:
            pass
        out["gpus"] = gpus
        return out
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def host_fingerprint(device: str) -> dict:
    threads, threads_source = torch_threads()
    uname = platform.uname()
    fp = {
        "device": device,
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_physical_cores": physical_cores(),
        "cpu_logical_cores": os.cpu_count() or 1,
        "cpu_available": _available_cpus(),
        "ram_bytes": ram_bytes(),
        "os": f"{uname.system} {uname.release}",
        "platform": platform.platform(),
        "machine": uname.machine,
        "python": platform.python_version(),
        "versions": package_versions(),
        "torch_threads": threads,
        "torch_threads_source": threads_source,
    }
    if device.startswith("cuda"):
        fp.update(gpu_fingerprint(device))
    return fp
