"""Energy boundaries end to end (issue 23): measurements made by the engine's meters over a fake
powercap tree (and a fake NVML), checked and accepted by the worker, stored, shown on the report
beside the headline, warned about on compare, limited by budgets at a named boundary, and the
grams of CO2e resting on the facility figure when a PUE is known."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from audit.models import EnergyBudget, Measurement
from audit.services.audits import carbon_settings
from audit.services.budgets import budget_check
from workers import result_schema
from workers.engine import timing
from workers.engine.meters import select_meter
from workers.runner import accept_result

from .api.helpers import finished_audit
from .factories import measurement_doc, result_doc

pytestmark = pytest.mark.django_db


def _sibling(name):
    spec = importlib.util.spec_from_file_location(f"_audit_{name}", Path(__file__).parent / "engine" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fake_nvml = _sibling("fake_pynvml")
powercap = _sibling("test_powercap")

INTENSITY = 400.0


def _engine_measurement(tmp_path, device="cpu", pue=1.2, pue_known=True, package_j=0.02, dram_j=0.005):
    """One measurement as the engine makes it: every call moves the fake powercap counters."""
    root = tmp_path / f"powercap-{device}-{pue}"
    root.mkdir()
    cap = powercap.Powercap(root)
    meter = select_meter(device, {"powercap_root": str(root), "rapl_poll_s": 0, "pue": pue, "pue_known": pue_known})

    def call():
        cap.add("intel-rapl:0", package_j)
        cap.add("intel-rapl:0:0", dram_j)

    summary = timing.measure(call, batch_size=1, device="cpu", meter=meter, idle_power_w=0.0,
                             options={"window_s": 0.03, "time_cap_s": 0.15, "warmup_iters": 10, "pue": pue,
                                      "grid_intensity_g_per_kwh": INTENSITY})
    meter.close()
    keep = {k: summary[k] for k in ("energy_method", "energy_estimated", "energy_uncertainty_rel",
                                    "energy_j_per_inference", "energy_boundary", "energy_boundaries",
                                    "co2e_boundary", "co2e_g_per_inference")}
    return measurement_doc(1, **keep, energy_j_per_sample=summary["energy_j_per_inference"],
                           wh_per_1000_inferences=summary["energy_j_per_inference"] / 3.6)


def _estimated_measurement(tmp_path, pue):
    """A CPU audit's measurement on a host without powercap: the estimate (energy_assumptions too)."""
    meter = select_meter("cpu", {"powercap_root": str(tmp_path / "no-powercap"), "pue": pue, "pue_known": True})
    summary = timing.measure(lambda: sum(range(2000)), batch_size=1, device="cpu", meter=meter, idle_power_w=0.0,
                             options={"window_s": 0.03, "time_cap_s": 0.15, "warmup_iters": 10, "pue": pue,
                                      "grid_intensity_g_per_kwh": INTENSITY})
    keep = {k: summary[k] for k in ("energy_method", "energy_estimated", "energy_uncertainty_rel",
                                    "energy_j_per_inference", "energy_boundary", "energy_boundaries",
                                    "co2e_boundary", "co2e_g_per_inference", "energy_assumptions")}
    return measurement_doc(1, **keep, energy_j_per_sample=summary["energy_j_per_inference"],
                           wh_per_1000_inferences=summary["energy_j_per_inference"] / 3.6)


def _stored(team, tmp_path, pue=1.2, device="cpu", estimated=False, **kw):
    doc = result_doc()
    doc["device"] = device
    doc["variants"][0]["measurements"] = [_estimated_measurement(tmp_path, pue) if estimated else
                                          _engine_measurement(tmp_path, device=device, pue=pue, **kw)]
    checked = result_schema.check_result(doc)
    options = {"grid_intensity_g_per_kwh": INTENSITY, "pue": pue, "pue_known": kw.get("pue_known", True),
               "carbon_source": "test"}
    accepted = accept_result(checked, {"device": device, "options": options})
    return finished_audit(team, result=accepted, options={"batch_sizes": [1], "recipes": ["baseline"], **options})


