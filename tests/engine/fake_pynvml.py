"""A fake ``pynvml`` module whose counters the tests control.

Inject with ``monkeypatch.setitem(sys.modules, "pynvml", make_nvml([...]))``.
"""
import json
import os
import time
import types
from dataclasses import dataclass, field


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's name
    pass


class NVMLError_NotFound(NVMLError):  # noqa: N801
    pass


class NVMLError_NoPermission(NVMLError):  # noqa: N801
    pass


class NVMLError_InvalidArgument(NVMLError):  # noqa: N801
    pass


# pynvml's constants (nvml.h values)
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
CLOCK_REASON_BITS = {
    "GpuIdle": 0x1, "ApplicationsClocksSetting": 0x2, "SwPowerCap": 0x4, "HwSlowdown": 0x8,
    "SyncBoost": 0x10, "SwThermalSlowdown": 0x20, "HwThermalSlowdown": 0x40,
    "HwPowerBrakeSlowdown": 0x80, "DisplayClockSetting": 0x100,
}


@dataclass
class FakeGPU:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    energy_mj: int = 1_000_000
    energy_step_mj: int = 0  # added on every counter read
    counter: bool = True  # nvmlDeviceGetTotalEnergyConsumption supported
    power: object = 100.0  # watts: a number, or a function of seconds since the fake was made
    power_supported: bool = True
    pids: list = field(default_factory=list)
    mig_mode: int = 0
    is_mig: bool = False
    parent: "FakeGPU | None" = None
    power_limit_w: float = 700.0
    # Device state and power-limit management (None: the read raises NotSupported)
    sm_clock_mhz: object = 1980
    mem_clock_mhz: object = 2619
    temperature_c: object = 45
    clock_reasons: object = 0  # bit mask of nvmlClocksEventReason*
    power_limit_min_w: object = 200.0  # None: constraints NotSupported
    power_limit_max_w: float = 700.0
    power_limit_default_w: float = 700.0
    power_limit_settable: bool = True  # False: setting raises NoPermission


