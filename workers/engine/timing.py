"""The timing loop: warm-up, measurement windows, a confidence-interval stop rule.

One call of ``fn`` is one inference (one forward pass of one batch). Every call
is timed with ``perf_counter_ns`` (after ``torch.cuda.synchronize()`` on CUDA,
so the time is the GPU's, not the launch's); the energy meter is read around
each window, after a synchronize, so the window's energy covers exactly the
calls timed in it.

Stop rule: batch means. The confidence interval of the mean latency is taken
over the per-window mean latencies (t-distribution, windows - 1 degrees of
freedom), not over the individual calls: successive calls are autocorrelated
(clock boost, thermal state, caches, other tenants), so treating thousands of
them as independent gives an interval that is far too narrow. Window means of
windows long compared to that correlation are close to independent, which is
what the t-interval assumes. When only one window fits under the time cap,
the per-call interval is reported instead and flagged "ci-from-calls".
"""
from __future__ import annotations

import math
import resource
import statistics
import sys
import time

from .carbon import world_g_per_kwh

DEFAULT_WINDOW_S = {"cuda": 10.0, "cpu": 1.0}
DEFAULT_TARGET_REL_CI = 0.02
DEFAULT_WINDOWS_CAP = 10  # time_cap_s defaults to this many windows
MIN_WINDOWS = 3
HIGH_CV = 0.1
MAX_TRACE_POINTS = 500
# How often each meter's reading changes, for meters that do not say: the NVML energy counter
# updates about every 100 ms; nvmlDeviceGetPowerUsage is a 1 s running average on Ampere and
# newer; RAPL's counters update about every millisecond; CPU time ticks every 10 ms.
METER_RESOLUTION_S = {"nvml-counter": 0.1, "nvml-power-sampling": 1.0, "rapl": 0.001, "estimate-tdp": 0.01}

# Two-sided 95% Student t quantiles t(0.975, df) for small df; 1.96 beyond.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
         18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t975(df: int) -> float:
    if df <= 0:
        return math.inf
    if df in _T975:
        return _T975[df]
    below = [k for k in _T975 if k < df]
    return _T975[max(below)] if df < 120 else 1.96  # the next smaller df: conservative


