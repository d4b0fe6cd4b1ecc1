"""Worker-side power-limit control and the power-limit sweep, against the fake NVML.

No real device setting is ever touched: pynvml is the fake from tests/engine/fake_pynvml.py,
and the "device" state two processes share is a JSON file in tmp_path.
"""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workers import power
from workers.power import PowerLimitController, PowerLimitError, PowerLimitRefused, restore_from_journals, run_power_sweep

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "engine" / "fake_pynvml.py"
ALLOW = {"AUDIT_ALLOW_POWER_LIMIT": "1"}


def _load_fake():
    spec = importlib.util.spec_from_file_location("_audit_fake_pynvml_power", FAKE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fake = _load_fake()


@pytest.fixture
def device(tmp_path, monkeypatch):
    """One fake H100 (limits 200-700 W, default 700 W) whose limit lives in a state file."""
    gpu = fake.FakeGPU("GPU-aaaa", power_limit_w=700.0)
    nvml = fake.make_nvml([gpu], state_file=str(tmp_path / "device.json"))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    return gpu, nvml


def _limit_w(nvml, gpu):
    return nvml.nvmlDeviceGetPowerManagementLimit(gpu) / 1000.0


def _sets(nvml):
    return [c[2] / 1000.0 for c in nvml.calls if c[0] == "nvmlDeviceSetPowerManagementLimit"]


# ------------------------------------------------------------------ the controller


def test_refused_when_the_worker_does_not_allow_it(device, tmp_path):
    gpu, nvml = device
    with pytest.raises(PowerLimitRefused, match="AUDIT_ALLOW_POWER_LIMIT=1"):
        PowerLimitController("GPU-aaaa", directory=tmp_path / "state", env={}).open()
    with pytest.raises(PowerLimitRefused, match="AUDIT_ALLOW_POWER_LIMIT=1"):
        with PowerLimitController("GPU-aaaa", directory=tmp_path / "state", env={"AUDIT_ALLOW_POWER_LIMIT": "yes"}):
            pass
    assert _sets(nvml) == [] and not (tmp_path / "state").exists()


def test_refused_when_not_supported_or_not_permitted(tmp_path, monkeypatch):
    gpu = fake.FakeGPU("GPU-aaaa", power_limit_min_w=None)
    monkeypatch.setitem(sys.modules, "pynvml", fake.make_nvml([gpu]))
    with pytest.raises(PowerLimitRefused, match="does not support power-limit control"):
        PowerLimitController("GPU-aaaa", directory=tmp_path, env=ALLOW).open()

    gpu = fake.FakeGPU("GPU-bbbb", power_limit_settable=False)
    nvml = fake.make_nvml([gpu])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    with pytest.raises(PowerLimitRefused, match="insufficient permissions"):
        with PowerLimitController("GPU-bbbb", directory=tmp_path, env=ALLOW) as ctl:
            ctl.set_limit_w(300)
    assert list(tmp_path.glob("power-limit-*.json")) == []  # nothing changed: no journal left
    assert gpu.power_limit_w == 700.0


def test_limits_outside_the_constraints_are_refused(device, tmp_path):
    gpu, nvml = device
    with PowerLimitController("GPU-aaaa", directory=tmp_path / "state", env=ALLOW) as ctl:
        assert (ctl.min_w, ctl.max_w, ctl.default_w) == (200.0, 700.0, 700.0)
        for bad in (150, 701):
            with pytest.raises(PowerLimitRefused, match="outside this GPU's power-limit range 200-700 W"):
                ctl.set_limit_w(bad)
    assert _sets(nvml) == [] and _limit_w(nvml, gpu) == 700.0


def test_journal_written_before_the_change_and_removed_after_restore(device, tmp_path):
    gpu, nvml = device
    state = tmp_path / "state"
    with PowerLimitController("GPU-aaaa", directory=state, env=ALLOW) as ctl:
        assert ctl.set_limit_w(300) == 300.0
        assert _limit_w(nvml, gpu) == 300.0
        journal = json.loads((state / "power-limit-GPU-aaaa.json").read_text())
        assert journal["gpu_uuid"] == "GPU-aaaa" and journal["original_limit_mw"] == 700_000
        assert journal["pid"] == os.getpid() and journal["time"].endswith("Z")
        ctl.set_limit_w(450)
    assert _limit_w(nvml, gpu) == 700.0
    assert _sets(nvml) == [300.0, 450.0, 700.0]
    assert list(state.iterdir()) == []


def test_refused_when_the_journal_cannot_be_written(device, tmp_path):
    gpu, nvml = device
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(PowerLimitRefused, match="cannot write the restore journal"):
        with PowerLimitController("GPU-aaaa", directory=blocker / "state", env=ALLOW) as ctl:
            ctl.set_limit_w(300)
    assert _sets(nvml) == [] and _limit_w(nvml, gpu) == 700.0


def test_restored_after_an_exception(device, tmp_path):
    gpu, nvml = device
    with pytest.raises(RuntimeError, match="boom"):
        with PowerLimitController("GPU-aaaa", directory=tmp_path, env=ALLOW) as ctl:
            ctl.set_limit_w(250)
            raise RuntimeError("boom")
    assert _limit_w(nvml, gpu) == 700.0 and list(tmp_path.glob("power-limit-*")) == []


def test_a_failed_restore_keeps_the_journal_for_the_next_start(device, tmp_path):
    gpu, nvml = device
    ctl = PowerLimitController("GPU-aaaa", directory=tmp_path, env=ALLOW).open()
    ctl.set_limit_w(300)
    gpu.power_limit_settable = False  # e.g. the driver refuses now
    with pytest.raises(PowerLimitError, match="journal .* is kept"):
        ctl.__exit__(None, None, None)
    assert (tmp_path / "power-limit-GPU-aaaa.json").exists()
    gpu.power_limit_settable = True
    out = restore_from_journals(tmp_path)
    assert out[0]["skipped"] and out[0]["gpu_uuid"] == "GPU-aaaa"  # our own pid is alive: left alone


CHILD = textwrap.dedent("""
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("fake_pynvml", sys.argv[1])
    fake = importlib.util.module_from_spec(spec); sys.modules["fake_pynvml"] = fake; spec.loader.exec_module(fake)
    sys.modules["pynvml"] = fake.make_nvml([fake.FakeGPU("GPU-aaaa")], state_file=sys.argv[2])
    from workers.power import PowerLimitController
    ctl = PowerLimitController("GPU-aaaa", directory=sys.argv[3], env={"AUDIT_ALLOW_POWER_LIMIT": "1"})
    ctl.__enter__()
    ctl.set_limit_w(300)
    print("set", flush=True)
    time.sleep(60)
""")


def test_a_killed_worker_s_limit_is_restored_on_the_next_start(device, tmp_path):
    gpu, nvml = device
    state = tmp_path / "state"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(FAKE), nvml.state_file, str(state)],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "set"
        assert _limit_w(nvml, gpu) == 300.0  # the shared "device" saw the child's change
        journal = state / "power-limit-GPU-aaaa.json"
        assert json.loads(journal.read_text())["pid"] == child.pid
        assert restore_from_journals(state)[0]["skipped"]  # its owner still runs: left alone
        assert _limit_w(nvml, gpu) == 300.0
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert _limit_w(nvml, gpu) == 300.0  # no finally ran in the child
    out = restore_from_journals(state)
    assert [(o["gpu_uuid"], o["original_limit_w"], o.get("restored"), o["was_w"]) for o in out] == [
        ("GPU-aaaa", 700.0, True, 300.0)]
    assert _limit_w(nvml, gpu) == 700.0 and not journal.exists()
    assert restore_from_journals(state) == []


