"""Energy budgets: the pure checker, the verdict stored when an audit succeeds, re-checks when a
budget changes, roles, and the budgets page."""
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from audit.models import Audit, EnergyBudget
from audit.services.budgets import budget_check, budget_create, budget_delete, budget_update

from .api.helpers import add_accuracy, finished_audit, two_variant_result
from .factories import make_version

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def check(audit, *budgets):
    return budget_check(budgets=budgets, variants=audit.variants.prefetch_related("measurements", "evaluations"))


def by(results, **match):
    return [r for r in results if all(r[k] == v for k, v in match.items())]


def test_no_budget_no_verdict(team):
    audit = finished_audit(team)
    assert check(audit).verdict == "" and audit.budget_verdict == "" and audit.budget_results == []


def test_each_limit_passes_or_fails_per_variant_and_batch(team):
    audit = finished_audit(team, result=two_variant_result(baseline_j=0.002, int8_j=0.001, p95_ms=0.25))
    budget = EnergyBudget(team=team, name="edge", max_j_per_inference=0.0015, max_latency_p95_ms=0.5,
                          max_wh_per_1000_inferences=1.0)
    result = check(audit, budget)
    assert result.verdict == "fail"
    energy = by(result.results, limit="j_per_inference")
    assert [(r["variant"], r["batch_size"], r["passed"]) for r in energy] == [
        ("baseline", 1, False), ("baseline", 8, False), ("int8-dynamic", 1, True)]
    assert energy[0]["unit"] == "J" and energy[0]["threshold"] == 0.0015 and energy[0]["value"] == pytest.approx(0.002)
    assert energy[0]["estimated"] is True  # estimate-tdp figures say so
    latency = by(result.results, limit="latency_p95_ms")
    assert [r["passed"] for r in latency] == [True, False, True]  # batch 8 p95 is 0.75 ms
    assert all(r["passed"] for r in by(result.results, limit="wh_per_1000_inferences"))
    assert {r["unit"] for r in result.results} == {"J", "ms", "Wh"}


def test_batch_size_budget_checks_only_that_batch_and_reports_unmeasured(team):
    audit = finished_audit(team, result=two_variant_result())
    at8 = EnergyBudget(team=team, name="batch 8", batch_size=8, max_j_per_inference=0.01)
    result = check(audit, at8)
    assert [(r["variant"], r["batch_size"], r["passed"]) for r in result.results] == [
        ("baseline", 8, True), ("int8-dynamic", 8, None)]  # int8 was only measured at batch 1
    assert result.verdict == "pass"  # not measured is shown, not failed


def test_accuracy_drop_in_percentage_points(team):
    audit = finished_audit(team, result=two_variant_result())
    add_accuracy(audit, {"baseline": 0.91, "int8-dynamic": 0.885})
    tight = EnergyBudget(team=team, name="tight", max_accuracy_drop=2.0)
    loose = EnergyBudget(team=team, name="loose", max_accuracy_drop=3.0)
    result = check(audit, tight, loose)
    drops = by(result.results, limit="accuracy_drop")
    assert [(r["budget"], r["variant"], r["passed"]) for r in drops] == [
        ("tight", "int8-dynamic", False), ("loose", "int8-dynamic", True)]
    assert drops[0]["value"] == pytest.approx(2.5) and drops[0]["unit"] == "pp"
    assert result.verdict == "fail"


def test_accuracy_drop_without_evaluation_is_not_measured(team):
    audit = finished_audit(team)
    result = check(audit, EnergyBudget(team=team, name="acc", max_accuracy_drop=1.0))
    assert [(r["variant"], r["value"], r["passed"]) for r in result.results] == [("baseline", None, None)]


def test_verdict_is_stored_when_the_audit_succeeds(team, lead):
    EnergyBudget.objects.create(team=team, name="edge", max_j_per_inference=0.001)
    audit = finished_audit(team)
    assert audit.budget_verdict == "fail"
    assert {r["budget"] for r in audit.budget_results} == {"edge"}


