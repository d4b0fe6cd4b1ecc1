"""Device-state snapshots against the fake NVML, and the energy/latency frontier math."""
import sys

import pytest

from workers.engine import gpu_state
from workers.engine.frontier import build_frontier, pareto, power_limit_steps

from tests.engine.siblings import sibling


fake = sibling("fake_pynvml")


# ------------------------------------------------------------------ snapshot


def test_snapshot_reads_clocks_temperature_limit_and_reasons():
    gpu = fake.FakeGPU("GPU-aaaa", sm_clock_mhz=1410, mem_clock_mhz=2619, temperature_c=71,
                       power_limit_w=350.0, clock_reasons=0x4 | 0x20)
    nvml = fake.make_nvml([gpu])
    s = gpu_state.snapshot(gpu, nvml)
    assert s == {"sm_clock_mhz": 1410, "mem_clock_mhz": 2619, "temperature_c": 71.0,
                 "power_limit_w": 350.0, "throttle_reasons": ["sw_power_cap", "sw_thermal"]}


def test_unsupported_reads_give_none_never_an_exception():
    gpu = fake.FakeGPU("GPU-aaaa", sm_clock_mhz=None, mem_clock_mhz=None, temperature_c=None, clock_reasons=None)
    nvml = fake.make_nvml([gpu])
    del nvml.nvmlDeviceGetEnforcedPowerLimit  # an old pynvml: the limit read falls back
    s = gpu_state.snapshot(gpu, nvml)
    assert s == {"sm_clock_mhz": None, "mem_clock_mhz": None, "temperature_c": None,
                 "power_limit_w": 700.0, "throttle_reasons": None}
    del nvml.nvmlDeviceGetPowerManagementLimit
    assert gpu_state.snapshot(gpu, nvml)["power_limit_w"] is None


def test_older_pynvml_throttle_reason_names_are_used():
    gpu = fake.FakeGPU("GPU-aaaa", clock_reasons=0x8 | 0x80)
    nvml = fake.make_nvml([gpu], clocks_event_api=False)
    assert not hasattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons")
    assert gpu_state.snapshot(gpu, nvml)["throttle_reasons"] == ["hw_slowdown", "hw_power_brake"]


def test_decode_reasons_names_unknown_bits_and_matches_real_pynvml():
    assert gpu_state.decode_reasons(0) == []
    assert gpu_state.decode_reasons(0x1 | 0x800) == ["gpu_idle", "unknown_0x800"]
    pynvml = pytest.importorskip("pynvml")  # the real bindings' constants agree with ours
    assert gpu_state.reason_bits(pynvml) == gpu_state.reason_bits(None)
    assert gpu_state.decode_reasons(pynvml.nvmlClocksEventReasonSwPowerCap, pynvml) == ["sw_power_cap"]


def test_summarize_and_watch():
    snaps = [{"sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "temperature_c": 60.0, "power_limit_w": 700.0,
              "throttle_reasons": []},
             {"sm_clock_mhz": 1600, "mem_clock_mhz": 2619, "temperature_c": 80.0, "power_limit_w": 700.0,
              "throttle_reasons": ["sw_thermal"]},
             {"sm_clock_mhz": None, "mem_clock_mhz": None, "temperature_c": None, "power_limit_w": None,
              "throttle_reasons": None}]
    s = gpu_state.summarize(snaps)
    assert s["sm_clock_mhz"] == 1790.0 and s["sm_clock_mhz_min"] == 1600
    assert s["temperature_c_max"] == 80.0 and s["power_limit_w"] == 700.0
    assert s["throttle_reasons"] == ["sw_thermal"] and s["slowdown"] is True
    assert gpu_state.summarize([{"throttle_reasons": ["gpu_idle"]}])["slowdown"] is False

    gpu = fake.FakeGPU("GPU-aaaa", clock_reasons=0x4)
    watch = gpu_state.StateWatch(gpu, fake.make_nvml([gpu]), interval_s=0.01).start()
    gpu.clock_reasons = 0x4 | 0x40
    summary = watch.stop()
    assert summary["snapshots"] >= 2 and summary["throttle_reasons"] == ["sw_power_cap", "hw_thermal"]


