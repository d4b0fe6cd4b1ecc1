"""The hardware and software a measurement ran on, stored with every result.

Imported by the web process when a worker registers itself: nothing here
imports torch (versions come from importlib.metadata), and pynvml is imported
only when a CUDA device is asked about.
"""
from __future__ import annotations

import functools
import os
import platform
import socket
import sys
from importlib import metadata

PACKAGES = ("torch", "transformers", "onnxruntime", "onnx", "numpy", "safetensors", "nvidia-ml-py")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per logical CPU (empty where there is none)."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()  # noqa: SIM115
    except OSError:
        return []
    cpus = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip()] = value.strip()
        if entry:
            cpus.append(entry)
    return cpus


def cpu_model() -> str:
    for cpu in _cpuinfo():
        for key in ("model name", "Hardware", "Processor", "cpu model"):
            if cpu.get(key):
                return cpu[key]
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> int:
    """Distinct (physical id, core id) pairs; psutil's figure when cpuinfo lacks them."""
    pairs = {(c.get("physical id"), c.get("core id")) for c in _cpuinfo() if "core id" in c}
    if pairs:
        return len(pairs)
    try:
        import psutil  # noqa: PLC0415

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def logical_cpus_per_package() -> int:
    """Logical CPUs in one package as the OS sees it ("siblings"); in a VM that is the vCPUs."""
    for cpu in _cpuinfo():
        if cpu.get("siblings", "").isdigit():
            return int(cpu["siblings"])
    return os.cpu_count() or 1


def ram_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


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
