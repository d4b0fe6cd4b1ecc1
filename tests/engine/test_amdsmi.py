"""AMD GPUs through amdsmi's energy counter, behind the same meter interface (a fake amdsmi)."""
import sys
import time

import pytest

from workers.engine.meters import BoundaryMeter, MeterError, select_meter

from tests.engine.siblings import sibling


fake = sibling("fake_amdsmi")


@pytest.fixture
def amdsmi(monkeypatch):
    def install(gpus, **kw):
        module = fake.make_amdsmi(gpus, **kw)
        monkeypatch.setitem(sys.modules, "amdsmi", module)
        return module

    return install


@pytest.mark.parametrize("old_key", [False, True])
def test_counter_gives_joules_from_counts_times_resolution(amdsmi, tmp_path, old_key):
    gpu = fake.FakeAmdGPU(counts_step=100_000, resolution_uj=15.3, old_key=old_key)
    module = amdsmi([gpu])
    meter = select_meter("rocm", {"powercap_root": str(tmp_path)})
    assert isinstance(meter, BoundaryMeter)
    assert meter.method == "amdsmi-counter" and not meter.estimated
    meter.begin()
    time.sleep(0.15)
    reading = meter.end()
    meter.close()
    assert reading.energy_j == pytest.approx(100_000 * 15.3 / 1e6)  # one step between begin and end
    assert reading.avg_power_w == pytest.approx(reading.energy_j / reading.duration_s)
    assert len(reading.trace) >= 2 and reading.trace[0][1] == 300.0  # power sampled for the trace
    assert reading.boundaries["device"] == pytest.approx(reading.energy_j)
    assert module.calls[-1] == "shut_down"


def test_second_gpu_and_host_share(amdsmi, tmp_path):
    gpus = [fake.FakeAmdGPU(counts_step=0), fake.FakeAmdGPU(counts_step=1000, resolution_uj=1000.0)]
    amdsmi(gpus)
    meter = select_meter("rocm:1", {"powercap_root": str(tmp_path)})
    assert meter.share == pytest.approx(0.5) and "2 accelerator" in meter.share_source
    meter.begin()
    assert meter.end().energy_j == pytest.approx(1.0)


def test_torch_rocm_cuda_device_without_nvml_uses_amdsmi(amdsmi, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML: import fails
    amdsmi([fake.FakeAmdGPU(counts_step=10)])
    assert select_meter("cuda", {"powercap_root": str(tmp_path)}).method == "amdsmi-counter"


def test_absent_amdsmi_is_refused_with_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    with pytest.raises(MeterError, match="needs AMD's amdsmi Python package"):
        select_meter("rocm", {})


def test_no_counter_or_no_driver_is_refused(amdsmi):
    amdsmi([fake.FakeAmdGPU(counter=False)])
    with pytest.raises(MeterError, match="no energy counter here.*virtual-machine guest"):
        select_meter("rocm", {})
    amdsmi([fake.FakeAmdGPU()], init_fails=True)
    with pytest.raises(MeterError, match="could not start.*DRIVER_NOT_LOADED"):
        select_meter("rocm", {})
    amdsmi([fake.FakeAmdGPU()])
    with pytest.raises(MeterError, match="sees 1 GPU"):
        select_meter("rocm:3", {})


def test_counter_reset_falls_back_to_the_samples(amdsmi, tmp_path):
    gpu = fake.FakeAmdGPU(counts=5_000_000, power_w=200.0)
    amdsmi([gpu])
    meter = select_meter("rocm", {"powercap_root": str(tmp_path), "boundaries": False})
    meter.begin()
    time.sleep(0.12)
    gpu.counts = 0  # driver reloaded
    reading = meter.end()
    assert "counter-reset-sampled" in reading.flags
    assert reading.energy_j == pytest.approx(200.0 * reading.trace[-1][0], rel=0.05)
