"""The CPU estimate that knows the machine: which row of CodeCarbon's tables and why, the load
curve, the asymmetric interval, and a fake powercap host whose counter follows a known curve."""
import os
import time

import pytest

from workers.engine import cpuinfo, timing
from workers.engine.meters import cpu_table, select_meter

GENOA_VM = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
physical id\t: 0
siblings\t: 8
core id\t: 0
cpu cores\t: 4
flags\t\t: fpu vme de pse tsc msr pae avx2 avx512f avx512bw hypervisor
"""


@pytest.fixture
def genoa_vm(monkeypatch):
    """This process on a VM whose /proc/cpuinfo says only "AMD EPYC", CPUID family 25 model 17."""
    info = cpuinfo.cpuid(GENOA_VM)
    monkeypatch.setattr(cpuinfo, "cpuid", lambda text=None: info)
    monkeypatch.setattr(cpuinfo, "cpu_model", lambda: "AMD EPYC")
    monkeypatch.setattr(cpuinfo, "logical_cpus_per_package", lambda: 8)
    monkeypatch.setattr(cpuinfo, "cpu_packages", lambda: 1)
    monkeypatch.delenv("AUDIT_CPU_TDP_W", raising=False)
    monkeypatch.delenv("AUDIT_CPU_IDLE_W", raising=False)
    monkeypatch.delenv("AUDIT_CLOUD_INSTANCE_TYPE", raising=False)
    return info


def _burn(seconds):
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1
    return x


def test_cpuinfo_parses_cpuid_and_flags():
    info = cpuinfo.cpuid(GENOA_VM)
    assert (info["vendor"], info["family"], info["model"], info["stepping"]) == ("AuthenticAMD", 25, 17, 1)
    assert info["hypervisor"] and "avx512f" in info["flags"]
    assert info["cores_per_package"] == 4 and info["threads_per_core"] == 2
    assert cpuinfo.microarchitecture(info)["name"] == "Zen 4 (Genoa)"


def test_generic_epyc_family_25_model_17_picks_a_zen4_row_and_says_why(genoa_vm, tmp_path):
    """A CPU audit's measurement records the row and the reasons (energy_assumptions)."""
    meter = select_meter("cpu", {"powercap_root": str(tmp_path)})
    assert meter.method == "estimate-tdp"
    summary = timing.measure(lambda: _burn(0.002), batch_size=1, device="cpu", meter=meter, idle_power_w=0.0,
                             options={"window_s": 0.05, "time_cap_s": 0.2, "warmup_iters": 10})
    a = summary["energy_assumptions"]
    assert a["cpu_identified_by"] == "cpuid" and a["cpu_microarchitecture"] == "Zen 4 (Genoa)"
    row = a["cpu_row"]
    assert row.startswith("AMD EPYC 9") and row.split()[-1][3] == "4", row  # a 9xx4 part: Genoa
    assert not row.split()[-1].startswith("97")  # not Bergamo (Zen 4c, model 0xA0)
    spec = cpu_table.specs_table()[cpu_table.normalise(row)]
    assert spec["series"] == "EPYC 9004 Series"
    why = a["cpu_identification"]
    assert "'AMD EPYC' matches no row" in why and "family 25 model 17" in why and "avx512f present" in why
    assert a["cpu_candidates"] > 5 and "CodeCarbon" in a["cpu_table_source"]
    assert a["tdp_w_per_logical_cpu"] == pytest.approx(a["cpu_row_tdp_w"] / a["cpu_row_threads"])


def test_a_named_row_wins_over_cpuid(genoa_vm, monkeypatch):
    monkeypatch.setattr(cpuinfo, "cpu_model", lambda: "AMD EPYC 9654 96-Core Processor")
    ident = cpu_table.identify({})
    assert ident["how"] == "table-row" and ident["row"] == "AMD EPYC 9654"
    assert ident["tdp_w"] == 360.0 and ident["threads"] == 192  # CodeCarbon's TDP, AMD's thread count
    assert ident["k1_table"] == ident["k2_table"] == 1.0