def test_model_budget_applies_to_its_model_only_and_inactive_budgets_not_at_all(team, lead):
    audit = finished_audit(team)
    other_model = make_version(team, name="other-model").asset
    budget_create(user=lead, team=team, name="other", model_asset=other_model, max_j_per_inference=0.0001)
    budget_create(user=lead, team=team, name="paused", max_j_per_inference=0.0001, active=False)
    assert Audit.objects.get(pk=audit.pk).budget_verdict == ""
    budget_create(user=lead, team=team, name="mine", model_asset=audit.model_version.asset, max_j_per_inference=1.0)
    assert Audit.objects.get(pk=audit.pk).budget_verdict == "pass"


def test_budget_changes_recheck_the_teams_audits(team, lead, other_team):
    audits = [finished_audit(team) for _ in range(3)]
    foreign = finished_audit(other_team)
    budget = budget_create(user=lead, team=team, name="edge", max_j_per_inference=0.001)
    assert set(Audit.objects.filter(pk__in=[a.pk for a in audits]).values_list("budget_verdict", flat=True)) == {"fail"}
    budget_update(user=lead, budget=budget, max_j_per_inference=0.01)
    assert set(Audit.objects.filter(pk__in=[a.pk for a in audits]).values_list("budget_verdict", flat=True)) == {"pass"}
    budget_delete(user=lead, budget=budget)
    assert set(Audit.objects.filter(pk__in=[a.pk for a in audits]).values_list("budget_verdict", flat=True)) == {""}
    assert Audit.objects.get(pk=foreign.pk).budget_verdict == ""


def test_only_leads_set_budgets_and_limits_are_validated(team, member, lead, other_team):
    with pytest.raises(PermissionDenied):
        budget_create(user=member, team=team, name="x", max_j_per_inference=1.0)
    with pytest.raises(ValidationError):
        budget_create(user=lead, team=team, name="empty")
    with pytest.raises(ValidationError):
        budget_create(user=lead, team=team, name="negative", max_latency_p95_ms=-1.0)
    foreign_model = make_version(other_team, name="theirs").asset
    with pytest.raises(ValidationError):
        budget_create(user=lead, team=team, name="theirs", model_asset=foreign_model, max_j_per_inference=1.0)
    budget = budget_create(user=lead, team=team, name="ok", max_j_per_inference=1.0)
    with pytest.raises(PermissionDenied):
        budget_update(user=member, budget=budget, active=False)
    with pytest.raises(PermissionDenied):
        budget_delete(user=member, budget=budget)


def test_budgets_page_for_leads_and_members(client, lead, member, team):
    audit = finished_audit(team)
    client.force_login(lead)
    response = client.post(reverse("budget-list"), {"team": team.pk, "name": "edge", "max_j_per_inference": "0.001"})
    assert response.status_code == 302
    assert Audit.objects.get(pk=audit.pk).budget_verdict == "fail"
    page = client.get(reverse("budget-list")).content.decode()
    assert "edge" in page and "New budget" in page and "1 mJ" in page
    assert "judged on the figure's 95% interval" in page  # the rule, stated where limits are set
    budget = EnergyBudget.objects.get()
    client.post(reverse("budget-toggle", args=[budget.pk]))
    assert EnergyBudget.objects.get().active is False and Audit.objects.get(pk=audit.pk).budget_verdict == ""
    bad = client.post(reverse("budget-list"), {"team": team.pk, "name": "none"})
    assert bad.status_code == 400 and "Set at least one limit" in bad.content.decode()

    client.force_login(member)
    page = client.get(reverse("budget-list")).content.decode()
    assert "edge" in page and "New budget" not in page and "Team leads set budgets" in page
    assert client.post(reverse("budget-list"), {"team": team.pk, "name": "x", "max_j_per_inference": "1"}).status_code == 403
    assert client.post(reverse("budget-delete", args=[budget.pk])).status_code == 403
    assert EnergyBudget.objects.count() == 1


def test_budgets_of_another_team_are_404(client, outsider, team, lead):
    budget = budget_create(user=lead, team=team, name="edge", max_j_per_inference=1.0)
    client.force_login(outsider)
    assert client.post(reverse("budget-toggle", args=[budget.pk])).status_code == 404
    assert "edge" not in client.get(reverse("budget-list")).content.decode()