def test_cpu_audit_stores_every_boundary_and_grams_from_the_facility(team, tmp_path):
    audit = _stored(team, tmp_path, pue=1.2)
    m = Measurement.objects.get(variant__audit=audit)
    b = m.energy_boundaries
    assert m.energy_boundary == "device" and set(b) == {"device", "host", "facility"}
    assert b["device"]["j_per_inference"] == pytest.approx(m.energy_j_per_inference)
    assert b["device"]["j_per_inference"] == pytest.approx(0.02, rel=0.05)  # the package
    assert b["host"]["j_per_inference"] == pytest.approx(0.025, rel=0.05)  # + DRAM
    assert b["facility"]["j_per_inference"] == pytest.approx(1.2 * b["host"]["j_per_inference"])
    assert b["host"]["method"] == "rapl" and b["host"]["estimated"] is False
    assert m.co2e_boundary == "facility"
    assert m.co2e_g_per_inference == pytest.approx(b["facility"]["j_per_inference"] / 3.6e6 * INTENSITY)


def test_without_a_pue_the_grams_rest_on_the_host(team, tmp_path):
    audit = _stored(team, tmp_path, pue=1.0, pue_known=False)
    m = Measurement.objects.get(variant__audit=audit)
    assert m.co2e_boundary == "host"
    assert m.co2e_g_per_inference == pytest.approx(m.energy_boundaries["host"]["j_per_inference"] / 3.6e6 * INTENSITY)


def test_report_names_the_headline_boundary_and_shows_the_others(team, tmp_path, member_client):
    audit = _stored(team, tmp_path, pue=1.5)
    page = member_client.get(reverse("audit-detail", args=[audit.pk])).content.decode()
    strip = re.search(r'<div class="card boundaries" id="energy-boundaries" data-headline="device">.*?</div>', page, re.S)
    assert strip, "the boundary strip is on the report"
    text = strip.group(0)
    assert "Energy boundary of the figures above: device" in text and "CPU package" in text
    for name in ("device", "host", "facility"):
        assert f'id="boundary-{name}"' in text
    assert 'data-boundary="facility" data-estimated="false"' in text
    basis = re.search(r'<p class="small muted" id="co2e-basis" data-boundary="facility">(.*?)</p>', text, re.S)
    assert basis and "host × PUE 1.5" in basis.group(1) and "400" in basis.group(1)


def test_report_of_an_estimate_labels_every_boundary_and_states_its_interval(team, tmp_path, member_client):
    audit = _stored(team, tmp_path, pue=1.1, estimated=True)
    m = Measurement.objects.get(variant__audit=audit)
    k1, k2 = m.energy_assumptions["uncertainty_k1"], m.energy_assumptions["uncertainty_k2"]
    assert k1 > 1 and k2 > 1 and m.energy_boundaries["host"]["estimated"] is True
    page = member_client.get(reverse("audit-detail", args=[audit.pk])).content.decode()
    for name in ("device", "host", "facility"):
        assert f'data-boundary="{name}" data-estimated="true"' in page
    interval = re.search(r'<span class="muted small boundary-interval"[^>]*>(.*?)</span>', page)
    assert interval and f"x/{k1:.2g} to ×{k2:.2g}" in interval.group(1)


def test_report_of_an_older_result_says_it_has_no_host_figure(team, member_client):
    audit = finished_audit(team)
    page = member_client.get(reverse("audit-detail", args=[audit.pk])).content.decode()
    assert "records no host or facility figure" in page
    assert 'id="co2e-basis" data-boundary="device"' in page


def test_budget_names_the_boundary_it_limits(team, tmp_path):
    audit = _stored(team, tmp_path, pue=2.0)
    variants = audit.variants.prefetch_related("measurements", "evaluations")
    # 0.02 J device, 0.025 J host, 0.05 J facility; RAPL on AMD is ±10%: intervals x/1.2 to x*1.2
    device = EnergyBudget(team=team, name="dev", max_j_per_inference=0.035)
    host = EnergyBudget(team=team, name="host", max_j_per_inference=0.035, boundary="host")
    facility = EnergyBudget(team=team, name="fac", max_j_per_inference=0.035, boundary="facility")
    results = budget_check(budgets=[device, host, facility], variants=variants).results
    got = {r["budget"]: (r["boundary"], r["passed"]) for r in results}
    assert got == {"dev": ("device", True), "host": ("host", True), "fac": ("facility", False)}
    assert results[2]["value"] == pytest.approx(0.02 * 1.25 * 2.0, rel=0.06)
    team.energy_boundary = "facility"  # the team's default names the boundary of a budget that names none
    team.save()
    teamwide = EnergyBudget(team=team, name="team", max_j_per_inference=0.035)
    assert budget_check(budgets=[teamwide], variants=variants).results[0]["boundary"] == "facility"