def test_cloud_instance_type_identifies_when_cpuid_cannot(genoa_vm, monkeypatch):
    unknown = {**genoa_vm, "family": 99}
    monkeypatch.setattr(cpuinfo, "cpuid", lambda text=None: unknown)
    assert cpu_table.identify({})["how"] == "unknown"
    ident = cpu_table.identify({"cloud_instance_type": "m7a.2xlarge"})
    assert ident["how"] == "cloud-instance" and ident["microarchitecture"] == "Zen 4 (Genoa)"
    assert "'m7a.2xlarge' is Zen 4 (Genoa)" in ident["why"]
    monkeypatch.setenv("AUDIT_CLOUD_INSTANCE_TYPE", "Standard_D8as_v5")
    assert cpu_table.identify({})["microarchitecture"] == "Zen 3 (Milan)"


def test_setting_tdp_replaces_the_table(genoa_vm):
    ident = cpu_table.identify({"cpu_tdp_w": 64})
    assert ident["how"] == "setting" and ident["w_per_logical_cpu"] == pytest.approx(64 / 8)


def test_interval_is_asymmetric_and_covers_the_candidates_and_the_profiles(genoa_vm):
    ident = cpu_table.identify({})
    k1, k2 = cpu_table.estimate_bounds(ident)
    m1, m2 = cpu_table.model_error()
    assert (k1, k2) == pytest.approx((m1 * ident["k1_table"], m2 * ident["k2_table"]))
    assert k1 != pytest.approx(k2)  # asymmetric where the evidence is
    arch = cpuinfo.microarchitecture(genoa_vm)
    x = ident["w_per_logical_cpu"]
    for row in cpu_table.candidates_for(arch, genoa_vm):  # every candidate CPU inside [x/k1t, x*k2t]
        assert x / ident["k1_table"] - 1e-9 <= row["w_per_logical_cpu"] <= x * ident["k2_table"] + 1e-9
    for p in cpu_table.load_profiles().values():  # every measured step inside the model's own interval
        for u, w in p["points"]:
            pred = p["tdp_w"] * cpu_table.curve(min(u, 1.0))
            assert pred / m1 - 1e-9 <= w <= pred * m2 + 1e-9


def test_load_curve_rises_from_idle_and_stays_below_tdp():
    points = cpu_table.load_curve()
    shares = [s for _, s in points]
    assert 0.0 < shares[0] < 0.3 and shares == sorted(shares) and shares[-1] <= 1.0
    assert len(cpu_table.load_profiles()) == 5


def test_estimate_follows_load_not_a_constant_per_busy_cpu(genoa_vm, tmp_path):
    meter = select_meter("cpu", {"powercap_root": str(tmp_path), "cpu_tdp_w": 80, "boundaries": False})
    v = meter.logical_cpus
    full = 10.0 * v  # 80 W over 8 logical CPUs, for the v CPUs this process sees
    assert meter.package_w(0.0) == pytest.approx(full * cpu_table.curve(0.0))
    assert meter.package_w(1.0) == pytest.approx(full * cpu_table.curve(1.0))
    half = meter.package_w(0.5) - meter.package_w(0.0)
    assert half != pytest.approx((meter.package_w(1.0) - meter.package_w(0.0)) / 2, rel=0.01)  # a curve
    k1, k2 = meter.k1, meter.k2
    # the symmetric one-figure field: (1 + u) ** 1.96 is the geometric mean of k1 and k2
    assert (1 + meter.uncertainty_rel) ** 1.96 == pytest.approx((k1 * k2) ** 0.5)


