"""``nvml-power-sampling``: the trapezoid integral of polled nvmlDeviceGetPowerUsage."""
from __future__ import annotations

from .base import UNCERTAINTY, Reading
from .nvml_common import _NvmlMeter, trapezoid_j


class NvmlSamplingMeter(_NvmlMeter):
    method = "nvml-power-sampling"
    estimated = False
    uncertainty_rel = UNCERTAINTY["nvml-power-sampling"]

    def begin(self) -> None:
        self._start()

    def end(self) -> Reading:
        samples = self._stop()
        flags = list(self._run_flags)
        if len(samples) < 2:
            flags.append("too-few-power-samples")
            return self._reading(0.0, samples[-1][0] if samples else 0.0, samples, flags, self.max_w)
        duration = samples[-1][0] - samples[0][0]
        return self._reading(trapezoid_j(samples), duration, samples, flags, self.max_w)
