"""``nvml-counter``: difference of nvmlDeviceGetTotalEnergyConsumption (Volta and newer)."""
from __future__ import annotations

import time

from .base import UNCERTAINTY, Reading
from .nvml_common import _NvmlMeter, trapezoid_j

NVML_COUNTER_RESOLUTION_S = 0.1  # the counter updates about every 100 ms


class NvmlCounterMeter(_NvmlMeter):
    method = "nvml-counter"
    estimated = False
    uncertainty_rel = UNCERTAINTY["nvml-counter"]

    def begin(self) -> None:
        self._start()
        self._t_begin = time.perf_counter()
        try:
            self._e0 = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except BaseException:
            self._stop()  # never leave the poller running into later windows
            raise

    def end(self) -> Reading:
        try:
            e1 = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            duration = time.perf_counter() - self._t_begin
        finally:
            samples = self._stop()
        flags = list(self._run_flags)
        energy = (e1 - self._e0) / 1000.0
        if energy < 0:  # driver reloaded mid-window: fall back to the samples
            flags.append("counter-reset-sampled")
            energy = trapezoid_j(samples)
        if duration < 2 * NVML_COUNTER_RESOLUTION_S:
            flags.append("window-below-meter-resolution")
        return self._reading(energy, duration, samples, flags, self.max_w)