def make_nvml(gpus, *, counter_function=True, state_file=None, clocks_event_api=True):
    """``state_file``: a JSON file {uuid: limit in mW} that holds the power limits, so two
    processes share one "device". ``clocks_event_api=False``: only the older
    nvmlDeviceGetCurrentClocksThrottleReasons / nvmlClocksThrottleReason* names exist."""
    t0 = time.perf_counter()
    calls = []
    mod = types.ModuleType("pynvml")
    mod.NVMLError = NVMLError
    mod.NVMLError_NotSupported = NVMLError_NotSupported
    mod.NVMLError_NotFound = NVMLError_NotFound
    mod.NVMLError_NoPermission = NVMLError_NoPermission
    mod.NVMLError_InvalidArgument = NVMLError_InvalidArgument
    mod.NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    mod.NVML_CLOCK_GRAPHICS = NVML_CLOCK_GRAPHICS
    mod.NVML_CLOCK_SM = NVML_CLOCK_SM
    mod.NVML_CLOCK_MEM = NVML_CLOCK_MEM
    mod.state_file = state_file
    mod.calls = calls
    mod.gpus = gpus
    mod.t0 = t0
    all_handles = list(gpus)

    def log(name, *args):
        calls.append((name,) + args)

    def init():
        log("nvmlInit")

    def shutdown():
        log("nvmlShutdown")

    def count():
        return len([g for g in gpus if not g.is_mig])

    def by_index(i):
        log("nvmlDeviceGetHandleByIndex", i)
        return [g for g in gpus if not g.is_mig][i]

    def by_uuid(uuid):
        log("nvmlDeviceGetHandleByUUID", uuid)
        for g in all_handles:
            if g.uuid == uuid:
                return g
        raise NVMLError_NotFound(uuid)

    def get_uuid(h):
        return h.uuid

    def energy(h):
        if not h.counter or h.is_mig:
            raise NVMLError_NotSupported("Not Supported")
        h.energy_mj += h.energy_step_mj
        return h.energy_mj

    def power_usage(h):
        if not h.power_supported or h.is_mig:
            raise NVMLError_NotSupported("Not Supported")
        watts = h.power(time.perf_counter() - t0) if callable(h.power) else h.power
        return int(round(watts * 1000))

    def procs(h):
        return [types.SimpleNamespace(pid=p, usedGpuMemory=1 << 30) for p in h.pids]

    def mig_mode(h):
        return (h.mig_mode, h.mig_mode)

    def is_mig(h):
        return h.is_mig

    def mig_parent(h):
        return h.parent

    mod.nvmlInit = init
    mod.nvmlShutdown = shutdown
    mod.nvmlDeviceGetCount = count
    mod.nvmlDeviceGetHandleByIndex = by_index
    mod.nvmlDeviceGetHandleByUUID = by_uuid
    mod.nvmlDeviceGetUUID = get_uuid
    if counter_function:
        mod.nvmlDeviceGetTotalEnergyConsumption = energy
    mod.nvmlDeviceGetPowerUsage = power_usage
    mod.nvmlDeviceGetComputeRunningProcesses = procs
    mod.nvmlDeviceGetMigMode = mig_mode
    mod.nvmlDeviceIsMigDeviceHandle = is_mig
    mod.nvmlDeviceGetDeviceHandleFromMigDeviceHandle = mig_parent
    mod.nvmlDeviceGetEnforcedPowerLimit = lambda h: limit_mw(h)

    def read_state():
        try:
            with open(state_file) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {}

    def limit_mw(h):
        if state_file is not None:
            return int(read_state().get(h.uuid, int(round(h.power_limit_w * 1000))))
        return int(round(h.power_limit_w * 1000))

    def constraints(h):
        if h.power_limit_min_w is None or h.is_mig:
            raise NVMLError_NotSupported("Not Supported")
        return [int(round(h.power_limit_min_w * 1000)), int(round(h.power_limit_max_w * 1000))]

    def set_limit(h, mw):
        log("nvmlDeviceSetPowerManagementLimit", h.uuid, int(mw))
        if not h.power_limit_settable:
            raise NVMLError_NoPermission("Insufficient Permissions")
        lo, hi = constraints(h)
        if not lo <= int(mw) <= hi:
            raise NVMLError_InvalidArgument("Invalid Argument")
        h.power_limit_w = int(mw) / 1000.0
        if state_file is not None:
            state = read_state()
            state[h.uuid] = int(mw)
            tmp = f"{state_file}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(state, f)
            os.replace(tmp, state_file)

    def guarded(value):
        if value is None:
            raise NVMLError_NotSupported("Not Supported")
        return value

    def clock(h, kind):
        return guarded({NVML_CLOCK_SM: h.sm_clock_mhz, NVML_CLOCK_GRAPHICS: h.sm_clock_mhz,
                        NVML_CLOCK_MEM: h.mem_clock_mhz}.get(kind))

    def temperature(h, sensor):
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError_InvalidArgument("Invalid Argument")
        return guarded(h.temperature_c)

    mod.nvmlDeviceGetPowerManagementLimit = limit_mw
    mod.nvmlDeviceGetPowerManagementLimitConstraints = constraints
    mod.nvmlDeviceGetPowerManagementDefaultLimit = lambda h: int(round(h.power_limit_default_w * 1000))
    mod.nvmlDeviceSetPowerManagementLimit = set_limit
    mod.nvmlDeviceGetClockInfo = clock
    mod.nvmlDeviceGetTemperature = temperature
    mod.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: guarded(h.clock_reasons)
    for name, bit in CLOCK_REASON_BITS.items():
        setattr(mod, f"nvmlClocksThrottleReason{name}", bit)
    if clocks_event_api:
        mod.nvmlDeviceGetCurrentClocksEventReasons = lambda h: guarded(h.clock_reasons)
        for name, bit in CLOCK_REASON_BITS.items():
            setattr(mod, f"nvmlClocksEventReason{name}", bit)
    mod.nvmlDeviceGetName = lambda h: h.name
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 << 30, used=0, free=80 << 30)
    mod.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    mod.nvmlSystemGetCudaDriverVersion = lambda: 12040
    return mod
