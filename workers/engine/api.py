"""The engine's public API, for programs that import it as a library.

Two entry points, documented in docs/ENGINE.md ("Using the engine as a library"):

- ``profile(path, ...)``: everything an audit does (load safely, count, measure every variant in
  paired rounds, evaluate, trade-off) and the same result document the worker stores;
- ``EnergyMonitor``: measurement windows around your own code, in the spirit of Zeus's
  ``ZeusMonitor.begin_window / end_window``, with the engine's meters (NVML counter or sampling,
  RAPL, or a labelled estimate) and idle subtraction.

    from workers.engine.api import EnergyMonitor, profile

    monitor = EnergyMonitor(device="cuda:0")
    monitor.begin_window("epoch")
    train_one_epoch()
    window = monitor.end_window("epoch")
    print(window.energy_j, window.method, window.estimated)

Nothing here imports torch or pynvml until it is used.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

__all__ = ["EnergyMonitor", "Window", "profile"]


def profile(path, *, format: str = "auto", device: str = "cpu", batch_sizes=(1,), seq_len: int | None = None,
            recipes=("baseline",), dataset=None, options: dict | None = None, progress=None,
            reference: dict | None = None) -> dict:
    """Audit the model at ``path``: the result document of docs/ENGINE_INTERFACE.md (schema 2).
    ``reference`` ({"path", "label", ...}, docs/ENGINE_INTERFACE.md) names another version whose
    baseline the audit's baseline is compared with in the same paired rounds.

    Raises ``workers.engine.errors.FormatError`` / ``LoadError`` for a model that cannot be
    detected or loaded safely; a variant that fails later is reported inside the document.
    """
    from .profile import profile_model

    return profile_model(path, format=format, device=device, batch_sizes=batch_sizes, seq_len=seq_len,
                         recipes=recipes, dataset=dataset, options=options, progress=progress,
                         reference=reference)


@dataclass
class Window:
    """One measured window. ``energy_j`` is what the meter read over the window (the whole
    device or package, not only this process); ``energy_j_active`` subtracts the idle power
    measured when the monitor started (0 W when the meter cannot see idle: see ``flags``)."""

    key: str
    time_s: float
    energy_j: float
    energy_j_active: float
    avg_power_w: float
    idle_power_w: float
    method: str
    estimated: bool
    uncertainty_rel: float
    flags: list = field(default_factory=list)


class EnergyMonitor:
    """Named, possibly overlapping, measurement windows on one device ("cpu", "cuda", "cuda:N").

    ``idle_s`` seconds of idle power are measured once, at construction, so that each window can
    report active energy too. Each open window holds its own meter, so windows may nest or overlap.
    """

    def __init__(self, device: str = "cpu", *, idle_s: float = 1.0, options: dict | None = None):
        from . import timing
        from .meters import select_meter

        self.device = device
        self.options = dict(options or {})
        self._select = select_meter
        probe = select_meter(device, self.options)
        try:
            self.idle_power_w = timing.measure_idle(probe, idle_s) if idle_s > 0 else 0.0
            self.method = probe.method
            self._idle_flags = list(probe.flags)
        finally:
            probe.close()
        self._open: dict[str, tuple] = {}

    def _sync(self, sync: bool) -> None:
        if not sync or not self.device.startswith("cuda"):
            return
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.synchronize(torch.device(self.device))

    def begin_window(self, key: str, *, sync: bool = True) -> None:
        """Start the window ``key``; with ``sync`` (the default) queued GPU work finishes first,
        so the window holds only what is launched after this call."""
        if key in self._open:
            raise ValueError(f"a window named {key!r} is already open")
        self._sync(sync)
        meter = self._select(self.device, self.options)
        meter.begin()
        self._open[key] = (meter, time.perf_counter())

    def end_window(self, key: str, *, sync: bool = True) -> Window:
        """End the window ``key`` and return what it measured."""
        if key not in self._open:
            raise ValueError(f"no open window named {key!r}")
        meter, started = self._open.pop(key)
        self._sync(sync)
        try:
            reading = meter.end()
        finally:
            meter.close()
        elapsed = time.perf_counter() - started
        active = max(0.0, reading.energy_j - self.idle_power_w * reading.duration_s)
        flags = list(reading.flags) + [f for f in self._idle_flags if f not in reading.flags]
        return Window(key=key, time_s=elapsed, energy_j=reading.energy_j, energy_j_active=active,
                      avg_power_w=reading.avg_power_w, idle_power_w=self.idle_power_w, method=meter.method,
                      estimated=bool(meter.estimated), uncertainty_rel=float(meter.uncertainty_rel), flags=flags)
