"""The timing loop on a tiny torch model on CPU, with short windows."""
import importlib.util
import sys
import time
from pathlib import Path

import pytest

from workers.engine import timing
from workers.engine.meters import Reading, select_meter

spec = importlib.util.spec_from_file_location("_audit_fake_pynvml", Path(__file__).with_name("fake_pynvml.py"))
fake = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = fake
spec.loader.exec_module(fake)

FAST = {"window_s": 0.05, "time_cap_s": 0.5, "warmup_iters": 10}


class ConstantMeter:
    """A meter that reports a fixed power: the energy of a window is watts x its duration."""

    method = "test-constant"
    estimated = False
    uncertainty_rel = 0.01

    def __init__(self, watts):
        self.watts = watts

    def begin(self):
        self.t0 = time.perf_counter()

    def end(self):
        d = time.perf_counter() - self.t0
        return Reading(self.watts * d, d, self.watts, [(0.0, self.watts), (d, self.watts)], [])

    def close(self):
        pass


@pytest.fixture(scope="module")
def linear():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(16, 8).eval()
    x = torch.randn(4, 16)

    def fn():
        with torch.inference_mode():
            model(x)

    return fn


def test_measure_tiny_linear(linear):
    m = timing.measure(linear, batch_size=4, device="cpu", meter=ConstantMeter(20.0), idle_power_w=5.0,
                       options=dict(FAST, pue=1.2, grid_intensity_g_per_kwh=400.0))
    assert m["iterations"] > 10 and m["windows"] >= 3
    assert 0 < m["latency_ms_p50"] <= m["latency_ms_p95"] <= m["latency_ms_p99"]
    assert m["latency_ms_mean"] > 0 and m["latency_ms_std"] >= 0
    assert m["cv"] == pytest.approx(m["latency_ms_std"] / m["latency_ms_mean"])
    j = m["energy_j_per_inference"]
    assert j > 0
    assert m["energy_j_per_sample"] == pytest.approx(j / 4)
    assert m["wh_per_1000_inferences"] == pytest.approx(j * 1000 / 3600)
    assert m["samples_per_joule"] == pytest.approx(4 / j)
    assert m["co2e_g_per_inference"] == pytest.approx(j / 3.6e6 * 1.2 * 400.0)
    assert m["avg_power_w"] == pytest.approx(20.0)
    assert m["energy_j_per_inference_active"] == pytest.approx(j * 15.0 / 20.0, rel=1e-6)
    assert m["idle_power_w"] == 5.0
    assert m["energy_method"] == "test-constant" and m["energy_uncertainty_method_rel"] == 0.01
    # the total covers the method and the spread between windows, so it is never below the method's
    assert m["energy_uncertainty_rel"] >= 0.01
    assert m["latency_ci95_rel"] == pytest.approx(m["latency_ci95_ms"] / m["latency_ms_mean"])
    assert m["peak_memory_bytes"] > 10 << 20
    assert 2 <= len(m["power_trace"]) <= 500
    assert m["throughput_samples_per_s"] == pytest.approx(4000 / m["latency_ms_mean"], rel=0.5)
    assert m["window_s"] == 0.05
    if "time-cap-reached" not in m["flags"]:  # the flag means: ended more than twice the target wide
        assert m["latency_ci95_ms"] <= 2 * 0.02 * m["latency_ms_mean"]


def test_time_cap_reached_and_high_cv_flag_a_machine_whose_state_changes():
    start = time.perf_counter()

    def drifting():  # 1 ms calls for 0.1 s, then 4 ms ones: the windows' means disagree
        time.sleep(0.001 if time.perf_counter() - start < 0.1 else 0.004)

    m = timing.measure(drifting, batch_size=1, device="cpu", meter=ConstantMeter(1.0), idle_power_w=0.0,
                       options={"window_s": 0.05, "time_cap_s": 0.3, "target_rel_ci": 0.0001})
    assert time.perf_counter() - start < 1.5
    assert "time-cap-reached" in m["flags"] and "high-cv" in m["flags"]


def test_steady_jitter_of_single_calls_is_not_flagged():
    calls = []

    def jittery():  # every 7th call 10x slower, evenly spread: each window sees the same mix
        calls.append(1)
        time.sleep(0.0005 if len(calls) % 7 else 0.005)

    m = timing.measure(jittery, batch_size=1, device="cpu", meter=ConstantMeter(1.0), idle_power_w=0.0,
                       options={"window_s": 0.1, "time_cap_s": 1.0, "target_rel_ci": 0.05})
    assert m["cv"] > 0.5  # the calls do jitter
    assert "high-cv" not in m["flags"]  # but the machine's state did not change: no flag


