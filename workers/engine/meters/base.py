"""What every energy meter shares: the interface, the reading and the poller thread.

Every meter is used as ``begin()`` ... ``end() -> Reading`` around one
measurement window; see the package docstring for the methods and the DRAM rule.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

# Relative uncertainty of each method (one standard uncertainty, as a fraction
# of the figure). Where each comes from:
# - nvml-counter: nvidia-smi documents board power draw as accurate to
#   +/- 5 W; on a data-centre GPU drawing 100-700 W under load that is 1-5%,
#   we take the conservative 5%. The counter integrates the same sensor.
# - nvml-power-sampling: the same sensor, plus sampling error: on Ampere and
#   newer nvmlDeviceGetPowerUsage returns a 1 s running average and transients
#   shorter than the poll interval are missed (Yang et al. 2024, "Part-time
#   power measurements: nvidia-smi's lack of attention"). Seen here on an H100:
#   over a 3 s bf16 matmul burst from idle the sampled integral read 16% below
#   the counter (the averaged reading lags the ramp); windows that start warm
#   and last 10 s shrink that. Hence 15%.
# - rapl: Intel RAPL is measured, not modelled, since Haswell and tracks
#   external meters within a few percent (Hackenberg et al. 2015); AMD's
#   RAPL is less validated. We use 5% on Intel, 10% when the CPU is AMD.
#   RAPL covers the whole package, not only this process: idle subtraction
#   handles the rest of the machine.
# - estimate-tdp (CPU): an attribution, not a measurement. Its uncertainty is not this table's:
#   TdpEstimateMeter states an asymmetric interval [x/k1, x*k2] (cpu_table.estimate_bounds: the
#   load curve's error against CodeCarbon's RAPL profiles, times the spread of the candidate rows
#   when the CPU is identified only by its generation) and uncertainty_rel is its half-width.
#   The 0.5 below is kept for callers that ask for the method's nominal figure.
UNCERTAINTY = {
    "nvml-counter": 0.05,
    "nvml-power-sampling": 0.15,
    "rapl": 0.05,
    "rapl-amd": 0.10,
    "estimate-tdp": 0.5,
    "estimate-gpu-tdp": 1.0,
}

GPU_MAX_PLAUSIBLE_W = 3000.0


class MeterError(RuntimeError):
    """The meter asked for cannot work on this machine."""


@dataclass
class Reading:
    energy_j: float
    duration_s: float
    avg_power_w: float
    trace: list = field(default_factory=list)  # [(t_s since begin, watts)]
    flags: list = field(default_factory=list)
    # Every assumed figure behind an estimate (None for a hardware meter): see
    # TdpEstimateMeter.assumptions_for. Goes into the measurement as energy_assumptions.
    assumptions: dict | None = None
    # Joules of this window by domain, where the meter has them: {"package": J, "dram": J}.
    # energy_j is the package (see the DRAM rule above); {} when the meter has no domains.
    domains: dict = field(default_factory=dict)


class Meter:
    method: str = ""
    estimated: bool = False
    uncertainty_rel: float = 0.0
    # False for a meter that assumes a constant draw: it cannot see idle, so the idle
    # baseline is not measured with it (0 W, flagged) instead of equalling the load.
    reads_idle: bool = True

    def __init__(self) -> None:
        self.flags: list[str] = []  # standing flags, added to every reading

    def begin(self) -> None:
        raise NotImplementedError

    def end(self) -> Reading:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _reading(self, energy_j: float, duration_s: float, trace, flags, max_w: float) -> Reading:
        avg = energy_j / duration_s if duration_s > 0 else 0.0
        flags = _unique(self.flags + list(flags) + plausibility_flags(energy_j, duration_s, avg, max_w))
        return Reading(energy_j, duration_s, avg, trace, flags)


def plausibility_flags(energy_j: float, duration_s: float, avg_power_w: float, max_w: float) -> list[str]:
    """Never report 0 J silently: a zero or out-of-range reading is flagged."""
    flags = []
    if not math.isfinite(energy_j) or energy_j <= 0.0:
        flags.append("zero-energy")
    if not math.isfinite(avg_power_w) or avg_power_w < 0.0 or avg_power_w > max_w:
        flags.append("implausible-power")
    return flags


def _unique(items):
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


class _Poller:
    """Calls fn() every interval_s in a daemon thread until stop()."""

    def __init__(self, interval_s: float, fn):
        self._interval = interval_s
        self._fn = fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="energy-meter-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._fn()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
