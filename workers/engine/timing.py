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

DEFAULT_WINDOW_S = {"cuda": 10.0, "cpu": 1.0}
DEFAULT_TARGET_REL_CI = 0.02
DEFAULT_WINDOWS_CAP = 10  # time_cap_s defaults to this many windows
MIN_WINDOWS = 3
HIGH_CV = 0.1
MAX_TRACE_POINTS = 500

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
    """Calls fn until window_s has passed; returns (latencies_ns, wall_s, reading)."""
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
    return latencies, (t1 - start) / 1e9, reading


def measure(fn, *, batch_size: int, device: str, meter, idle_power_w: float, options: dict) -> dict:
    options = options or {}
    kind = "cuda" if device.startswith("cuda") else "cpu"
    window_s = float(_opt(options, "window_s", DEFAULT_WINDOW_S[kind]))
    time_cap_s = float(_opt(options, "time_cap_s", DEFAULT_WINDOWS_CAP * window_s))
    target = float(_opt(options, "target_rel_ci", DEFAULT_TARGET_REL_CI))
    warmup = max(10, int(_opt(options, "warmup_iters", 10)))
    pue = float(_opt(options, "pue", 1.0))
    intensity = float(_opt(options, "grid_intensity_g_per_kwh", 475.0))
    sync = _synchronizer(device)

    _reset_peak_memory(device)
    for _ in range(warmup):
        fn()
        sync()

    latencies_ns: list[int] = []
    window_means: list[float] = []
    trace: list = []
    flags: list[str] = []
    energy_j = 0.0
    metered_s = 0.0
    wall_s = 0.0
    started = time.perf_counter()
    reached = False
    while True:
        lat, wall, reading = _run_window(fn, sync, meter, window_s)
        offset = time.perf_counter() - started - reading.duration_s
        trace.extend((round(offset + t, 6), w) for t, w in reading.trace)
        flags.extend(f for f in reading.flags if f not in flags)
        energy_j += reading.energy_j
        metered_s += reading.duration_s
        wall_s += wall
        latencies_ns.extend(lat)
        window_means.append(sum(lat) / len(lat) / 1e6)
        mean_ms = sum(latencies_ns) / len(latencies_ns) / 1e6
        if len(window_means) >= MIN_WINDOWS and ci95_half_width(window_means) <= target * mean_ms:
            reached = True
            break
        if time.perf_counter() - started >= time_cap_s:
            break

    lat_ms = sorted(x / 1e6 for x in latencies_ns)
    n = len(lat_ms)
    mean_ms = sum(lat_ms) / n
    std_ms = statistics.stdev(lat_ms) if n > 1 else 0.0
    if len(window_means) >= 2:
        ci_ms = ci95_half_width(window_means)
    else:
        ci_ms = ci95_half_width(lat_ms) if n > 1 else math.inf
        flags.append("ci-from-calls")
        reached = reached or ci_ms <= target * mean_ms
    if not reached:
        flags.append("time-cap-reached")
    cv = std_ms / mean_ms if mean_ms > 0 else 0.0
    if cv > HIGH_CV:
        flags.append("high-cv")

    j_per_inf = energy_j / n
    active_total = energy_j - idle_power_w * metered_s
    if active_total < 0:
        flags.append("active-energy-negative-clamped")
        active_total = 0.0
    if j_per_inf <= 0 and "zero-energy" not in flags:
        flags.append("zero-energy")
    return {
        "iterations": n,
        "windows": len(window_means),
        "window_s": window_s,
        "latency_ms_mean": mean_ms,
        "latency_ms_std": std_ms,
        "latency_ms_p50": _percentile(lat_ms, 50),
        "latency_ms_p95": _percentile(lat_ms, 95),
        "latency_ms_p99": _percentile(lat_ms, 99),
        "latency_ci95_ms": ci_ms if math.isfinite(ci_ms) else None,
        "cv": cv,
        "throughput_samples_per_s": n * batch_size / wall_s if wall_s > 0 else 0.0,
        "energy_method": meter.method,
        "energy_estimated": bool(meter.estimated),
        "energy_uncertainty_rel": float(meter.uncertainty_rel),
        "energy_j_per_inference": j_per_inf,
        "energy_j_per_inference_active": active_total / n,
        "energy_j_per_sample": j_per_inf / batch_size,
        "wh_per_1000_inferences": j_per_inf * 1000.0 / 3600.0,
        "samples_per_joule": batch_size / j_per_inf if j_per_inf > 0 else 0.0,
        "avg_power_w": energy_j / metered_s if metered_s > 0 else 0.0,
        "idle_power_w": float(idle_power_w),
        "co2e_g_per_inference": j_per_inf / 3.6e6 * pue * intensity,
        "peak_memory_bytes": peak_memory_bytes(device),
        "power_trace": downsample(trace),
        "flags": flags,
    }
