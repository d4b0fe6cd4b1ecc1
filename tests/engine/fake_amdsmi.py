"""A fake ``amdsmi`` module whose energy counters the tests control.

Inject with ``monkeypatch.setitem(sys.modules, "amdsmi", make_amdsmi([...]))``. Mirrors the
bindings' shape: amdsmi_init, amdsmi_get_processor_handles, amdsmi_get_energy_count (a dict
with the accumulator and counter_resolution in uJ per count), amdsmi_get_power_info,
amdsmi_shut_down and AmdSmiException.
"""
import types
from dataclasses import dataclass


class AmdSmiException(Exception):
    pass


@dataclass
class FakeAmdGPU:
    counts: int = 1_000_000
    counts_step: int = 0  # added on every counter read
    resolution_uj: float = 15.3  # MI200/MI300 report about 15.3 uJ per count
    power_w: float = 300.0
    counter: bool = True
    old_key: bool = False  # ROCm 6.0's bindings name the accumulator "power"


def make_amdsmi(gpus, *, init_fails=False):
    mod = types.ModuleType("amdsmi")
    mod.AmdSmiException = AmdSmiException
    mod.calls = []

    def init():
        mod.calls.append("init")
        if init_fails:
            raise AmdSmiException("AMDSMI_STATUS_DRIVER_NOT_LOADED")

    def handles():
        return list(gpus)

    def energy(h):
        if not h.counter:
            raise AmdSmiException("AMDSMI_STATUS_NOT_SUPPORTED")
        h.counts += h.counts_step
        key = "power" if h.old_key else "energy_accumulator"
        return {key: h.counts, "counter_resolution": h.resolution_uj, "timestamp": 0}

    def power(h):
        return {"current_socket_power": h.power_w, "average_socket_power": h.power_w}

    def shut_down():
        mod.calls.append("shut_down")

    mod.amdsmi_init = init
    mod.amdsmi_get_processor_handles = handles
    mod.amdsmi_get_energy_count = energy
    mod.amdsmi_get_power_info = power
    mod.amdsmi_shut_down = shut_down
    return mod
