"""NVML access shared by the NVML meters: pynvml imported lazily, the device's
handle by UUID, MIG parents, foreign processes, and the power poller behind both."""
from __future__ import annotations

import os
import sys
import threading
import time

from .base import GPU_MAX_PLAUSIBLE_W, Meter, MeterError, _Poller

NVML_SAMPLE_INTERVAL_S = 0.05  # options["nvml_sample_interval_s"], capped at 0.1
CONTENTION_CHECK_EVERY_S = 1.0


def nvml_module():
    """Import pynvml lazily (tests inject a fake one into sys.modules)."""
    import pynvml  # noqa: PLC0415

    return pynvml


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_index(device: str) -> int:
    """'cuda' -> 0, 'cuda:2' -> 2: the index among the devices CUDA shows us."""
    _, _, idx = device.partition(":")
    return int(idx) if idx.strip() else 0


def _torch_uuid(index: int) -> str | None:
    """The visible device's UUID as CUDA sees it, when torch already holds CUDA.

    Only consulted when torch is already imported: this module never imports it.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        uuid = str(torch.cuda.get_device_properties(index).uuid)
    except Exception:  # noqa: BLE001 - any failure means: fall back to the env
        return None
    return uuid or None


def _match_uuid(nvml, entry: str) -> str:
    """CUDA accepts UUID prefixes in CUDA_VISIBLE_DEVICES; NVML wants the full UUID."""
    for i in range(nvml.nvmlDeviceGetCount()):
        uuid = _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)))
        if uuid.startswith(entry):
            return uuid
    return entry  # a MIG UUID, or unknown: let nvmlDeviceGetHandleByUUID decide


def resolve_nvml_handle(nvml, device: str, options: dict | None = None):
    """NVML handle of the CUDA device ``device`` names, always fetched by UUID.

    CUDA numbers devices fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID,
    while NVML numbers them in PCI bus order, so index N in torch is not index N
    in NVML. Resolution order:

    1. ``options["gpu_uuid"]`` if given;
    2. ``torch.cuda.get_device_properties(i).uuid`` when torch is imported and
       CUDA is up (the child holds CUDA already when it measures): exact;
    3. ``CUDA_VISIBLE_DEVICES``: its i-th entry; a UUID (or prefix: GPU-..., MIG-...)
       is looked up by UUID; an integer is an NVML (PCI order) index whose UUID
       we then use. That integer mapping is exact only with
       CUDA_DEVICE_ORDER=PCI_BUS_ID (the worker sets it);
    4. no CUDA_VISIBLE_DEVICES: NVML index i, then by its UUID.

    Returns (handle, uuid).
    """
    options = options or {}
    index = visible_index(device)
    candidates = []
    if options.get("gpu_uuid"):
        candidates.append(str(options["gpu_uuid"]))
    uuid = _torch_uuid(index)
    if uuid:
        candidates += [uuid] if uuid.startswith(("GPU-", "MIG-")) else [f"GPU-{uuid}", f"MIG-{uuid}"]
    for cand in candidates:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(cand), cand
        except nvml.NVMLError:
            continue
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd.strip():
        entries = [e.strip() for e in cvd.split(",") if e.strip()]
        if index >= len(entries):
            raise MeterError(f"{device} is not visible: CUDA_VISIBLE_DEVICES={cvd!r}")
        entry = entries[index]
        if entry.lstrip("-").isdigit():
            uuid = _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(int(entry))))
        else:
            uuid = _match_uuid(nvml, entry)
    else:
        uuid = _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index)))
    return nvml.nvmlDeviceGetHandleByUUID(uuid), uuid


def mig_parent(nvml, handle):
    """(whole-GPU handle, is_mig). Energy and power exist only for the whole GPU."""
    try:
        if nvml.nvmlDeviceIsMigDeviceHandle(handle):
            return nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle), True
    except (nvml.NVMLError, AttributeError):
        pass
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        return handle, bool(current)
    except (nvml.NVMLError, AttributeError):
        return handle, False


def _power_limit_w(nvml, handle) -> float | None:
    try:
        return nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
    except (nvml.NVMLError, AttributeError):
        return None


def _cuda_context_held() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001
        return False


def foreign_processes(nvml, handle, own_pids: set[int]) -> list[int]:
    """PIDs of compute processes on the GPU other than ours.

    Inside a container NVML reports host PIDs, so our own PID may not appear.
    When none of the listed PIDs is ours but we hold a CUDA context, one of
    them must be us: then only a second process counts as contention.
    """
    try:
        procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except (nvml.NVMLError, AttributeError):
        return []
    pids = [int(p.pid) for p in procs]
    others = [p for p in pids if p not in own_pids]
    if len(others) == len(pids) and pids and _cuda_context_held():
        others = others[1:]
    return others


class _NvmlMeter(Meter):
    """Shared by both NVML meters: the handle, the power poller, contention."""

    def __init__(self, nvml, handle, uuid: str, *, flags=(), options: dict | None = None):
        super().__init__()
        options = options or {}
        self.nvml = nvml
        self.handle = handle
        self.uuid = uuid
        self.flags = list(flags)
        self.interval_s = min(float(options.get("nvml_sample_interval_s") or NVML_SAMPLE_INTERVAL_S), 0.1)
        limit = _power_limit_w(nvml, handle)
        self.max_w = limit * 1.5 if limit else GPU_MAX_PLAUSIBLE_W
        self.own_pids = {os.getpid()}
        self._samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._poller: _Poller | None = None
        self._t0 = 0.0
        self._run_flags: list[str] = []
        self._last_contention_check = 0.0

    def _sample_power(self) -> None:
        try:
            watts = self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0
        except self.nvml.NVMLError:
            return
        now = time.perf_counter()
        with self._lock:
            self._samples.append((now - self._t0, watts))
        if now - self._last_contention_check >= CONTENTION_CHECK_EVERY_S:
            self._check_contention()

    def _check_contention(self) -> None:
        self._last_contention_check = time.perf_counter()
        if foreign_processes(self.nvml, self.handle, self.own_pids) and "contended" not in self._run_flags:
            self._run_flags.append("contended")

    def _start(self) -> None:
        self._samples = []
        self._run_flags = []
        self._t0 = time.perf_counter()
        self._check_contention()
        self._sample_power()
        self._poller = _Poller(self.interval_s, self._sample_power)
        self._poller.start()

    def _stop(self) -> list[tuple[float, float]]:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        self._sample_power()
        self._check_contention()
        with self._lock:
            return list(self._samples)

    def close(self) -> None:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - closing must not fail a measurement
            pass


def trapezoid_j(samples: list[tuple[float, float]]) -> float:
    return sum((t1 - t0) * (w0 + w1) / 2.0 for (t0, w0), (t1, w1) in zip(samples, samples[1:]))
