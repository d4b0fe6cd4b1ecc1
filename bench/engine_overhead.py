"""How much the engine's measurement itself costs and distorts.

(a) latency the engine measures vs torch.utils.benchmark's blocked_autorange on
    the same MLP, batch 32, same thread count (target ratio 0.95-1.05);
(b) meter overhead: timing.measure with the meter on vs a no-op meter
    (target <= 1% of latency), for the CPU estimate meter and for a
    power-sampling meter whose poller thread runs at 50 ms (in-process fake NVML:
    what is measured is the poller's GIL and wake-up cost, not the driver call);
(c) a whole profile's wall time vs the sum of its measurement windows, 1 s
    windows (target <= 1.3).

Run: .venv/bin/python bench/engine_overhead.py   (about 2 minutes)
     BENCH_DEVICE=cuda python bench/engine_overhead.py   (the same on a GPU, real NVML meters)
     BENCH_THREADS=N sets torch's thread count (default 1).
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.utils.benchmark as tb  # noqa: E402

from workers.engine import timing  # noqa: E402
from workers.engine.meters import NvmlSamplingMeter, Reading, select_meter  # noqa: E402
from workers.engine.registry import get_architecture  # noqa: E402

THREADS = int(os.environ.get("BENCH_THREADS", "1"))
DEVICE = os.environ.get("BENCH_DEVICE", "cpu")
CONFIG = {"in_features": 512, "hidden": [1024, 1024], "num_classes": 10, "activation": "relu"}
BATCH = 32
ROUNDS = 8  # short interleaved rounds: on a shared machine drift hits both sides alike
ROUND_S = 1.5


class NullMeter:
    method, estimated, uncertainty_rel = "none", False, 0.0

    def begin(self):
        pass

    def end(self):
        return Reading(1.0, 1.0, 1.0, [], [])

    def close(self):
        pass


def sampling_meter():
    """On CUDA the real NVML sampler; on CPU one over an in-process fake NVML."""
    if DEVICE.startswith("cuda"):
        counter = select_meter(DEVICE, {})
        return NvmlSamplingMeter(counter.nvml, counter.handle, counter.uuid)
    nvml = types.SimpleNamespace(NVMLError=Exception, nvmlDeviceGetPowerUsage=lambda h: 150_000,
                                 nvmlDeviceGetComputeRunningProcesses=lambda h: [],
                                 nvmlDeviceGetEnforcedPowerLimit=lambda h: 700_000, nvmlShutdown=lambda: None)
    return NvmlSamplingMeter(nvml, object(), "GPU-fake", options={"nvml_sample_interval_s": 0.05})


def engine_ms(fn, meter, window_s=0.25, cap_s=ROUND_S):
    """(mean, p50) latency in ms of one short engine measurement."""
    m = timing.measure(fn, batch_size=BATCH, device=DEVICE, meter=meter, idle_power_w=0.0,
                       options={"window_s": window_s, "time_cap_s": cap_s, "target_rel_ci": 0.0})
    return m["latency_ms_mean"], m["latency_ms_p50"]


def timer_ms(model, x):
    """(mean, median) latency in ms from blocked_autorange."""
    t = tb.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=THREADS)
    m = t.blocked_autorange(min_run_time=ROUND_S)
    return m.mean * 1e3, m.median * 1e3


def summarise(rounds):
    """Best round mean (least disturbed by other tenants) and median of round medians."""
    return min(r[0] for r in rounds), statistics.median(r[1] for r in rounds)


def part_a(model, x, fn):
    engine, timer = [], []
    for _ in range(ROUNDS):
        timer.append(timer_ms(model, x))
        meter = select_meter(DEVICE, {})
        engine.append(engine_ms(fn, meter))
        meter.close()
    e_min, e_med = summarise(engine)
    t_min, t_med = summarise(timer)
    spread = max(r[0] for r in timer) / t_min
    print(f"(a) engine vs torch.utils.benchmark.Timer.blocked_autorange ({ROUNDS} interleaved rounds of {ROUND_S} s)")
    print(f"    engine: best round mean {e_min:.4f} ms, median p50 {e_med:.4f} ms")
    print(f"    Timer:  best round mean {t_min:.4f} ms, median of medians {t_med:.4f} ms "
          f"(worst/best round mean {spread:.2f}: the machine's noise)")
    print(f"    ratio engine/Timer: best mean {e_min / t_min:.3f}, median {e_med / t_med:.3f}   (target 0.95-1.05)")


def part_b(fn):
    print(f"(b) meter overhead: measure() with the meter vs a no-op meter ({ROUNDS} interleaved rounds)")
    for name, make in ((select_meter(DEVICE, {}).method, lambda: select_meter(DEVICE, {})),
                       ("nvml-power-sampling (50 ms poller thread)", sampling_meter)):
        on, off = [], []
        for _ in range(ROUNDS):
            off.append(engine_ms(fn, NullMeter()))
            meter = make()
            on.append(engine_ms(fn, meter))
            meter.close()
        (a_min, a_med), (b_min, b_med) = summarise(on), summarise(off)
        print(f"    {name}: best mean {a_min:.4f} vs {b_min:.4f} ms ({100 * (a_min - b_min) / b_min:+.2f}%), "
              f"median p50 {a_med:.4f} vs {b_med:.4f} ms ({100 * (a_med - b_med) / b_med:+.2f}%)   (target <= 1%)")


def part_b_direct(fn):
    """Noise-free costs: what the loop and the meters add, measured on their own."""
    print("(b') direct costs, independent of the machine's noise")
    m = timing.measure(lambda: None, batch_size=1, device="cpu", meter=NullMeter(), idle_power_w=0.0,
                       options={"window_s": 0.2, "time_cap_s": 0.6})
    print(f"    timing loop per call (perf_counter_ns x2, sync hook, append) around a no-op: "
          f"{m['latency_ms_p50'] * 1e6:.0f} ns p50")
    for name, make in ((select_meter(DEVICE, {}).method, lambda: select_meter(DEVICE, {})),
                       ("nvml-power-sampling", sampling_meter)):
        meter = make()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 0.5:
            meter.begin()
            meter.end()
            n += 1
        per_window_us = (time.perf_counter() - t0) / n * 1e6
        meter.begin()
        c0 = time.process_time()
        time.sleep(2.0)
        busy = (time.process_time() - c0) / 2.0
        meter.end()
        meter.close()
        print(f"    {name}: begin()+end() {per_window_us:.0f} us per window ({per_window_us / 1e4:.4f}% of a 1 s window); "
              f"background CPU while a window runs {100 * busy:.3f}% of one core")


def part_c(tmp: Path):
    from safetensors.torch import save_file

    from workers.engine.profile import profile_model

    path = tmp / "mlp.safetensors"
    import json

    save_file(get_architecture("mlp").build(CONFIG).state_dict(), str(path),
              metadata={"architecture": "mlp", "architecture_config": json.dumps(CONFIG)})
    options = {"window_s": 1.0, "time_cap_s": 5.0, "idle_s": 2.0, "threads": THREADS, "target_rel_ci": 0.02}
    stages = {}
    measured = {"calls": 0, "windows_s": 0.0, "windows": 0, "inside_s": 0.0}
    original = timing.measure

    def counting_measure(fn, **kw):  # counts every measurement, also the drift re-measurements
        t0 = time.perf_counter()
        m = original(fn, **kw)
        measured["inside_s"] += time.perf_counter() - t0
        measured["calls"] += 1
        measured["windows"] += m["windows"]
        measured["windows_s"] += m["windows"] * m["window_s"]
        return m

    start = time.perf_counter()

    def progress(event):
        stages.setdefault(event["stage"], time.perf_counter() - start)

    timing.measure = counting_measure
    try:
        profile_model(path, device=DEVICE, batch_sizes=[1, 32], recipes=["baseline"], options=options,
                      progress=progress)
    finally:
        timing.measure = original
    wall = time.perf_counter() - start
    windows_s = measured["windows_s"]
    print("(c) whole profile (MLP 512-1024-1024-10, batch sizes 1 and 32, 1 s windows, 2 s idle baseline)")
    print(f"    wall {wall:.2f} s; {measured['calls']} measurements, {measured['windows']} windows = "
          f"{windows_s:.1f} s; time inside timing.measure {measured['inside_s']:.2f} s; "
          f"idle baseline {options['idle_s']:.1f} s; loading + FLOP counting {stages.get('idle-baseline', 0):.2f} s")
    print(f"    ratio wall/windows {wall / windows_s:.3f}   (target <= 1.3); "
          f"excluding the idle baseline {(wall - options['idle_s']) / windows_s:.3f}; "
          f"timing loop alone (inside measure / windows) {measured['inside_s'] / windows_s:.3f}")
    print("    stage start times (s): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))


def main():
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    gpu = torch.cuda.get_device_name(0) if DEVICE.startswith("cuda") else "no GPU"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, {gpu}; "
          f"device {DEVICE}; torch {torch.__version__}, {THREADS} thread(s); python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    model = get_architecture("mlp").build(CONFIG).eval().to(DEVICE)
    x = torch.randn(BATCH, CONFIG["in_features"], device=DEVICE)
    with torch.inference_mode():
        def fn():
            return model(x)

        part_a(model, x, fn)
        part_b(fn)
        part_b_direct(fn)
    with tempfile.TemporaryDirectory() as tmp:
        part_c(Path(tmp))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - started:.0f} s")