def test_only_a_limit_inside_the_figures_interval_is_inconclusive(team):
    """The grade decides nothing: a limit inside the figure's own 95% interval is inconclusive
    (and so is the audit's verdict unless another fails); one far below it fails, graded D or not."""
    from .factories import measurement_doc, result_doc

    doc = result_doc()
    doc["variants"][0]["measurements"] = [
        measurement_doc(1, energy_j_per_inference=0.002, quality_grade="D", quality_reasons=["D: drift 58%"]),
        measurement_doc(8, energy_j_per_inference=0.0021, energy_uncertainty_rel=0.2),
    ]
    audit = finished_audit(team, result=doc)
    result = check(audit, EnergyBudget(team=team, name="tight", max_j_per_inference=0.0019))
    rows = [(r["batch_size"], r["passed"], r["inconclusive"], r["quality_grade"]) for r in result.results]
    # batch 1: ±5% -> [1.82, 2.2] mJ; batch 8: ±20% -> [1.47, 3.0] mJ; both straddle 1.9 mJ
    assert rows == [(1, None, True, "D"), (8, None, True, "")]
    assert result.verdict == "inconclusive"
    decisive = check(audit, EnergyBudget(team=team, name="way under", max_j_per_inference=0.0001))
    assert [r["passed"] for r in decisive.results] == [False, False] and decisive.verdict == "fail"


def grade_d_estimate(team, *, j_per_token=0.385, ttft_ms=230.0):
    """The issue's generative audit: a CPU estimate (±84%, one standard uncertainty) graded D."""
    from .factories import measurement_doc, result_doc

    doc = result_doc()
    doc["variants"][0]["measurements"] = [measurement_doc(
        1, scenario="generation", new_tokens=32, energy_j_per_output_token=j_per_token, ttft_ms_p95=ttft_ms,
        tpot_ms_p95=50.0, latency_ci95_rel=0.4, energy_uncertainty_rel=0.84, quality_grade="D",
        quality_reasons=["D: 95% interval of the mean latency is ±40.0%"])]
    return finished_audit(team, result=doc)


def test_a_budget_far_from_a_grade_d_estimate_passes_or_fails(team):
    audit = grade_d_estimate(team)
    over = check(audit, EnergyBudget(team=team, name="38x below", max_j_per_output_token=0.385 / 38))
    assert [(r["passed"], r["inconclusive"], r["quality_grade"]) for r in over.results] == [(False, False, "D")]
    assert over.verdict == "fail"
    under = check(audit, EnergyBudget(team=team, name="38x above", max_j_per_output_token=0.385 * 38))
    assert [(r["passed"], r["inconclusive"]) for r in under.results] == [(True, False)] and under.verdict == "pass"
    ttft = check(audit, EnergyBudget(team=team, name="ttft", max_ttft_ms_p95=50.0))
    assert [r["passed"] for r in ttft.results] == [False]  # 230 ms [164, 322] against 50 ms
    assert ttft.results[0]["reason"].startswith("230 ms [164, 322] > 50 ms: fail")


def test_a_budget_at_the_figure_is_inconclusive_on_a_multiplicative_interval(team):
    audit = grade_d_estimate(team)
    result = check(audit, EnergyBudget(team=team, name="at", max_j_per_output_token=0.385))
    (entry,) = result.results
    assert entry["passed"] is None and entry["inconclusive"] is True and result.verdict == "inconclusive"
    k = 1.84 ** 1.96  # 3.30: [x/k, x*k], never a symmetric band reaching below zero
    assert entry["low"] == pytest.approx(0.385 / k) and entry["high"] == pytest.approx(0.385 * k)
    assert entry["reason"].startswith("385 mJ [117, 1270] vs 385 mJ: inconclusive")
    over = check(audit, EnergyBudget(team=team, name="edge", max_j_per_output_token=0.01)).results[0]
    assert over["reason"].startswith("385 mJ [117, 1270] > 10 mJ: fail")
    assert (over["low"], over["high"]) == (entry["low"], entry["high"])


