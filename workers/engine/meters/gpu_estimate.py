"""GPU ``estimate-tdp``: wall time x a GPU TDP, where NVML is unreachable on CUDA."""
from __future__ import annotations

import os
import time

from .base import GPU_MAX_PLAUSIBLE_W, UNCERTAINTY, Meter, Reading

GPU_DEFAULT_TDP_W = 300.0  # used only when NVML itself is unreachable on CUDA


class GpuTdpEstimateMeter(Meter):
    """Last resort on CUDA when NVML is unreachable: wall time x a GPU TDP.

    options["gpu_tdp_w"] or env AUDIT_GPU_TDP_W, default 300 W, assumed fully
    drawn while the window runs. A crude upper-bound estimate, labelled so.
    """

    method = "estimate-tdp"
    estimated = True
    uncertainty_rel = UNCERTAINTY["estimate-gpu-tdp"]
    reads_idle = False

    def __init__(self, options: dict, reason: str, detail: str = ""):
        super().__init__()
        self.tdp_w = float(options.get("gpu_tdp_w") or os.environ.get("AUDIT_GPU_TDP_W") or GPU_DEFAULT_TDP_W)
        self.tdp_source = ("setting gpu_tdp_w" if options.get("gpu_tdp_w") or os.environ.get("AUDIT_GPU_TDP_W")
                           else f"default {GPU_DEFAULT_TDP_W:g} W (no GPU named: NVML unreachable)")
        self.flags = ["gpu-energy-estimated", reason]
        self.detail = detail

    def begin(self) -> None:
        self._t0 = time.perf_counter()

    def end(self) -> Reading:
        d = time.perf_counter() - self._t0
        reading = self._reading(d * self.tdp_w, d, [(0.0, self.tdp_w), (d, self.tdp_w)], [], GPU_MAX_PLAUSIBLE_W)
        reading.assumptions = {
            "model": "gpu_tdp_w x wall_s (the whole TDP drawn while the window runs)",
            "gpu_tdp_w": self.tdp_w,
            "gpu_tdp_source": self.tdp_source,
            "wall_s": d,
            "uncertainty_rel": self.uncertainty_rel,
        }
        return reading