def ci95_half_width(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return math.inf
    return t975(n - 1) * statistics.stdev(values) / math.sqrt(n)


def _opt(options: dict, key: str, default):
    value = options.get(key)
    return default if value is None else value


def _synchronizer(device: str):
    if not device.startswith("cuda"):
        return lambda: None
    import torch  # noqa: PLC0415

    dev = torch.device(device)
    return lambda: torch.cuda.synchronize(dev)


def measure_idle(meter, seconds: float) -> float:
    """Average power in W while this process sleeps for ``seconds``; 0 for a meter that
    cannot see idle (it assumes a constant draw), whose readings then carry "idle-not-measured"."""
    if not getattr(meter, "reads_idle", True):
        if "idle-not-measured" not in meter.flags:
            meter.flags.append("idle-not-measured")
        return 0.0
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.synchronize()  # idle means nothing of ours still queued on the GPU
    meter.begin()
    time.sleep(max(0.0, seconds))
    return meter.end().avg_power_w


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def downsample(trace: list, max_points: int = MAX_TRACE_POINTS) -> list:
    if len(trace) <= max_points:
        return [list(p) for p in trace]
    step = len(trace) / max_points
    return [list(trace[int(i * step)]) for i in range(max_points - 1)] + [list(trace[-1])]


def peak_memory_bytes(device: str) -> int:
    if device.startswith("cuda"):
        import torch  # noqa: PLC0415

        return int(torch.cuda.max_memory_allocated(torch.device(device)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


def _reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        import torch  # noqa: PLC0415

        torch.cuda.reset_peak_memory_stats(torch.device(device))


def _run_window(fn, sync, meter, window_s: float):
    """Latency mode: calls fn until window_s has passed, synchronising after every call so each
    call's own time is known; returns (latencies_ns, calls, wall_s, reading)."""
    latencies = []
    append = latencies.append
    clock = time.perf_counter_ns
    sync()
    meter.begin()
    start = clock()
    deadline = start + int(window_s * 1e9)
    t1 = start
    try:
        while t1 < deadline:
            t0 = clock()
            fn()
            sync()
            t1 = clock()
            append(t1 - t0)
    except BaseException:
        meter.end()  # stop the meter's poller before the error goes up
        raise
    reading = meter.end()
    return latencies, len(latencies), (t1 - start) / 1e9, reading


def _run_window_throughput(fn, sync, meter, window_s: float):
    """Throughput mode: calls fn back to back until window_s has passed on the host's clock and
    synchronises once at the end, the way a serving loop keeps the device queue full; the window
    knows only its mean time per call. Returns (None, calls, wall_s, reading)."""
    clock = time.perf_counter_ns
    sync()
    meter.begin()
    start = clock()
    deadline = start + int(window_s * 1e9)
    calls = 0
    try:
        while True:
            fn()
            calls += 1
            if clock() >= deadline:
                break
        sync()
    except BaseException:
        meter.end()
        raise
    t1 = clock()
    reading = meter.end()
    return None, calls, (t1 - start) / 1e9, reading


TIMING_MODES = {"latency": _run_window, "throughput": _run_window_throughput}

WARMUP_STABLE_CALLS = 3
WARMUP_STABLE_SPREAD = 0.10
WARMUP_MIN_S = 0.02
WARMUP_RESOLUTION_S = 50e-6
WARMUP_FAST_CAP_S = 0.2
WARMUP_BUDGET_WINDOWS = 3
WARMUP_BUDGET_MIN_S = 3.0


def _stable(times: list[float]) -> bool:
    """The last few call times within WARMUP_STABLE_SPREAD of their median."""
    if len(times) < WARMUP_STABLE_CALLS:
        return False
    last = sorted(times[-WARMUP_STABLE_CALLS:])
    median = last[len(last) // 2]
    # within the spread, or apart by less than the clock and the scheduler can tell (microsecond calls)
    return median > 0 and ((last[-1] - last[0]) / median <= WARMUP_STABLE_SPREAD
                           or last[-1] - last[0] <= WARMUP_RESOLUTION_S)


class Sampler:
    """Windows of repeated ``fn()`` calls for one (variant, batch size), accumulated so that
    paired rounds can interleave variants: ``warmup()`` once, ``window()`` as often as the
    caller's schedule says, ``summary()`` at the end.

    The statistics are over window means (see the module doc), and because a paired schedule
    spreads one variant's windows over the whole audit, the interval of the mean now covers the
    machine's drift during the audit, not only the noise of a few consecutive seconds.
    """

    def __init__(self, fn, *, batch_size: int, device: str, meter, idle_power_w: float, options: dict):
        options = options or {}
        kind = "cuda" if device.startswith("cuda") else "cpu"
        self.fn = fn
        self.batch_size = batch_size
        self.device = device
        self.meter = meter
        self.idle_power_w = float(idle_power_w)
        self.window_s = float(_opt(options, "window_s", DEFAULT_WINDOW_S[kind]))
        self.time_cap_s = float(_opt(options, "time_cap_s", DEFAULT_WINDOWS_CAP * self.window_s))
        self.target = float(_opt(options, "target_rel_ci", DEFAULT_TARGET_REL_CI))
        self.warmup_iters = max(10, int(_opt(options, "warmup_iters", 10)))
        self.mode = str(_opt(options, "timing_mode", "latency"))
        if self.mode not in TIMING_MODES:
            raise ValueError(f"unknown timing mode {self.mode!r}; one of {', '.join(TIMING_MODES)}")
        self.pue = float(_opt(options, "pue", 1.0))
        self.intensity = float(_opt(options, "grid_intensity_g_per_kwh", world_g_per_kwh()))
        self.sync = _synchronizer(device)
        self.latencies_ns: list[int] = []  # per call, latency mode only
        self.calls = 0
        self.window_means: list[float] = []  # ms per call, one per window
        self.window_energy: list[float] = []  # J per call, one per window
        self.trace: list = []
        self.flags: list[str] = []
        self.energy_j = 0.0
        self.metered_s = 0.0
        self.wall_s = 0.0
        self.spent_s = 0.0  # time inside windows, what the time cap counts
        self.meter_overhead_s = 0.0  # reading the meter, taken out of the energy
        self.assumptions: dict | None = None
        self.domains_j: dict[str, float] = {}
        self.boundaries_j: dict[str, float] = {}  # device / host / facility joules (meters/boundary.py)
        self.warmup_info: dict | None = None
        self._peak_memory = 0
        self.device_states: list[dict] = []  # one gpu_state.snapshot per window (NVML meters)

    def warmup(self) -> None:
        """Call until the call time is stable: the last ``WARMUP_STABLE_CALLS`` within
        ``WARMUP_STABLE_SPREAD`` of their median (or ``WARMUP_RESOLUTION_S`` apart), after at
        least ``WARMUP_MIN_S``; short calls stop after ``WARMUP_FAST_CAP_S`` once ``warmup_iters`` are done, and none goes past the budget
        (``WARMUP_BUDGET_WINDOWS`` windows, at least ``WARMUP_BUDGET_MIN_S``) once two calls are
        done. ``warmup_info`` says how many calls and seconds it took and whether it was stable
        (issue 20: a fixed ten calls of a 3-second request spent most of an LM audit warming up)."""
        _reset_peak_memory(self.device)
        budget = max(WARMUP_BUDGET_WINDOWS * self.window_s, WARMUP_BUDGET_MIN_S)
        started = time.perf_counter()
        times: list[float] = []
        while True:
            t0 = time.perf_counter()
            self.fn()
            self.sync()
            now = time.perf_counter()
            times.append(now - t0)
            elapsed = now - started
            stable = _stable(times)
            if elapsed >= WARMUP_MIN_S and stable:
                break
            if elapsed >= WARMUP_FAST_CAP_S and len(times) >= self.warmup_iters:
                break  # many short calls whose spread is the host's noise, not a cold start
            if elapsed >= budget and len(times) >= 2:
                break
        self.warmup_info = {"calls": len(times), "s": time.perf_counter() - started, "stable": stable,
                            "last_call_ms": times[-1] * 1e3}

    def window(self) -> tuple[float, float]:
        """One window; returns its (mean ms per call, J per call)."""
        started = time.perf_counter()
        lat, calls, wall, reading = TIMING_MODES[self.mode](self.fn, self.sync, self.meter, self.window_s)
        offset = self.spent_s
        self.trace.extend((round(offset + t, 6), w) for t, w in reading.trace)
        self.flags.extend(f for f in reading.flags if f not in self.flags)
        # The meter's reads bracket the timed calls; what it spends reading (an NVML counter read
        # costs milliseconds) is not the model's: keep the share of the reading that the timed
        # calls took.
        energy_j, metered_s = reading.energy_j, reading.duration_s
        if 0 < wall < metered_s:
            self.meter_overhead_s += metered_s - wall
            energy_j *= wall / metered_s
            metered_s = wall
        self.energy_j += energy_j
        self.metered_s += metered_s
        self.wall_s += wall
        self.spent_s += time.perf_counter() - started
        if lat is not None:
            self.latencies_ns.extend(lat)
            mean_ms = sum(lat) / calls / 1e6
        else:
            mean_ms = wall * 1e3 / calls
        self.calls += calls
        per_call_j = energy_j / calls
        self.window_means.append(mean_ms)
        self.window_energy.append(per_call_j)
        assumptions = getattr(reading, "assumptions", None)
        if assumptions:
            self.assumptions = dict(assumptions)
        for name, joules in (getattr(reading, "domains", None) or {}).items():
            self.domains_j[name] = self.domains_j.get(name, 0.0) + float(joules)
        # every boundary keeps the share of the reading the timed calls took, as the device figure does
        trim = energy_j / reading.energy_j if reading.energy_j > 0 else 1.0
        for name, joules in (getattr(reading, "boundaries", None) or {}).items():
            self.boundaries_j[name] = self.boundaries_j.get(name, 0.0) + float(joules) * trim
        self._peak_memory = max(self._peak_memory, peak_memory_bytes(self.device))
        self._snapshot_device()
        return mean_ms, per_call_j

    def _snapshot_device(self) -> None:
        """Clocks, temperature, power limit and throttle reasons after each window, read outside
        the timed region, where the meter is an NVML one (a GPU)."""
        handle = getattr(self.meter, "handle", None)
        nvml = getattr(self.meter, "nvml", None)
        if handle is None or nvml is None:
            return
        from . import gpu_state  # noqa: PLC0415

        self.device_states.append(gpu_state.snapshot(handle, nvml))

    def rel_ci(self) -> float:
        """Half-width of the 95% interval of the mean latency, relative to the mean."""
        if len(self.window_means) < 2:
            return math.inf
        mean = statistics.fmean(self.window_means)
        return ci95_half_width(self.window_means) / mean if mean > 0 else math.inf

    def enough(self, min_windows: int = MIN_WINDOWS) -> bool:
        return len(self.window_means) >= min_windows and self.rel_ci() <= self.target

    def capped(self) -> bool:
        return self.spent_s >= self.time_cap_s

    def summary(self) -> dict:
        return _summarize(self)


def measure(fn, *, batch_size: int, device: str, meter, idle_power_w: float, options: dict) -> dict:
    """Warm-up, then windows until the confidence interval of the mean is within the target
    (at least ``MIN_WINDOWS``) or the time cap is reached: one measurement on its own, without
    pairing (the CLI's single-variant runs, benchmarks, the generation scenario's parts)."""
    sampler = Sampler(fn, batch_size=batch_size, device=device, meter=meter, idle_power_w=idle_power_w,
                      options=options)
    sampler.warmup()
    while True:
        sampler.window()
        if sampler.enough() or sampler.capped():
            break
    return sampler.summary()


def _boundaries(s: Sampler, n: int) -> dict:
    """``energy_boundaries`` (device, host, facility: J per inference, method, estimated, basis) and
    the grams of CO2e from the facility figure, where the meter names boundaries (boundary.py)."""
    describe = getattr(s.meter, "describe", None)
    if not s.boundaries_j or not callable(describe) or n <= 0:
        return {}
    basis = describe()
    out = {}
    for name in ("device", "host", "facility"):
        out[name] = {"j_per_inference": s.boundaries_j.get(name, 0.0) / n, **basis[name]}
    # host x PUE per inference, computed as the worker computes it again (carbon.boundary_co2e),
    # so an honest result passes through the worker unchanged to the last bit
    out["facility"]["j_per_inference"] = out["host"]["j_per_inference"] * float(basis["facility"]["pue"])
    out["host"]["cpu_j_per_inference"] = s.boundaries_j.get("host_cpu", 0.0) / n
    out["host"]["dram_j_per_inference"] = s.boundaries_j.get("host_dram", 0.0) / n
    # one standard uncertainty of each figure: the device meter's; the host's adds the host
    # meter's on its own part (package + DRAM) in quadrature; the facility's is the host's (the
    # PUE is taken as given)
    u_dev = float(s.meter.uncertainty_rel)
    out["device"]["uncertainty_rel"] = u_dev
    dev, host = out["device"]["j_per_inference"], out["host"]["j_per_inference"]
    extra = host - dev
    u_host = (math.sqrt((u_dev * dev) ** 2 + (basis["host"]["host_uncertainty_rel"] * extra) ** 2) / host
              if host > 0 and getattr(s.meter, "kind", "") != "cpu" else u_dev)
    out["host"]["uncertainty_rel"] = u_host
    out["facility"]["uncertainty_rel"] = u_host
    co2e_boundary = "facility" if basis["facility"]["pue_known"] else "host"
    return {"energy_boundary": "device", "energy_boundaries": out, "co2e_boundary": co2e_boundary,
            "co2e_g_per_inference": out[co2e_boundary]["j_per_inference"] / 3.6e6 * s.intensity}


def _summarize(s: Sampler) -> dict:
    lat_ms = sorted(x / 1e6 for x in s.latencies_ns)
    n = s.calls
    flags = list(s.flags)
    per_call = s.mode == "latency"
    # Throughput mode knows each window's mean only: its mean is the windows' time over the calls
    mean_ms = sum(lat_ms) / n if per_call else s.wall_s * 1e3 / n
    std_ms = (statistics.stdev(lat_ms) if n > 1 else 0.0) if per_call else None
    target = s.target
    if len(s.window_means) >= 2:
        ci_ms = ci95_half_width(s.window_means)
    else:
        ci_ms = ci95_half_width(lat_ms) if per_call and n > 1 else math.inf
        flags.append("ci-from-calls" if per_call else "single-window")
    rel_ci = ci_ms / mean_ms if mean_ms > 0 and math.isfinite(ci_ms) else math.inf
    # Flags must carry information: on an ordinary shared machine the 2% target is often out of
    # reach within the cap, and single calls jitter by more than 10%. So "time-cap-reached" says
    # the interval ended more than twice the target wide, and "high-cv" is about the windows'
    # means (the machine's state changing), not the jitter of single calls (``cv`` keeps that).
    if rel_ci > 2 * target:
        flags.append("time-cap-reached")
    cv = (std_ms / mean_ms if mean_ms > 0 else 0.0) if per_call else None
    window_cv = (statistics.stdev(s.window_means) / statistics.fmean(s.window_means)
                 if len(s.window_means) > 1 and statistics.fmean(s.window_means) > 0 else 0.0)
    if window_cv > HIGH_CV:
        flags.append("high-cv")

    j_per_inf = s.energy_j / n
    active_total = s.energy_j - s.idle_power_w * s.metered_s
    if active_total < 0:
        flags.append("active-energy-negative-clamped")
        active_total = 0.0
    if j_per_inf <= 0 and "zero-energy" not in flags:
        flags.append("zero-energy")
    # Energy uncertainty, one standard uncertainty: the method's own (calibration, attribution)
    # and the spread of the per-window energies (the statistical part, which is what varies run
    # to run), combined in quadrature.
    u_method = float(s.meter.uncertainty_rel)
    if len(s.window_energy) > 1 and statistics.fmean(s.window_energy) > 0:
        u_stat = (statistics.stdev(s.window_energy) / math.sqrt(len(s.window_energy))
                  / statistics.fmean(s.window_energy))
    else:
        u_stat = None
    u_total = math.sqrt(u_method ** 2 + (u_stat or 0.0) ** 2)
    avg_power = s.energy_j / s.metered_s if s.metered_s > 0 else 0.0
    meter_resolution_s = getattr(s.meter, "resolution_s", None) or METER_RESOLUTION_S.get(s.meter.method)
    device_state = {}
    if s.device_states:
        from . import gpu_state  # noqa: PLC0415

        device_state = gpu_state.summarize(s.device_states)
        device_state.pop("snapshots", None)
        if device_state.get("slowdown") and "gpu-slowdown" not in flags:
            flags.append("gpu-slowdown")
    return {
        "scenario": "forward",
        "iterations": n,
        "warmup_calls": (s.warmup_info or {}).get("calls"),
        "warmup_s": (s.warmup_info or {}).get("s"),
        "warmup_stable": (s.warmup_info or {}).get("stable"),
        "windows": len(s.window_means),
        "window_s": s.window_s,
        "meter_resolution_s": meter_resolution_s,
        "meter_overhead_s": s.meter_overhead_s,
        "latency_ms_mean": mean_ms,
        "latency_ms_std": std_ms,
        "timing_mode": s.mode,
        # per-call percentiles exist in latency mode only
        "latency_ms_p50": _percentile(lat_ms, 50) if per_call else None,
        "latency_ms_p95": _percentile(lat_ms, 95) if per_call else None,
        "latency_ms_p99": _percentile(lat_ms, 99) if per_call else None,
        "latency_ci95_ms": ci_ms if math.isfinite(ci_ms) else None,
        "latency_ci95_rel": rel_ci if math.isfinite(rel_ci) else None,
        "target_rel_ci": target,
        "cv": cv,
        "window_cv": window_cv,
        "throughput_samples_per_s": n * s.batch_size / s.wall_s if s.wall_s > 0 else 0.0,
        "energy_method": s.meter.method,
        "energy_estimated": bool(s.meter.estimated),
        "energy_uncertainty_rel": u_total,
        "energy_uncertainty_method_rel": u_method,
        "energy_uncertainty_stat_rel": u_stat,
        "energy_j_per_inference": j_per_inf,
        "energy_j_per_inference_active": active_total / n,
        "energy_j_per_sample": j_per_inf / s.batch_size,
        "wh_per_1000_inferences": j_per_inf * 1000.0 / 3600.0,
        "samples_per_joule": s.batch_size / j_per_inf if j_per_inf > 0 else 0.0,
        "avg_power_w": avg_power,
        "idle_power_w": s.idle_power_w,
        "co2e_g_per_inference": j_per_inf / 3.6e6 * s.pue * s.intensity,
        "peak_memory_bytes": max(s._peak_memory, peak_memory_bytes(s.device)),
        "energy_assumptions": s.assumptions,
        "energy_domains": {k: v / n for k, v in s.domains_j.items()},
        **_boundaries(s, n),
        "power_trace": downsample(s.trace),
        "flags": flags,
        "window_means_ms": list(s.window_means),
        "window_energy_j": list(s.window_energy),
        # GPU clocks, temperature, power limit and throttle reasons over the windows (NVML only)
        **device_state,
    }
