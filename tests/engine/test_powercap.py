"""Device, host and facility boundaries: a fake NVML and a fake powercap tree whose counters the
tests move (workers/engine/meters/boundary.py, powercap.py)."""
import os
import sys
import time
from pathlib import Path

import pytest

from workers.engine import carbon, timing
from workers.engine.meters import BoundaryMeter, select_meter

from tests.engine.siblings import sibling


fake = sibling("fake_pynvml")


class Powercap:
    """A powercap tree: package zones intel-rapl:N and their dram sub-zones, counters in uJ that
    the test moves (and that wrap at max_energy_range_uj like the kernel's)."""

    def __init__(self, root: Path, packages=1, dram=True, max_uj=1_000_000_000, start_uj=0):
        self.root = root
        self.zones = {}
        for n in range(packages):
            self._zone(f"intel-rapl:{n}", f"package-{n}", max_uj, start_uj)
            if dram:
                self._zone(f"intel-rapl:{n}:0", "dram", max_uj, start_uj)
            self._zone(f"intel-rapl:{n}:1", "core", max_uj, start_uj)  # never counted on top of the package

    def _zone(self, zone, name, max_uj, start_uj):
        d = self.root / zone
        d.mkdir()
        (d / "name").write_text(name + "\n")
        (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
        self.zones[zone] = [d, start_uj, max_uj]
        self._write(zone)

    def _write(self, zone):
        d, value, _ = self.zones[zone]
        tmp = d / "energy_uj.tmp"
        tmp.write_text(f"{value}\n")
        os.replace(tmp, d / "energy_uj")

    def add(self, zone, joules):
        entry = self.zones[zone]
        entry[1] = (entry[1] + round(joules * 1e6)) % entry[2]
        self._write(zone)


@pytest.fixture
def nvml(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def install(gpus):
        module = fake.make_nvml(gpus)
        monkeypatch.setitem(sys.modules, "pynvml", module)
        return module

    return install


def _gpu_meter(tmp_path, **options):
    meter = select_meter("cuda", {"powercap_root": str(tmp_path), "rapl_poll_s": 0, **options})
    assert isinstance(meter, BoundaryMeter)
    return meter


def test_gpu_window_device_host_and_facility_add_up(nvml, tmp_path):
    nvml([fake.FakeGPU("GPU-aaaa", energy_step_mj=2500)])  # 2.5 J between two reads
    cap = Powercap(tmp_path)
    meter = _gpu_meter(tmp_path, pue=1.25, pue_known=True)
    assert meter.method == "nvml-counter" and meter.host.method == "rapl"
    meter.begin()
    cap.add("intel-rapl:0", 10.0)
    cap.add("intel-rapl:0:0", 2.0)
    cap.add("intel-rapl:0:1", 7.0)  # core: part of the package already
    reading = meter.end()
    meter.close()
    b = reading.boundaries
    assert reading.energy_j == pytest.approx(2.5)  # the headline figure stays the device's
    assert b["device"] == pytest.approx(2.5)
    assert b["host_cpu"] == pytest.approx(10.0) and b["host_dram"] == pytest.approx(2.0)
    assert b["host"] == pytest.approx(2.5 + 10.0 + 2.0)
    assert b["facility"] == pytest.approx(14.5 * 1.25)
    basis = meter.describe()
    assert basis["host"]["estimated"] is False and basis["host"]["share"] == 1.0
    assert basis["facility"]["pue_known"] is True


def test_host_share_is_split_among_the_hosts_gpus(nvml, tmp_path):
    nvml([fake.FakeGPU(f"GPU-{i}", energy_step_mj=1000) for i in range(4)])
    cap = Powercap(tmp_path, packages=2)
    meter = _gpu_meter(tmp_path)
    assert meter.share == pytest.approx(0.25) and "4 accelerator" in meter.share_source
    meter.begin()
    cap.add("intel-rapl:0", 8.0)
    cap.add("intel-rapl:1", 4.0)
    cap.add("intel-rapl:0:0", 2.0)
    cap.add("intel-rapl:1:0", 2.0)
    b = meter.end().boundaries
    assert b["host"] == pytest.approx(1.0 + (12.0 + 4.0) / 4)
    assert b["facility"] == pytest.approx(b["host"])  # no PUE set: x 1.0
    assert meter.describe()["facility"]["pue_known"] is False
    given = _gpu_meter(tmp_path, host_share=1.0)
    assert given.share == 1.0 and "host_share=1" in given.share_source


def test_counters_wrap_at_max_energy_range(nvml, tmp_path):
    nvml([fake.FakeGPU("GPU-aaaa", energy_step_mj=500)])
    cap = Powercap(tmp_path, max_uj=5_000_000, start_uj=4_000_000)  # 1 J below the top
    meter = _gpu_meter(tmp_path)
    meter.begin()
    cap.add("intel-rapl:0", 3.0)  # wraps: 4 J -> 2 J on the 5 J counter
    cap.add("intel-rapl:0:0", 1.5)  # wraps: 4 J -> 0.5 J
    b = meter.end().boundaries
    assert b["host_cpu"] == pytest.approx(3.0) and b["host_dram"] == pytest.approx(1.5)
    assert b["host"] == pytest.approx(0.5 + 4.5)


def test_host_without_powercap_is_estimated_and_labelled(nvml, tmp_path):
    nvml([fake.FakeGPU("GPU-aaaa", energy_step_mj=2500)])
    meter = _gpu_meter(tmp_path / "absent")
    assert meter.host.method == "estimate-tdp" and meter.host.estimated
    basis = meter.describe()
    assert basis["device"]["estimated"] is False  # the GPU's counter is still a measurement
    assert basis["host"]["estimated"] is True and basis["host"]["host_reading"] == "powercap-absent"
    assert basis["facility"]["estimated"] is True
    meter.begin()
    time.sleep(0.1)
    reading = meter.end()
    b = reading.boundaries
    assert b["device"] == pytest.approx(2.5)
    assert b["host_cpu"] > 0 and b["host"] == pytest.approx(b["device"] + b["host_cpu"] + b["host_dram"])


def test_a_run_on_a_measured_gpu_with_an_estimated_host_says_which_figures_are_estimates(nvml, tmp_path):
    from workers.engine.profile_stages import _Run, meter_warnings

    nvml([fake.FakeGPU("GPU-aaaa", energy_step_mj=2500)])
    run = _Run(options={"input_overrides": {}}, device="cuda", seq_len=None, batch_sizes=[1], report=None,
               pct_measured=95.0)
    run.meter = _gpu_meter(tmp_path / "absent")
    meter_warnings(run)
    assert run.warnings == ["the device's energy is measured (nvml-counter); the host's CPU and DRAM share is "
                            "estimated (powercap-absent), so the host and facility figures are estimates"]


def test_unreadable_powercap_is_labelled_unreadable(nvml, tmp_path):
    nvml([fake.FakeGPU("GPU-aaaa", energy_step_mj=2500)])
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").mkdir()  # present but unreadable, as for a non-root user since Linux 5.10
    (zone / "max_energy_range_uj").write_text("1000\n")
    meter = _gpu_meter(tmp_path)
    assert meter.describe()["host"]["host_reading"] == "powercap-unreadable"
    assert "powercap-unreadable" in meter.host.flags


def test_cpu_audit_host_is_package_plus_dram(tmp_path):
    cap = Powercap(tmp_path)
    meter = select_meter("cpu", {"powercap_root": str(tmp_path), "rapl_poll_s": 0})
    assert meter.method == "rapl"
    meter.begin()
    cap.add("intel-rapl:0", 6.0)
    cap.add("intel-rapl:0:0", 1.0)
    reading = meter.end()
    assert reading.energy_j == pytest.approx(6.0)
    assert reading.boundaries["device"] == pytest.approx(6.0) and reading.boundaries["host"] == pytest.approx(7.0)


def test_sampler_reports_boundaries_per_inference_and_grams_from_the_facility(nvml, tmp_path):
    """Over a whole measurement: each window's boundaries add up, per inference, and the grams of
    CO2e rest on the facility figure when a PUE is known, the host figure when it is not."""
    nvml([fake.FakeGPU("GPU-aaaa", energy_step_mj=0)])
    cap = Powercap(tmp_path)

    def call():  # each inference: 0.02 J of package, 0.005 J of DRAM
        cap.add("intel-rapl:0", 0.02)
        cap.add("intel-rapl:0:0", 0.005)
        time.sleep(0.002)

    for pue_known, expect in ((True, "facility"), (False, "host")):
        meter = _gpu_meter(tmp_path, pue=1.5, pue_known=pue_known)
        summary = timing.measure(call, batch_size=1, device="cpu", meter=meter, idle_power_w=0.0,
                                 options={"window_s": 0.05, "time_cap_s": 0.3, "warmup_iters": 10, "pue": 1.5,
                                          "grid_intensity_g_per_kwh": 400.0})
        meter.close()
        b = summary["energy_boundaries"]
        assert summary["energy_boundary"] == "device"
        assert b["device"]["j_per_inference"] == pytest.approx(summary["energy_j_per_inference"])
        assert b["host"]["cpu_j_per_inference"] == pytest.approx(0.02, rel=0.05)
        assert b["host"]["dram_j_per_inference"] == pytest.approx(0.005, rel=0.05)
        assert b["host"]["j_per_inference"] == pytest.approx(
            b["device"]["j_per_inference"] + b["host"]["cpu_j_per_inference"] + b["host"]["dram_j_per_inference"])
        assert b["facility"]["j_per_inference"] == pytest.approx(1.5 * b["host"]["j_per_inference"])
        assert summary["co2e_boundary"] == expect
        assert summary["co2e_g_per_inference"] == pytest.approx(b[expect]["j_per_inference"] / 3.6e6 * 400.0)


def test_worker_sets_the_facility_from_its_own_pue():
    m = {"energy_j_per_inference": 1.0,
         "energy_boundaries": {"device": {"j_per_inference": 1.0, "method": "nvml-counter", "estimated": False},
                               "host": {"j_per_inference": 2.0, "method": "nvml-counter + rapl", "estimated": False},
                               "facility": {"j_per_inference": 99.0, "method": "x", "estimated": False}}}
    grams, boundary = carbon.boundary_co2e(m, 360.0, 1.5, True)
    assert boundary == "facility" and m["energy_boundaries"]["facility"]["j_per_inference"] == pytest.approx(3.0)
    assert grams == pytest.approx(3.0 / 3.6e6 * 360.0)
    grams, boundary = carbon.boundary_co2e({"energy_j_per_inference": 1.0}, 360.0, 1.5, True)
    assert boundary == "device" and grams == pytest.approx(1.5 / 3.6e6 * 360.0)  # an older result