def test_idle_above_total_is_clamped_and_flagged(linear):
    m = timing.measure(linear, batch_size=1, device="cpu", meter=ConstantMeter(10.0), idle_power_w=50.0,
                       options=FAST)
    assert m["energy_j_per_inference_active"] == 0.0
    assert "active-energy-negative-clamped" in m["flags"]


def test_nvml_counter_gives_exact_joules_per_inference(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", fake.make_nvml([fake.FakeGPU("GPU-a", energy_step_mj=3000)]))
    meter = select_meter("cuda", {})
    n = []
    m = timing.measure(lambda: n.append(1), batch_size=2, device="cpu", meter=meter, idle_power_w=0.0,
                       options={"window_s": 0.02, "time_cap_s": 0.1})
    meter.close()
    assert m["energy_method"] == "nvml-counter"
    # 3 J per window between the counter's two reads; the time spent reading it is taken out
    read = 3.0 * m["windows"] / m["iterations"]
    assert m["meter_overhead_s"] > 0
    assert 0.8 * read < m["energy_j_per_inference"] < read
    assert len(n) == m["iterations"] + m["warmup_calls"]  # warm-up calls are not counted
    assert m["warmup_stable"] is True  # a call that does the same thing every time is stable at once


def test_measure_idle_returns_watts():
    assert timing.measure_idle(ConstantMeter(42.0), 0.02) == 42.0


def test_helpers():
    assert timing.t975(1) == pytest.approx(12.706)
    assert timing.t975(1000) == 1.96
    assert timing.ci95_half_width([1.0, 1.0, 1.0]) == 0.0
    assert len(timing.downsample([(i, i) for i in range(5000)])) == 500
    assert timing._percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_a_failing_call_stops_the_meter():
    class Tracking(ConstantMeter):
        ended = 0
        begun = False

        def begin(self):
            Tracking.begun = True
            return super().begin()

        def end(self):
            Tracking.ended += 1
            return super().end()

    calls = []

    def flaky():  # fails on the fifth call inside the first window, after the warm-up
        calls.append(Tracking.begun)
        if sum(calls) > 5:
            raise RuntimeError("boom")

    meter = Tracking(1.0)
    with pytest.raises(RuntimeError):
        timing.measure(flaky, batch_size=1, device="cpu", meter=meter, idle_power_w=0.0, options=FAST)
    assert Tracking.ended == 1


def test_throughput_mode_synchronises_once_per_window_and_reports_means_only(linear):
    from workers.engine import timing as t

    m = t.measure(linear, batch_size=4, device="cpu", meter=ConstantMeter(20.0), idle_power_w=0.0,
                  options=dict(FAST, timing_mode="throughput"))
    assert m["timing_mode"] == "throughput" and m["iterations"] > 10
    # per-call figures do not exist when calls are not synchronised one by one
    assert m["latency_ms_p50"] is None and m["latency_ms_p95"] is None and m["cv"] is None
    assert m["latency_ms_mean"] > 0 and m["latency_ci95_ms"] is not None
    latency = t.measure(linear, batch_size=4, device="cpu", meter=ConstantMeter(20.0), idle_power_w=0.0,
                        options=FAST)
    # on the CPU there is nothing to synchronise: both modes time the same work
    assert m["latency_ms_mean"] == pytest.approx(latency["latency_ms_mean"], rel=0.5)
    with pytest.raises(ValueError, match="unknown timing mode"):
        t.measure(linear, batch_size=4, device="cpu", meter=ConstantMeter(20.0), idle_power_w=0.0,
                  options=dict(FAST, timing_mode="fast"))


def test_warm_up_stops_when_the_call_time_is_stable_and_within_its_budget():
    """Issue 20: ten fixed calls of a 3-second request spent most of an LM audit warming up. A
    call that settles after two slow first calls stops warming a few calls later; one that never
    settles stops at the budget, and says so."""
    import time as clock

    slow_then_steady = iter([0.08, 0.05] + [0.01] * 100)
    sampler = timing.Sampler(lambda: clock.sleep(next(slow_then_steady)), batch_size=1, device="cpu",
                             meter=ConstantMeter(10.0), idle_power_w=0.0, options={"window_s": 0.05})
    sampler.warmup()
    assert sampler.warmup_info["stable"] and sampler.warmup_info["calls"] <= 6

    growing = iter([0.01 * 1.5 ** i for i in range(40)])
    sampler = timing.Sampler(lambda: clock.sleep(next(growing)), batch_size=1, device="cpu",
                             meter=ConstantMeter(10.0), idle_power_w=0.0, options={"window_s": 0.05,
                                                                                 "warmup_iters": 30})
    timing.WARMUP_BUDGET_MIN_S, saved = 0.5, timing.WARMUP_BUDGET_MIN_S
    try:
        sampler.warmup()
    finally:
        timing.WARMUP_BUDGET_MIN_S = saved
    assert not sampler.warmup_info["stable"] and sampler.warmup_info["s"] < 2.0