@pytest.mark.parametrize("profile", sorted(cpu_table.load_profiles()))
def test_fake_powercap_host_following_a_measured_curve_validates_the_estimate(genoa_vm, tmp_path, profile):
    """A powercap host whose package counter follows one of the measured RAPL curves (its watts at
    this process's load, over the window): the estimate for that CPU, given its TDP, reads within
    its own stated interval of the counter."""
    p = cpu_table.load_profiles()[profile]
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    (zone / "energy_uj").write_text("0\n")
    threads = os.cpu_count() or 1
    counter = select_meter("cpu", {"powercap_root": str(tmp_path), "rapl_poll_s": 0, "boundaries": False})
    estimate = select_meter("cpu", {"powercap_root": str(tmp_path / "none"), "boundaries": False,
                                    "cpu_tdp_w": p["tdp_w"] / p["threads"] * 8})  # its W per logical CPU
    assert counter.method == "rapl" and estimate.method == "estimate-tdp"
    for work in (0.0, 0.15):
        counter.begin()
        estimate.begin()
        t0, c0 = time.perf_counter(), time.process_time()
        _burn(work) if work else time.sleep(0.1)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        load = min(1.0, cpu / wall / threads)
        watts = cpu_table._interp(p["points"], load) * threads / p["threads"]  # the curve, for our CPUs
        (zone / "energy_uj").write_text(f"{round(watts * wall * 1e6)}\n")
        measured = counter.end().energy_j
        estimated = estimate.end().energy_j
        (zone / "energy_uj").write_text("0\n")
        # the counter (the truth) lies in [estimate / k1, estimate * k2]
        assert estimated / estimate.k1 <= measured <= estimated * estimate.k2, (profile, load, measured / estimated)


def test_cli_prints_the_estimates_own_interval():
    from workers.engine.cli import _fmt_energy

    estimate = {"energy_j_per_inference": 0.0037, "energy_estimated": True, "energy_uncertainty_rel": 1.31,
                "energy_method": "estimate-tdp", "energy_assumptions": {"uncertainty_k1": 4.56, "uncertainty_k2": 5.85}}
    assert _fmt_energy(estimate) == "est. 0.0037 x/4.6-x5.8 (estimate-tdp)"
    assert _fmt_energy({"energy_j_per_inference": 0.5, "energy_uncertainty_rel": 0.05, "energy_method": "rapl"}) \
        == "0.5 ±5% (rapl)"


def test_the_sandboxed_child_sees_the_deployments_cpu_settings(tmp_path):
    """The settings the estimate and the host boundary read reach the engine child; secrets do not."""
    from workers.engine.launch import child_env

    base = {"AUDIT_CLOUD_INSTANCE_TYPE": "m7a.2xlarge", "AUDIT_CPU_TDP_W": "360", "AUDIT_CPU_IDLE_W": "40",
            "AUDIT_POWERCAP_ROOT": "/srv/powercap", "DATABASE_URL": "postgres://x"}
    env = child_env(str(tmp_path), base)
    assert {k: env[k] for k in ("AUDIT_CLOUD_INSTANCE_TYPE", "AUDIT_CPU_TDP_W", "AUDIT_CPU_IDLE_W",
                                "AUDIT_POWERCAP_ROOT")} == {k: v for k, v in base.items() if k.startswith("AUDIT_")}
    assert "DATABASE_URL" not in env


def test_a_vms_topology_does_not_halve_an_intel_parts_threads():
    """Intel rows carry cores only: threads per core come from the OS on bare metal, but a guest's
    one-thread-per-core view is the hypervisor's, so SMT-2 (the part's) is used there."""
    name = "Intel(R) Xeon(R) Platinum 8480+"
    vm = {"model_name": name, "hypervisor": True, "threads_per_core": 1, "cores_per_package": 2}
    metal = {"model_name": name, "hypervisor": False, "threads_per_core": 1, "cores_per_package": 56}
    assert cpu_table.identify({}, vm)["threads"] == 112
    assert cpu_table.identify({}, metal)["threads"] == 56  # SMT off on this machine: the OS says so