def test_j_per_output_token_is_judged_on_its_own_uncertainty(team):
    """Decode energy is the request's less the prefill's, so J per output token is less certain
    than the request: a limit 30% under it fails on the request's ±5%, but not on its own ±40%."""
    from .factories import measurement_doc, result_doc

    doc = result_doc()
    doc["variants"][0]["measurements"] = [measurement_doc(
        1, scenario="generation", new_tokens=32, energy_j_per_output_token=0.10, energy_uncertainty_rel=0.05,
        energy_j_per_output_token_uncertainty_rel=0.40)]
    audit = finished_audit(team, result=doc)
    (entry,) = check(audit, EnergyBudget(team=team, name="token", max_j_per_output_token=0.07)).results
    assert entry["inconclusive"] is True and entry["passed"] is None
    k = 1.40 ** 1.96
    assert entry["low"] == pytest.approx(0.10 / k) and entry["high"] == pytest.approx(0.10 * k)
    (per_request,) = check(audit, EnergyBudget(team=team, name="inference", max_j_per_inference=0.0001)).results
    assert per_request["passed"] is False  # the request's own figure keeps the request's uncertainty


def test_a_vetoed_measurement_is_inconclusive_whatever_the_limit(team):
    """No energy read, or active energy clamped at zero: an energy limit cannot be judged, however
    far it is; the latency of the same measurement is still judged."""
    from .factories import measurement_doc, result_doc

    doc = result_doc()
    doc["variants"][0]["measurements"] = [
        measurement_doc(1, energy_j_per_inference=0.0, energy_j_per_inference_active=0.0, flags=["zero-energy"]),
        measurement_doc(8, energy_j_per_inference=0.002, flags=["active-energy-negative-clamped"]),
    ]
    audit = finished_audit(team, result=doc)
    for limit in (1e-9, 0.0001, 1.0):
        result = check(audit, EnergyBudget(team=team, name="any", max_j_per_inference=limit, max_latency_p95_ms=5.0))
        energy = by(result.results, limit="j_per_inference")
        assert [(r["passed"], r["inconclusive"]) for r in energy] == [(None, True), (None, True)], limit
        assert "the meter read no energy" in energy[0]["reason"]
        assert "clamped" in energy[1]["reason"]
        assert [r["passed"] for r in by(result.results, limit="latency_p95_ms")] == [True, True]
        assert result.verdict == "inconclusive"


def test_every_entry_says_why_in_words(team):
    audit = finished_audit(team, result=two_variant_result())
    add_accuracy(audit, {"baseline": 0.91, "int8-dynamic": 0.885})
    at8 = EnergyBudget(team=team, name="b8", batch_size=8, max_j_per_inference=0.01, max_accuracy_drop=2.0)
    reasons = {(r["limit"], r["variant"]): r["reason"] for r in check(audit, at8).results}
    assert reasons[("j_per_inference", "baseline")].startswith("8 mJ [7.27, 8.8] ≤ 10 mJ: pass")
    assert reasons[("j_per_inference", "int8-dynamic")] == "not measured: batch 8 was not measured"
    assert reasons[("accuracy_drop", "int8-dynamic")].startswith("2.5 pp > 2 pp: fail")


def test_token_limits_apply_to_generation_measurements_and_fidelity_to_variants(team):
    from audit.models import Evaluation

    from .factories import measurement_doc, result_doc

    doc = result_doc()
    doc["variants"][0]["measurements"] = [measurement_doc(
        4, scenario="generation", new_tokens=32, ttft_ms_p95=12.0, tpot_ms_p95=2.5, energy_j_per_output_token=0.004)]
    doc["variants"].append({**doc["variants"][0], "recipe": "int8-dynamic", "measurements": [measurement_doc(
        4, scenario="generation", new_tokens=32, ttft_ms_p95=9.0, tpot_ms_p95=1.5, energy_j_per_output_token=0.002)]})
    audit = finished_audit(team, result=doc)
    Evaluation.objects.create(variant=audit.variants.get(recipe="int8-dynamic"), n_samples=64, labelled=False,
                              fidelity_metric="top1_agreement", fidelity_value=0.91)
    budget = EnergyBudget(team=team, name="serving", max_j_per_output_token=0.003, max_tpot_ms_p95=2.0, min_fidelity=0.95)
    result = check(audit, budget)
    got = {(r["limit"], r["variant"]): r["passed"] for r in result.results}
    assert got == {("j_per_output_token", "baseline"): False, ("j_per_output_token", "int8-dynamic"): True,
                   ("tpot_ms_p95", "baseline"): False, ("tpot_ms_p95", "int8-dynamic"): True,
                   ("fidelity", "int8-dynamic"): False}
    forward = finished_audit(team)  # a forward audit has no token figures: those limits are not listed
    assert check(forward, EnergyBudget(team=team, name="t", max_tpot_ms_p95=2.0)).results == []