# ------------------------------------------------------------------ steps and frontier


def test_power_limit_steps():
    assert power_limit_steps(200, 700, 4) == [700.0, 533.0, 367.0, 200.0]
    assert power_limit_steps(100.5, 300, 3) == [300.0, 200.0, 101.0]  # never below the minimum
    assert power_limit_steps(200, 700, 1) == [700.0]
    assert power_limit_steps(700, 700, 4) == [700.0]
    assert power_limit_steps(699, 700, 4) == [700.0, 699.0]  # no duplicate steps
    with pytest.raises(ValueError):
        power_limit_steps(200, 700, 0)


def test_pareto_keeps_only_undominated_points():
    pts = [{"energy": 1.0, "latency": 10.0}, {"energy": 2.0, "latency": 5.0},
           {"energy": 2.0, "latency": 12.0}, {"energy": 3.0, "latency": 5.0}, {"energy": None, "latency": 1.0}]
    assert pareto(pts) == [{"energy": 1.0, "latency": 10.0}, {"energy": 2.0, "latency": 5.0}]


def _m(bs, limit, e_sample, p95, **kw):
    return dict({"batch_size": bs, "power_limit_w": limit, "energy_j_per_sample": e_sample,
                 "energy_j_per_inference": e_sample * bs, "latency_ms_p95": p95,
                 "latency_ms_mean": p95 * 0.8 if p95 is not None else None, "energy_uncertainty_rel": 0.05, "quality_grade": "B"}, **kw)


def test_frontier_cheapest_setting_within_the_latency_target():
    doc = {"variants": [
        {"recipe": "baseline", "status": "succeeded",
         "measurements": [_m(1, 700, 0.50, 2.0), _m(8, 700, 0.20, 6.0)],
         "sweep_measurements": [_m(1, 300, 0.40, 3.0), _m(8, 300, 0.12, 11.0)]},
        {"recipe": "fp16", "status": "failed", "measurements": []},
    ]}
    f = build_frontier(doc, {"latency_target_ms_p95": 8.0})
    assert [v["recipe"] for v in f["variants"]] == ["baseline"]
    v = f["variants"][0]
    assert v["energy_key"] == "energy_j_per_sample" and v["latency_key"] == "latency_ms_p95"
    assert len(v["points"]) == 4
    assert v["pareto"] == [{"batch_size": 8, "power_limit_w": 300}, {"batch_size": 8, "power_limit_w": 700},
                           {"batch_size": 1, "power_limit_w": 300}, {"batch_size": 1, "power_limit_w": 700}]
    assert (v["cheapest"]["batch_size"], v["cheapest"]["power_limit_w"]) == (8, 700)
    assert "batch size 8 at 700 W" in v["reason"] and "latency_ms_p95 <= 8 ms" in v["reason"]

    none = build_frontier(doc, {"latency_target_ms_p95": 1.0})["variants"][0]
    assert none["cheapest"] is None
    assert none["reason"].startswith("no setting meets latency_ms_p95 <= 1 ms; the fastest, batch size 1 at 700 W")

    untargeted = build_frontier(doc, {})["variants"][0]
    assert (untargeted["cheapest"]["batch_size"], untargeted["cheapest"]["power_limit_w"]) == (8, 300)


