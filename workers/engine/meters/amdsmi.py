"""``amdsmi-counter``: AMD GPUs (ROCm) through AMD's ``amdsmi`` Python package.

The energy figure is the difference of ``amdsmi_get_energy_count`` over the window: a dict with
the accumulator (``energy_accumulator``; ROCm 6.0's bindings name it ``power``) and the
``counter_resolution`` in microjoules per count, so joules = counts x resolution / 1e6. A
power sampler (``amdsmi_get_power_info``) runs beside it only to draw the trace. AMD documents
the counter as not supported in a virtual-machine guest: there, and where ``amdsmi`` is not
installed, a ROCm audit is refused with a message that says why (``MeterError``) rather than
given a figure that no counter stands behind.

Torch on ROCm calls its devices "cuda"; a "cuda" device on a machine without NVML but with
amdsmi is measured here too (``select_nvml_meter`` falls back to it). Device N is amdsmi's
processor handle N (HIP_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES renumber like CUDA's; the
visible index is taken as amdsmi's index, which holds where nothing renumbers them).
"""
from __future__ import annotations

import threading
import time

from .base import GPU_MAX_PLAUSIBLE_W, UNCERTAINTY, Meter, MeterError, Reading, _Poller
from .nvml_common import NVML_SAMPLE_INTERVAL_S, trapezoid_j, visible_index

# AMD does not publish an accuracy for the counter; it integrates the same SMU power telemetry
# as the power reading. Taken as NVML's sampled figure (15%) until a wall-meter comparison exists.
UNCERTAINTY.setdefault("amdsmi-counter", 0.15)
AMDSMI_ABSENT = ("AMD GPU energy needs AMD's amdsmi Python package (ROCm 6 or newer, "
                 "/opt/rocm/share/amd_smi; pip install amdsmi of the same version)")


def amdsmi_module():
    """Import amdsmi lazily (tests inject a fake one into sys.modules)."""
    import amdsmi  # noqa: PLC0415

    return amdsmi


def _counter_j(amdsmi, handle) -> float:
    info = amdsmi.amdsmi_get_energy_count(handle)
    counts = info.get("energy_accumulator", info.get("power"))
    if counts is None:
        raise MeterError(f"amdsmi_get_energy_count returned no accumulator: {sorted(info)}")
    return float(counts) * float(info["counter_resolution"]) / 1e6


def _power_w(amdsmi, handle) -> float | None:
    try:
        info = amdsmi.amdsmi_get_power_info(handle)
    except Exception:  # noqa: BLE001 - the trace is optional
        return None
    for key in ("current_socket_power", "average_socket_power", "socket_power"):
        value = info.get(key)
        if isinstance(value, (int, float)) and value >= 0:
            return float(value)
    return None


class AmdSmiCounterMeter(Meter):
    method = "amdsmi-counter"
    estimated = False
    uncertainty_rel = UNCERTAINTY["amdsmi-counter"]

    def __init__(self, amdsmi, handle, index: int, handles: int, options: dict | None = None):
        super().__init__()
        options = options or {}
        self.amdsmi = amdsmi
        self.handle = None  # not an NVML handle: the per-window NVML snapshot must not run
        self.amd_handle = handle
        self.index = index
        self._handles = handles
        self.interval_s = min(float(options.get("nvml_sample_interval_s") or NVML_SAMPLE_INTERVAL_S), 0.1)
        self._lock = threading.Lock()
        self._poller: _Poller | None = None

    def device_count(self) -> int:
        return self._handles

    def _sample(self) -> None:
        watts = _power_w(self.amdsmi, self.amd_handle)
        if watts is None:
            return
        with self._lock:
            self._samples.append((time.perf_counter() - self._t0, watts))

    def begin(self) -> None:
        self._samples = []
        self._t0 = time.perf_counter()
        self._e0 = _counter_j(self.amdsmi, self.amd_handle)
        self._sample()
        self._poller = _Poller(self.interval_s, self._sample)
        self._poller.start()

    def end(self) -> Reading:
        try:
            e1 = _counter_j(self.amdsmi, self.amd_handle)
            duration = time.perf_counter() - self._t0
        finally:
            if self._poller is not None:
                self._poller.stop()
                self._poller = None
        self._sample()
        flags = []
        energy = e1 - self._e0
        if energy < 0:  # the accumulator was reset (driver reload): fall back to the samples
            flags.append("counter-reset-sampled")
            energy = trapezoid_j(self._samples)
        trace = list(self._samples) or [(0.0, energy / duration if duration else 0.0)]
        return self._reading(energy, duration, trace, flags, GPU_MAX_PLAUSIBLE_W)

    def close(self) -> None:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        try:
            self.amdsmi.amdsmi_shut_down()
        except Exception:  # noqa: BLE001 - closing must not fail a measurement
            pass


def select_amdsmi_meter(device: str, options: dict | None = None) -> AmdSmiCounterMeter:
    """The amdsmi counter of ``device`` ("rocm", "rocm:N", or "cuda:N" on ROCm torch); a
    ``MeterError`` that says what is missing where amdsmi or its counter is absent."""
    try:
        amdsmi = amdsmi_module()
    except ImportError as exc:
        raise MeterError(f"{AMDSMI_ABSENT}: {exc}") from exc
    try:
        amdsmi.amdsmi_init()
        handles = amdsmi.amdsmi_get_processor_handles()
    except Exception as exc:  # noqa: BLE001 - AmdSmiException and driver errors alike
        raise MeterError(f"amdsmi could not start: {type(exc).__name__}: {exc}") from exc
    index = visible_index(device)
    if index >= len(handles):
        amdsmi.amdsmi_shut_down()
        raise MeterError(f"{device}: amdsmi sees {len(handles)} GPU(s)")
    handle = handles[index]
    try:
        _counter_j(amdsmi, handle)
    except Exception as exc:  # noqa: BLE001
        amdsmi.amdsmi_shut_down()
        raise MeterError(f"{device}: amdsmi has no energy counter here ({type(exc).__name__}: {exc}; "
                         "AMD documents it as unsupported in a virtual-machine guest)") from exc
    return AmdSmiCounterMeter(amdsmi, handle, index, len(handles), options)