def test_a_new_controller_restores_a_dead_worker_s_journal_first(device, tmp_path):
    gpu, nvml = device
    power._write_json_atomic(power.journal_path(tmp_path, "GPU-aaaa"),
                             {"gpu_uuid": "GPU-aaaa", "original_limit_mw": 650_000, "pid": 2 ** 22 + 7,
                              "pid_start_ticks": 1})
    nvml.nvmlDeviceSetPowerManagementLimit(gpu, 300_000)  # what the dead worker left
    with PowerLimitController("GPU-aaaa", directory=tmp_path, env=ALLOW) as ctl:
        ctl.set_limit_w(400)
        assert json.loads(power.journal_path(tmp_path, "GPU-aaaa").read_text())["original_limit_mw"] == 650_000
    assert _limit_w(nvml, gpu) == 650.0  # the real original, not the dead worker's 300 W


# ------------------------------------------------------------------ the sweep


def _doc(limit_w, gpu):
    """What the engine would measure at this limit: lower limits use less energy, run slower."""
    scale = limit_w / 700.0
    return {"schema_version": 2, "variants": [
        {"recipe": "baseline", "status": "succeeded", "comparison": [],
         "measurements": [{"batch_size": bs, "energy_j_per_sample": 0.1 * scale / bs ** 0.5,
                           "energy_j_per_inference": 0.1 * scale * bs ** 0.5,
                           "latency_ms_p95": 2.0 * bs ** 0.5 / scale, "energy_uncertainty_rel": 0.05,
                           "flags": []} for bs in (1, 8)]}],
        "tradeoff": {"per_batch_size": []}, "warnings": []}