def test_recheck_budgets_command_brings_verdicts_stored_under_the_old_rule_up_to_date(team, other_team):
    from io import StringIO

    from django.core.management import call_command

    EnergyBudget.objects.create(team=team, name="edge", max_j_per_inference=0.0001)
    audit = finished_audit(team)
    stale = [{**r, "passed": None, "inconclusive": True} for r in audit.budget_results]
    for r in stale:
        del r["low"], r["high"], r["reason"]
    Audit.objects.filter(pk=audit.pk).update(budget_verdict="inconclusive", budget_results=stale)
    out = StringIO()
    call_command("recheck_budgets", stdout=out)
    audit.refresh_from_db()
    assert audit.budget_verdict == "fail" and all(r["reason"] for r in audit.budget_results)
    assert f"{team.slug}: 1 audit checked" in out.getvalue() and f"{other_team.slug}: 0 audits checked" in out.getvalue()


def test_an_energy_figure_without_a_finite_uncertainty_decides_nothing(team):
    """A row stored before results were validated may hold NaN: no interval, so no verdict."""
    from audit.models import Measurement

    audit = finished_audit(team)
    Measurement.objects.filter(variant__audit=audit, batch_size=1).update(energy_uncertainty_rel=float("nan"))
    result = check(audit, EnergyBudget(team=team, name="edge", max_j_per_inference=0.0001))
    assert [(r["batch_size"], r["passed"], r["inconclusive"]) for r in result.results] == [(1, None, True), (8, False, False)]
    assert "not a number" in result.results[0]["reason"] and result.verdict == "fail"


# --- release limits against the reference version (issue 21) -------------------------------


def referenced_audit(team, reference=None, **fields):
    from .api.helpers import reference_section, result_with_reference

    v6 = make_version(team, label="v6")
    doc = result_with_reference(reference_section() if reference is None else reference)
    return finished_audit(team, result=doc, reference_version=v6, **fields)


def regression_rows(result, limit="energy_regression"):
    return [(r["batch_size"], r["passed"], r["inconclusive"]) for r in by(result.results, limit=limit)]


def test_a_regression_limit_fails_passes_or_straddles_on_the_paired_interval(team):
    from .api.helpers import reference_row, reference_section

    rows = [reference_row(1, energy=(1.12, 1.06, 1.19)), reference_row(8, energy=(1.02, 0.99, 1.04)),
            reference_row(32, energy=(1.05, 1.01, 1.09))]
    audit = referenced_audit(team, reference_section(rows))
    result = check_with_reference(audit, EnergyBudget(team=team, name="release", max_energy_regression=0.05))
    assert regression_rows(result) == [(1, False, False), (8, True, False), (32, None, True)]
    failed = by(result.results, limit="energy_regression", batch_size=1)[0]
    assert (failed["value"], failed["low"], failed["high"], failed["threshold"], failed["unit"]) == (
        1.12, 1.06, 1.19, 1.05, "ratio")
    assert failed["reason"] == ("energy ×1.12 [1.06, 1.19] against v6 (approved) > ×1.05: fail "
                                "(the whole 95% interval lies above the limit)")
    assert result.verdict == "fail"


