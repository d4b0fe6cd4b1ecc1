"""A fake ``pynvml`` module whose counters the tests control.

Inject with ``monkeypatch.setitem(sys.modules, "pynvml", make_nvml([...]))``.
"""
import time
import types
from dataclasses import dataclass, field


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's name
    pass


class NVMLError_NotFound(NVMLError):  # noqa: N801
    pass


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


def make_nvml(gpus, *, counter_function=True):
    t0 = time.perf_counter()
    calls = []
    mod = types.ModuleType("pynvml")
    mod.NVMLError = NVMLError
    mod.NVMLError_NotSupported = NVMLError_NotSupported
    mod.NVMLError_NotFound = NVMLError_NotFound
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
    mod.nvmlDeviceGetEnforcedPowerLimit = lambda h: int(h.power_limit_w * 1000)
    mod.nvmlDeviceGetName = lambda h: h.name
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 << 30, used=0, free=80 << 30)
    mod.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    mod.nvmlSystemGetCudaDriverVersion = lambda: 12040
    return mod