def test_sweep_sets_each_limit_in_order_restores_and_merges(device, tmp_path):
    gpu, nvml = device
    seen = []

    def engine(request):
        seen.append(_limit_w(nvml, gpu))
        return _doc(seen[-1], gpu)

    request = {"command": "profile", "options": {"power_limit_steps": 3, "latency_target_ms_p95": 5.0}}
    ctl = PowerLimitController("GPU-aaaa", directory=tmp_path, env=ALLOW)
    doc = run_power_sweep(request, engine, ctl, watch_interval_s=0.01)
    assert seen == [700.0, 450.0, 200.0]
    assert _sets(nvml) == [700.0, 450.0, 200.0, 700.0] and _limit_w(nvml, gpu) == 700.0
    assert list(tmp_path.glob("power-limit-*")) == []
    calls = [c[0] for c in nvml.calls]
    assert calls.count("nvmlInit") == calls.count("nvmlShutdown") == 1  # NVML released
    v = doc["variants"][0]
    assert [m["power_limit_w"] for m in v["measurements"]] == [700.0, 700.0]
    assert [(m["batch_size"], m["power_limit_w"]) for m in v["sweep_measurements"]] == [
        (1, 450.0), (8, 450.0), (1, 200.0), (8, 200.0)]
    assert v["measurements"][0]["run_gpu_state"]["power_limit_w"] == 700.0
    assert doc["power_sweep"]["steps_w"] == [700.0, 450.0, 200.0] and doc["power_sweep"]["restored"] is True
    fv = doc["frontier"]["variants"][0]
    assert len(fv["points"]) == 6
    # batch 8 p95 = 2*sqrt(8)*700/limit: 5.66 ms at 700 W, over 5 ms: batch 1 at the lowest limit
    # whose p95 (2*700/limit) stays within 5 ms, i.e. 450 W (3.1 ms), not 200 W (7 ms)
    assert (fv["cheapest"]["batch_size"], fv["cheapest"]["power_limit_w"]) == (1, 450.0)


def test_sweep_restores_when_the_engine_fails_mid_sweep(device, tmp_path):
    gpu, nvml = device
    seen = []

    def engine(request):
        seen.append(_limit_w(nvml, gpu))
        if len(seen) == 2:
            raise RuntimeError("engine crashed")
        return _doc(seen[-1], gpu)

    with pytest.raises(RuntimeError, match="engine crashed"):
        run_power_sweep({"options": {}}, engine, PowerLimitController("GPU-aaaa", directory=tmp_path, env=ALLOW),
                        [700.0, 300.0, 200.0], watch_interval_s=0.01)
    assert seen == [700.0, 300.0]
    assert _sets(nvml) == [700.0, 300.0, 700.0] and _limit_w(nvml, gpu) == 700.0
    assert list(tmp_path.glob("power-limit-*")) == []


def test_sweep_refused_changes_nothing_and_runs_nothing(device, tmp_path):
    gpu, nvml = device
    ran = []
    with pytest.raises(PowerLimitRefused):
        run_power_sweep({"options": {}}, ran.append, PowerLimitController("GPU-aaaa", directory=tmp_path, env={}))
    assert ran == [] and _sets(nvml) == []


def test_sweep_or_run_runs_once_unless_asked_and_allowed(device, tmp_path, monkeypatch):
    gpu, nvml = device
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    limits = []

    def engine(request):
        limits.append(_limit_w(nvml, gpu))
        return _doc(limits[-1], gpu)

    plain = power.sweep_or_run({"device": "cuda", "options": {}}, engine, directory=tmp_path, env=ALLOW)
    assert limits == [700.0] and "power_sweep" not in plain and "frontier" not in plain

    limits.clear()
    asked = {"device": "cuda", "options": {"power_limit_sweep": True, "power_limit_steps": 2}}
    refused = power.sweep_or_run(asked, engine, directory=tmp_path, env={})
    assert limits == [700.0] and _sets(nvml) == []
    assert "AUDIT_ALLOW_POWER_LIMIT is not 1" in refused["power_sweep"]["refused"]
    assert refused["warnings"][-1].startswith("power-limit sweep not run:")

    limits.clear()
    cpu = power.sweep_or_run(dict(asked, device="cpu"), engine, directory=tmp_path, env=ALLOW)
    assert "needs a GPU" in cpu["power_sweep"]["refused"] and _sets(nvml) == []

    limits.clear()
    swept = power.sweep_or_run(asked, engine, directory=tmp_path, env=ALLOW)
    assert limits == [700.0, 200.0] and _limit_w(nvml, gpu) == 700.0
    assert swept["power_sweep"]["steps_w"] == [700.0, 200.0] and swept["frontier"]["variants"]