def test_a_latency_regression_limit_reads_the_latency_ratio_and_a_batch_budget_one_batch(team):
    from .api.helpers import reference_row, reference_section

    rows = [reference_row(1, latency=(1.30, 1.2, 1.4)), reference_row(8, latency=(1.0, 0.97, 1.02))]
    audit = referenced_audit(team, reference_section(rows))
    at8 = EnergyBudget(team=team, name="latency at 8", batch_size=8, max_latency_regression=0.05)
    result = check_with_reference(audit, at8)
    assert regression_rows(result, "latency_regression") == [(8, True, False)] and result.verdict == "pass"


def test_without_a_reference_the_limit_is_not_applicable_and_never_a_pass(team):
    audit = finished_audit(team)
    result = check_with_reference(audit, EnergyBudget(team=team, name="release", max_energy_regression=0.05))
    [entry] = result.results
    assert entry["not_applicable"] is True and entry["passed"] is None
    assert entry["reason"] == "not applicable: this audit has no reference version to compare with"
    assert result.verdict == ""  # nothing was checked: not a pass
    both = check_with_reference(audit, EnergyBudget(team=team, name="mixed", max_energy_regression=0.05,
                                                    max_j_per_inference=0.0001))
    assert both.verdict == "fail"  # the applicable limits still decide


def test_a_refused_or_dropped_comparison_leaves_the_limit_inconclusive_with_the_reason(team):
    from .api.helpers import reference_section

    refused = referenced_audit(team, reference_section([], status="refused", reason="the inputs differ"))
    result = check_with_reference(refused, EnergyBudget(team=team, name="r", max_energy_regression=0.05))
    assert regression_rows(result) == [(None, None, True)] and result.verdict == "inconclusive"
    assert "the inputs differ" in result.results[0]["reason"]


def test_a_vetoed_energy_ratio_is_inconclusive_whatever_its_interval(team):
    from .api.helpers import reference_row, reference_section

    row = reference_row(1, energy=(1.5, 1.4, 1.6))
    row["veto_reasons"] = ["no energy was read"]
    audit = referenced_audit(team, reference_section([row]))
    result = check_with_reference(audit, EnergyBudget(team=team, name="r", max_energy_regression=0.05))
    assert regression_rows(result) == [(1, None, True)] and "no energy was read" in result.results[0]["reason"]


def test_the_stored_verdict_and_the_api_and_page_take_the_regression_limits(team, lead, client):
    from rest_framework.test import APIClient

    from .api.helpers import reference_row, reference_section

    audit = referenced_audit(team, reference_section([reference_row(1, energy=(1.12, 1.06, 1.19))]))
    api = APIClient()
    api.force_authenticate(user=lead)
    created = api.post("/api/v1/budgets/", {"name": "release", "max_energy_regression": 0.05}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["max_energy_regression"] == 0.05 and created.json()["max_latency_regression"] is None
    audit.refresh_from_db()
    assert audit.budget_verdict == "fail" and audit.budget_results[0]["limit"] == "energy_regression"
    bad = api.post("/api/v1/budgets/", {"name": "pct", "max_latency_regression": 5.0 * 10}, format="json")
    assert bad.status_code == 400 and "fraction" in str(bad.json())
    client.force_login(lead)
    response = client.post(reverse("budget-list"), {"team": team.pk, "name": "latency", "max_latency_regression": "0.1"})
    assert response.status_code == 302
    assert EnergyBudget.objects.get(name="latency").max_latency_regression == 0.1
    page = client.get(reverse("budget-list")).content.decode()
    assert "latency ≤ ×1.1 (+10%)" in page and "Max latency regression against the reference" in page
    report = client.get(audit.get_absolute_url()).content.decode()
    assert "energy vs the reference version" in report and "≤ ×1.05" in report


def test_the_report_shows_a_not_applicable_limit_so(team, lead, client):
    budget_create(user=lead, team=team, name="release", max_energy_regression=0.05)
    audit = finished_audit(team)
    client.force_login(lead)
    assert "not applicable" in client.get(audit.get_absolute_url()).content.decode()
    assert audit.budget_verdict == ""


def check_with_reference(audit, *budgets):
    return budget_check(budgets=budgets, variants=audit.variants.prefetch_related("measurements", "evaluations"),
                        reference=audit.reference,
                        reference_asked=audit.reference_version_id is not None or audit.reference is not None)