def test_frontier_generation_uses_tokens_and_tpot_and_says_when_close():
    gen = lambda bs, limit, e, tpot: {"batch_size": bs, "power_limit_w": limit, "energy_j_per_output_token": e,  # noqa: E731
                                      "tpot_ms_p95": tpot, "latency_ms_p95": tpot * 40, "energy_uncertainty_rel": 0.05}
    doc = {"variants": [{"recipe": "baseline", "status": "succeeded",
                         "measurements": [gen(1, 700, 0.30, 20.0), gen(16, 700, 0.050, 30.0)],
                         "sweep_measurements": [gen(16, 400, 0.048, 45.0), gen(16, 500, 0.049, 38.0)]}]}
    v = build_frontier(doc, {"slo_tpot_ms_p95": 40.0, "latency_target_ms_p95": 1.0})["variants"][0]
    assert v["energy_key"] == "energy_j_per_output_token" and v["target"] == {"key": "tpot_ms_p95", "limit_ms": 40.0}
    assert (v["cheapest"]["batch_size"], v["cheapest"]["power_limit_w"]) == (16, 500)
    assert "batch size 16 at 700 W is within the measurement uncertainty" in v["reason"]


def test_frontier_throughput_mode_cannot_check_a_p95_target():
    doc = {"variants": [{"recipe": "baseline", "status": "succeeded",
                         "measurements": [_m(8, 700, 0.2, None)], "sweep_measurements": [_m(8, 300, 0.1, None)]}]}
    for m in doc["variants"][0]["measurements"] + doc["variants"][0]["sweep_measurements"]:
        m["latency_ms_mean"] = 5.0
    v = build_frontier(doc, {"latency_target_ms_p95": 8.0})["variants"][0]
    assert v["latency_key"] == "latency_ms_mean" and v["cheapest"] is None
    assert "throughput mode" in v["reason"]


def test_snapshot_from_an_nvml_meter_s_handle(monkeypatch):
    """The call timing makes at the end of a window: the NVML meters expose ``handle`` (the
    whole GPU's, also for a MIG slice) and ``nvml``; other meters have neither."""
    from workers.engine.meters import select_meter

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = fake.FakeGPU("GPU-aaaa", energy_step_mj=1000, clock_reasons=0x4, power_limit_w=400.0)
    monkeypatch.setitem(sys.modules, "pynvml", fake.make_nvml([gpu]))
    meter = select_meter("cuda", {})
    try:
        s = gpu_state.snapshot(meter.handle, meter.nvml)
    finally:
        meter.close()
    assert s["power_limit_w"] == 400.0 and s["throttle_reasons"] == ["sw_power_cap"]
    assert getattr(select_meter("cpu", {"energy_method": "estimate-tdp"}), "handle", None) is None


def test_every_gpu_measurement_records_clocks_temperature_limit_and_throttling(monkeypatch):
    """A measurement on an NVML meter carries the device's state over its windows, read after
    each window (outside the timed calls); a power-cap slowdown flags the measurement."""
    from workers.engine.meters import select_meter
    from workers.engine.timing import measure

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = fake.FakeGPU("GPU-aaaa", energy_step_mj=1000, clock_reasons=0x4, power_limit_w=300.0,
                       sm_clock_mhz=1200, temperature_c=64)
    monkeypatch.setitem(sys.modules, "pynvml", fake.make_nvml([gpu]))
    meter = select_meter("cuda", {})
    try:
        m = measure(lambda: sum(range(2000)), batch_size=1, device="cpu", meter=meter, idle_power_w=0.0,
                    options={"window_s": 0.05, "time_cap_s": 0.3, "warmup_iters": 10})
    finally:
        meter.close()
    assert m["sm_clock_mhz"] == 1200 and m["temperature_c_max"] == 64.0
    assert m["power_limit_w"] == 300.0 and m["throttle_reasons"] == ["sw_power_cap"]
    assert "gpu-slowdown" in m["flags"]
    cpu = measure(lambda: None, batch_size=1, device="cpu", meter=select_meter("cpu", {"energy_method": "estimate-tdp"}),
                  idle_power_w=0.0, options={"window_s": 0.02, "time_cap_s": 0.1})
    assert "sm_clock_mhz" not in cpu and "gpu-slowdown" not in cpu["flags"]
