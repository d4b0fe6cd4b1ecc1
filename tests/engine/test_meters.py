"""Energy meters against a fake pynvml and a fake powercap tree."""
import importlib.util
import itertools
import os
import sys
import time
from pathlib import Path

import pytest

from workers.engine import cpuinfo, fingerprint, meters
from workers.engine.meters import select_meter


def _sibling(name):
    spec = importlib.util.spec_from_file_location(f"_audit_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fake = _sibling("fake_pynvml")


@pytest.fixture
def nvml(monkeypatch):
    """Install a fake pynvml built from the given GPUs; returns the module."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def install(gpus, **kw):
        module = fake.make_nvml(gpus, **kw)
        monkeypatch.setitem(sys.modules, "pynvml", module)
        return module

    return install


# ------------------------------------------------------------------ NVML counter


def test_counter_gives_exact_joules(nvml):
    gpu = fake.FakeGPU("GPU-aaaa", energy_step_mj=2500, pids=[os.getpid()])
    nvml([gpu])
    meter = select_meter("cuda", {})
    assert meter.method == "nvml-counter" and not meter.estimated
    assert meter.uncertainty_rel == pytest.approx(0.05)
    meter.begin()
    time.sleep(0.25)
    reading = meter.end()
    meter.close()
    assert reading.energy_j == pytest.approx(2.5)
    assert reading.avg_power_w == pytest.approx(2.5 / reading.duration_s)
    assert len(reading.trace) >= 3  # power sampled beside the counter, for the trace
    assert reading.flags == []


def test_zero_and_implausible_counter_readings_are_flagged(nvml):
    gpu = fake.FakeGPU("GPU-aaaa", energy_step_mj=0)
    nvml([gpu])
    meter = select_meter("cuda:0", {})
    meter.begin()
    assert "zero-energy" in meter.end().flags
    gpu.energy_step_mj = 10_000_000  # 10 kJ in a blink
    meter.begin()
    assert "implausible-power" in meter.end().flags


def test_foreign_process_flags_contended(nvml):
    nvml([fake.FakeGPU("GPU-aaaa", energy_step_mj=1000, pids=[os.getpid(), 4242])])
    meter = select_meter("cuda", {})
    meter.begin()
    assert "contended" in meter.end().flags


def test_mig_enabled_gpu_is_flagged(nvml):
    nvml([fake.FakeGPU("GPU-aaaa", energy_step_mj=1000, mig_mode=1)])
    meter = select_meter("cuda", {})
    meter.begin()
    assert "mig" in meter.end().flags


def test_mig_slice_uuid_reads_the_whole_gpu(nvml, monkeypatch):
    whole = fake.FakeGPU("GPU-aaaa", energy_step_mj=3000, mig_mode=1)
    mig = fake.FakeGPU("MIG-1111-2222", is_mig=True, parent=whole)
    nvml([whole, mig])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-1111-2222")
    meter = select_meter("cuda", {})
    assert meter.handle is whole and meter.method == "nvml-counter"
    meter.begin()
    reading = meter.end()
    assert reading.energy_j == pytest.approx(3.0) and "mig" in reading.flags


@pytest.mark.parametrize(
    ("cvd", "device", "expected"),
    [
        ("GPU-bbbb-2222", "cuda", "GPU-bbbb-2222"),
        ("GPU-bbbb", "cuda:0", "GPU-bbbb-2222"),  # CUDA accepts UUID prefixes
        ("GPU-bbbb-2222,GPU-aaaa-1111", "cuda:1", "GPU-aaaa-1111"),
        ("1,0", "cuda:0", "GPU-bbbb-2222"),
        (None, "cuda:1", "GPU-bbbb-2222"),
    ],
)
def test_cuda_visible_devices_maps_by_uuid(nvml, monkeypatch, cvd, device, expected):
    a = fake.FakeGPU("GPU-aaaa-1111", energy_step_mj=1000)
    b = fake.FakeGPU("GPU-bbbb-2222", energy_step_mj=7000)
    module = nvml([a, b])
    if cvd is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", cvd)
    meter = select_meter(device, {})
    assert meter.uuid == expected
    assert ("nvmlDeviceGetHandleByUUID", expected) in module.calls
    meter.begin()
    assert meter.end().energy_j == pytest.approx(7.0 if expected.startswith("GPU-b") else 1.0)


def test_torch_uuid_is_preferred(nvml, monkeypatch):
    a = fake.FakeGPU("GPU-aaaa-1111")
    b = fake.FakeGPU("GPU-bbbb-2222")
    nvml([a, b])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # would say a; torch knows better
    monkeypatch.setattr(meters.nvml_common, "_torch_uuid", lambda index: "bbbb-2222")
    assert select_meter("cuda", {}).uuid == "GPU-bbbb-2222"


# ------------------------------------------------------------------ NVML sampling


def test_no_counter_falls_back_to_sampling_constant_power(nvml):
    nvml([fake.FakeGPU("GPU-aaaa", counter=False, power=150.0)])
    meter = select_meter("cuda", {"nvml_sample_interval_s": 0.02})
    assert meter.method == "nvml-power-sampling"
    assert meter.uncertainty_rel == pytest.approx(0.15)
    meter.begin()
    time.sleep(0.3)
    reading = meter.end()
    assert "counter-unavailable-sampled" in reading.flags
    assert reading.duration_s == pytest.approx(0.3, abs=0.1)
    assert reading.energy_j == pytest.approx(150.0 * reading.duration_s, rel=1e-6)
    assert reading.avg_power_w == pytest.approx(150.0, rel=1e-3)
    assert len(reading.trace) >= 5


def test_sampling_integrates_a_ramp(nvml):
    module = nvml([fake.FakeGPU("GPU-aaaa", counter=False, power=lambda t: 100.0 + 400.0 * t)])
    meter = select_meter("cuda", {"nvml_sample_interval_s": 0.01})
    tb = time.perf_counter() - module.t0
    meter.begin()
    time.sleep(0.3)
    reading = meter.end()
    te = time.perf_counter() - module.t0
    expected_avg = 100.0 + 400.0 * (tb + te) / 2
    assert reading.avg_power_w == pytest.approx(expected_avg, rel=0.03)
    assert reading.energy_j == pytest.approx(expected_avg * (te - tb), rel=0.05)


def test_gpu_without_counter_function(nvml):
    nvml([fake.FakeGPU("GPU-aaaa", power=80.0)], counter_function=False)
    meter = select_meter("cuda", {})
    assert meter.method == "nvml-power-sampling"


def test_no_power_at_all_is_an_estimate(nvml, monkeypatch):
    nvml([fake.FakeGPU("GPU-aaaa", counter=False, power_supported=False)])
    meter = select_meter("cuda", {"gpu_tdp_w": 200})
    assert meter.estimated and meter.method == "estimate-tdp"
    meter.begin()
    reading = meter.end()
    assert reading.avg_power_w == pytest.approx(200.0)
    assert "gpu-energy-estimated" in reading.flags



def test_gpu_estimate_does_not_pretend_to_measure_idle(nvml):
    """A meter that assumes the TDP is drawn cannot see idle; subtracting an 'idle' equal to
    the load would make active energy 0 J. Idle is reported as not measured instead."""
    from workers.engine import timing

    nvml([fake.FakeGPU("GPU-aaaa", counter=False, power_supported=False)])
    meter = select_meter("cuda", {"gpu_tdp_w": 200})
    assert timing.measure_idle(meter, 0.01) == 0.0
    meter.begin()
    reading = meter.end()
    assert "idle-not-measured" in reading.flags


def test_no_pynvml_is_an_estimate(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    meter = select_meter("cuda", {})
    assert meter.estimated and "gpu-energy-estimated" in meter.flags


# ------------------------------------------------------------------ RAPL


def _zone(root, zone, name, energy_uj, max_uj=262_143_328_850):
    d = root / zone
    d.mkdir()
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def _write(zone, value):
    tmp = zone / "energy_uj.tmp"
    tmp.write_text(f"{value}\n")
    os.replace(tmp, zone / "energy_uj")


def test_rapl_sums_packages_only_with_wraparound(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_POWERCAP_ROOT", str(tmp_path))
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 999_000_000, max_uj=1_000_000_000)
    p1 = _zone(tmp_path, "intel-rapl:1", "package-1", 10_000_000)
    core = _zone(tmp_path, "intel-rapl:0:0", "core", 5_000_000)
    psys = _zone(tmp_path, "intel-rapl:2", "psys", 5_000_000)
    meter = select_meter("cpu", {"rapl_poll_s": 0})
    assert meter.method == "rapl" and not meter.estimated
    assert [d.name for d in meter.domains] == ["package-0", "package-1"]
    meter.begin()
    time.sleep(0.05)
    _write(p0, 500_000)  # wrapped: 1.0 J to the top, 0.5 J after
    _write(p1, 12_000_000)  # 2.0 J
    _write(core, 9_000_000)
    _write(psys, 9_000_000)
    reading = meter.end()
    assert reading.energy_j == pytest.approx(3.5)
    assert reading.avg_power_w == pytest.approx(3.5 / reading.duration_s)


def test_rapl_reports_dram_beside_the_package(tmp_path):
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    dram = _zone(tmp_path, "intel-rapl:0:1", "dram", 100, max_uj=1_000_000)
    core = _zone(tmp_path, "intel-rapl:0:0", "core", 0)
    meter = select_meter("cpu", {"powercap_root": str(tmp_path), "rapl_poll_s": 0})
    assert [d.name for d in meter.dram_domains] == ["dram"]
    meter.begin()
    _write(p0, 3_000_000)  # 2 J package
    _write(dram, 50)  # wrapped: 999_900 uJ to the top + 50
    _write(core, 1_500_000)
    reading = meter.end()
    assert reading.energy_j == pytest.approx(2.0)  # the package stays the figure
    assert reading.domains == {"package": pytest.approx(2.0), "dram": pytest.approx(0.99995)}
    assert reading.assumptions is None


def test_rapl_without_dram_zone_reports_package_only(tmp_path):
    _zone(tmp_path, "intel-rapl:0", "package-0", 0)
    meter = select_meter("cpu", {"powercap_root": str(tmp_path), "rapl_poll_s": 0})
    meter.begin()
    assert set(meter.end().domains) == {"package"}


def test_rapl_poller_keeps_up_across_several_wraps(tmp_path):
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 0, max_uj=1_000_000)
    meter = select_meter("cpu", {"powercap_root": str(tmp_path), "rapl_poll_s": 0.01})
    meter.begin()
    value = 0
    for _ in range(5):  # 0.8 J per step: 4 J in all, wrapping the 1 J counter 4 times
        time.sleep(0.05)
        value = (value + 800_000) % 1_000_000
        _write(p0, value)
    time.sleep(0.05)
    reading = meter.end()
    assert reading.energy_j == pytest.approx(4.0)
    assert len(reading.trace) >= 5


def test_unreadable_rapl_falls_back_to_estimate(tmp_path):
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").mkdir()  # unreadable as a file, even for root
    (zone / "max_energy_range_uj").write_text("1000\n")
    meter = select_meter("cpu", {"powercap_root": str(tmp_path), "cpu_tdp_w": 10})
    assert meter.method == "estimate-tdp" and "rapl-unreadable" in meter.flags


# ------------------------------------------------------------------ estimate-tdp


def _burn(seconds):
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1
    return x


def _estimate(tmp_path, monkeypatch, *, per_package=8, packages=1, **options):
    monkeypatch.setattr(cpuinfo, "logical_cpus_per_package", lambda: per_package)
    monkeypatch.setattr(cpuinfo, "cpu_packages", lambda: packages)
    meter = select_meter("cpu", {"powercap_root": str(tmp_path), **options})
    assert meter.method == "estimate-tdp" and meter.estimated
    return meter


def test_estimate_records_memory_beside_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(meters.cpu_estimate, "_resident_gb", lambda: 4.0)
    meter = _estimate(tmp_path, monkeypatch, cpu_tdp_w=64)
    meter.begin()
    time.sleep(0.05)
    reading = meter.end()
    a = reading.assumptions
    assert a["memory_gb"] == 4.0 and a["memory_w"] == pytest.approx(4.0 * 0.3725)
    assert "Green Algorithms" in a["memory_source"]
    assert reading.domains["dram"] == pytest.approx(a["memory_w"] * reading.duration_s)
    assert reading.domains["package"] == pytest.approx(reading.energy_j)  # DRAM beside, not added


def test_estimate_flags_spin_threads_and_other_processes(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 1000 0 0 0 0 0 0\n")
    meter = _estimate(tmp_path, monkeypatch, cpu_tdp_w=64, threads=1, proc_stat_path=str(stat))
    meter.begin()
    hz = os.sysconf("SC_CLK_TCK")
    stat.write_text(f"cpu  {100 + 10 * hz} 0 100 1000 0 0 0 0 0 0\n")  # 10 CPU-s by others
    _burn(0.1)
    reading = meter.end()
    a = reading.assumptions
    assert a["other_processes_cpus"] > 0.5 and "contended-cpu" in reading.flags
    assert reading.energy_j < meter.idle_w * reading.duration_s + meter.w_per_cpu * 0.5  # others not counted
    assert a["threads"] == 1 and a["cpu_time_over_wall_x_threads"] == pytest.approx(a["cores_used"])
    cpu_clock = itertools.count(0.0, 1.0)  # 1 CPU-s between begin and end, over ~0.05 s of wall
    monkeypatch.setattr(meters.cpu_estimate.time, "process_time", lambda: next(cpu_clock))
    meter.begin()
    time.sleep(0.05)
    assert "cpu-time-above-threads" in meter.end().flags
