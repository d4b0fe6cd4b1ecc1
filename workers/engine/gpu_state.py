"""The GPU's state while it is measured: clocks, temperature, power limit and why the
clocks are held down (NVML "clocks event reasons", formerly "throttle reasons").

A figure measured at 1410 MHz under a 350 W cap is a different figure from one at 1980 MHz
under 700 W; so every GPU measurement window can carry a ``snapshot`` and every
measurement a ``summarize`` of its windows' snapshots.

Every read is guarded: a read the device or driver does not support (NotSupported, a
function an older pynvml lacks) gives None, never an exception. Nothing here imports
pynvml at module import time, nor torch.
"""
from __future__ import annotations

import threading

# nvml.h bit values of nvmlClocksEventReason* (identical to the older
# nvmlClocksThrottleReason* names), with the names we report. The values are part of
# NVML's ABI; pynvml's own constants are preferred when the module has them.
CLOCK_REASONS = (
    ("GpuIdle", 0x1, "gpu_idle"),
    ("ApplicationsClocksSetting", 0x2, "applications_clocks_setting"),
    ("SwPowerCap", 0x4, "sw_power_cap"),
    ("HwSlowdown", 0x8, "hw_slowdown"),
    ("SyncBoost", 0x10, "sync_boost"),
    ("SwThermalSlowdown", 0x20, "sw_thermal"),
    ("HwThermalSlowdown", 0x40, "hw_thermal"),
    ("HwPowerBrakeSlowdown", 0x80, "hw_power_brake"),
    ("DisplayClockSetting", 0x100, "display_clock_setting"),
)
# Reasons that mean the measurement ran slower than the hardware could: power or thermal
# limits (gpu_idle and the clock settings are not slowdowns of a busy GPU).
SLOWDOWN_REASONS = ("sw_power_cap", "hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake")

SNAPSHOT_KEYS = ("sm_clock_mhz", "mem_clock_mhz", "temperature_c", "power_limit_w", "throttle_reasons")


def _nvml(nvml):
    if nvml is not None:
        return nvml
    from workers.engine.meters import nvml_module  # noqa: PLC0415 - lazy, imports pynvml

    return nvml_module()


def _read(nvml, fn_name: str, *args):
    """nvml.<fn_name>(*args), or None when the function is missing or the read fails."""
    fn = getattr(nvml, fn_name, None)
    if fn is None:
        return None
    errors = (getattr(nvml, "NVMLError", Exception), AttributeError, TypeError, ValueError)
    try:
        return fn(*args)
    except errors:
        return None


def reason_bits(nvml=None) -> list[tuple[int, str]]:
    """(bit, name) for each known reason, from pynvml's constants where it has them."""
    out = []
    for suffix, bit, name in CLOCK_REASONS:
        value = None
        if nvml is not None:
            value = getattr(nvml, f"nvmlClocksEventReason{suffix}", None)
            if value is None:
                value = getattr(nvml, f"nvmlClocksThrottleReason{suffix}", None)
        out.append((int(value) if isinstance(value, int) else bit, name))
    return out


def decode_reasons(mask, nvml=None) -> list[str] | None:
    """Names of the bits set in ``mask``; a bit we do not know is ``unknown_0x...``."""
    if mask is None:
        return None
    mask = int(mask)
    names, known = [], 0
    for bit, name in reason_bits(nvml):
        known |= bit
        if mask & bit:
            names.append(name)
    rest = mask & ~known
    bit = 1
    while rest:
        if rest & bit:
            names.append(f"unknown_{bit:#x}")
            rest &= ~bit
        bit <<= 1
    return names


def clock_reasons_mask(handle, nvml=None):
    """The current clocks event reasons (bit mask), newer name first; None if unreadable."""
    nvml = _nvml(nvml)
    mask = _read(nvml, "nvmlDeviceGetCurrentClocksEventReasons", handle)
    if mask is None:
        mask = _read(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", handle)
    return mask


def snapshot(handle, nvml=None) -> dict:
    """The device's state now: ``sm_clock_mhz``, ``mem_clock_mhz``, ``temperature_c``,
    ``power_limit_w`` (the enforced limit), ``throttle_reasons`` (names, [] when none).
    Any value the device cannot report is None."""
    nvml = _nvml(nvml)
    sm_id = getattr(nvml, "NVML_CLOCK_SM", 1)
    mem_id = getattr(nvml, "NVML_CLOCK_MEM", 2)
    temp_id = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
    limit_mw = _read(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)
    if limit_mw is None:
        limit_mw = _read(nvml, "nvmlDeviceGetPowerManagementLimit", handle)
    sm = _read(nvml, "nvmlDeviceGetClockInfo", handle, sm_id)
    mem = _read(nvml, "nvmlDeviceGetClockInfo", handle, mem_id)
    temp = _read(nvml, "nvmlDeviceGetTemperature", handle, temp_id)
    return {
        "sm_clock_mhz": int(sm) if sm is not None else None,
        "mem_clock_mhz": int(mem) if mem is not None else None,
        "temperature_c": float(temp) if temp is not None else None,
        "power_limit_w": round(limit_mw / 1000.0, 3) if limit_mw is not None else None,
        "throttle_reasons": decode_reasons(clock_reasons_mask(handle, nvml), nvml),
    }


def summarize(snapshots: list[dict]) -> dict:
    """One measurement's device state from its windows' snapshots (None values skipped):
    SM/memory clock min and mean, temperature max, the power limit(s) seen, and every
    throttle reason seen in any window (in the order first seen); ``slowdown`` is true when
    any of them is a power or thermal slowdown."""
    def values(key):
        return [s[key] for s in snapshots if s.get(key) is not None]

    sm, mem, temp, limits = values("sm_clock_mhz"), values("mem_clock_mhz"), values("temperature_c"), values("power_limit_w")
    reasons: list[str] = []
    any_reasons = False
    for s in snapshots:
        if s.get("throttle_reasons") is not None:
            any_reasons = True
            reasons += [r for r in s["throttle_reasons"] if r not in reasons]
    distinct_limits = sorted(set(limits))
    return {
        "sm_clock_mhz": round(sum(sm) / len(sm), 1) if sm else None,
        "sm_clock_mhz_min": min(sm) if sm else None,
        "mem_clock_mhz": round(sum(mem) / len(mem), 1) if mem else None,
        "temperature_c": round(sum(temp) / len(temp), 1) if temp else None,
        "temperature_c_max": max(temp) if temp else None,
        "power_limit_w": distinct_limits[0] if len(distinct_limits) == 1 else None,
        "power_limits_seen_w": distinct_limits,
        "throttle_reasons": reasons if any_reasons else None,
        "slowdown": any(r in SLOWDOWN_REASONS for r in reasons),
        "snapshots": len(snapshots),
    }


class StateWatch:
    """Snapshots every ``interval_s`` in a daemon thread (the worker uses it around a whole
    engine run, which it cannot see inside); ``stop()`` returns ``summarize`` of them."""

    def __init__(self, handle, nvml=None, interval_s: float = 1.0):
        self.handle = handle
        self.nvml = _nvml(nvml)
        self.interval_s = interval_s
        self.snapshots: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-state-watch", daemon=True)

    def _run(self) -> None:
        while True:
            self.snapshots.append(snapshot(self.handle, self.nvml))
            if self._stop.wait(self.interval_s):
                return

    def start(self) -> "StateWatch":
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        self.snapshots.append(snapshot(self.handle, self.nvml))
        return summarize(self.snapshots)