def test_budget_at_a_boundary_the_result_lacks_is_not_measured(team):
    audit = finished_audit(team, result=result_doc())  # no boundaries recorded
    variants = audit.variants.prefetch_related("measurements", "evaluations")
    r = budget_check(budgets=[EnergyBudget(team=team, name="h", max_j_per_inference=1.0, boundary="host")],
                     variants=variants).results[0]
    assert r["passed"] is None and not r["inconclusive"] and "recorded no host figure" in r["reason"]


def test_compare_warns_when_device_figures_cover_different_parts(team, tmp_path, member_client, monkeypatch):
    cpu = _stored(team, tmp_path, pue=1.2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml.make_nvml([fake_nvml.FakeGPU("GPU-a", energy_step_mj=5)]))
    gpu = _stored(team, tmp_path, pue=1.2, device="cuda")
    m = Measurement.objects.get(variant__audit=gpu)
    assert m.energy_method == "nvml-counter" and m.energy_boundaries["host"]["method"] == "nvml-counter + rapl"
    page = member_client.get(reverse("compare") + f"?a={cpu.pk}&a={gpu.pk}").content.decode()
    warning = re.search(r'<div class="differences" id="compare-differences">.*?</div>', page, re.S)
    assert warning and "device figures that cover different parts" in warning.group(0)
    assert f"GPU: #{gpu.pk}" in warning.group(0) and f"CPU package: #{cpu.pk}" in warning.group(0)
    same = member_client.get(reverse("compare") + f"?a={cpu.pk}&a={_stored(team, tmp_path, pue=1.3).pk}")
    assert "cover different parts" not in same.content.decode()


def test_carbon_settings_say_whether_a_pue_was_set(team, settings):
    settings.DEFAULT_PUE = 1.0
    assert carbon_settings(team)["pue_known"] is False
    team.pue = 1.3
    assert carbon_settings(team) | {} and carbon_settings(team)["pue_known"] is True
    assert "team setting" in carbon_settings(team)["pue_source"]


def test_budget_boundary_is_one_of_the_three(team, lead):
    from django.core.exceptions import ValidationError

    from audit.services.budgets import budget_create, budget_update

    budget = budget_create(user=lead, team=team, name="h", max_j_per_inference=1.0, boundary="host")
    assert budget.boundary == "host"
    with pytest.raises(ValidationError, match="not an energy boundary"):
        budget_create(user=lead, team=team, name="x", max_j_per_inference=1.0, boundary="wall")
    assert budget_update(user=lead, budget=budget, boundary="").boundary == ""


def test_budget_boundary_through_the_api_and_the_stored_results(team, lead, tmp_path):
    from rest_framework.test import APIClient

    from audit.models import Audit

    audit = _stored(team, tmp_path, pue=2.0)  # 0.02 J device, 0.025 J host, 0.05 J facility
    api = APIClient()
    api.force_authenticate(user=lead)
    created = api.post("/api/v1/budgets/", {"name": "wall", "boundary": "facility", "max_j_per_inference": 0.035},
                       format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["boundary"] == "facility"
    stored = Audit.objects.get(pk=audit.pk)
    assert stored.budget_verdict == "fail"
    assert stored.budget_results[0]["boundary"] == "facility" and stored.budget_results[0]["passed"] is False
    api.patch(f"/api/v1/budgets/{created.json()['id']}/", {"boundary": "device"}, format="json")
    assert Audit.objects.get(pk=audit.pk).budget_verdict == "pass"
    bad = api.post("/api/v1/budgets/", {"name": "x", "boundary": "wall", "max_j_per_inference": 1}, format="json")
    assert bad.status_code == 400 and "boundary" in bad.json()


def test_savings_calculator_counts_the_host_boundary_times_pue(team, tmp_path, member_client):
    """Its yearly energy x PUE is the facility figure the grams rest on, and it says so."""
    audit = _stored(team, tmp_path, pue=1.4)
    m = Measurement.objects.get(variant__audit=audit)
    page = member_client.get(reverse("audit-detail", args=[audit.pk])).content.decode()
    basis = re.search(r'<span id="savings-energy-basis">(.*?)</span>', page)
    assert basis and basis.group(1).startswith("Host energy")
    kwh = float(re.search(r'<dd data-out="kwh">([0-9.]+) kWh</dd>', page).group(1))
    host_j_per_sample = m.energy_boundaries["host"]["j_per_inference"] / m.batch_size
    assert kwh == pytest.approx(host_j_per_sample * 1_000_000 * 365 / 3.6e6 * 1.4, rel=0.01)
    older = member_client.get(reverse("audit-detail", args=[finished_audit(team).pk])).content.decode()
    assert '<span id="savings-energy-basis">Device energy</span>' in older
