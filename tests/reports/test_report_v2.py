"""Schema-2 results on the pages: the answer first (verdict from the paired ratios, the quality
grade and its reasons, budgets, warnings), KPIs as paired ratios, generation figures, compare
across every variant with like-for-like warnings, and progress that tells the truth."""
import copy
import json
import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import Audit, WorkerNode
from audit.reports.progress import parse_stage
from audit.services import audits as services
from workers.engine.tradeoff import audit_quality, build_tradeoff
from workers.runner import stage_text

from ..factories import make_audit, make_version
from .helpers import stored_audit, variant_doc
from .test_report_pages import clean

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parent / "data"


def real_doc(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def store(team, doc: dict, **fields) -> Audit:
    audit = make_audit(team, device="cpu", **fields)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    assert services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    return Audit.objects.get(pk=audit.pk)


def with_paired(doc: dict, recipe: str, *, ratio: float, ci: tuple[float, float], verdict: str, grade: str = "B") -> dict:
    """The real digits result with one variant's paired comparison replaced, every measurement
    graded `grade`, no drift; the trade-off and the audit grade recomputed by the engine's own code."""
    doc = copy.deepcopy(doc)
    doc["drift"] = None
    for v in doc["variants"]:
        for m in v["measurements"]:
            m["quality_grade"], m["quality_reasons"] = grade, [f"{grade}: test grade"]
        for c in v.get("comparison") or []:
            c["quality_grade"], c["quality_reasons"] = grade, [f"{grade}: paired test grade"]
            if v["recipe"] == recipe:
                c.update(energy_ratio=ratio, energy_ratio_ci95=list(ci), verdict=verdict,
                         latency_ratio=ratio, latency_ratio_ci95=list(ci))
    doc["tradeoff"] = build_tradeoff(doc, {})
    doc["quality"] = audit_quality(doc)
    return doc


def first_screen(page: str) -> str:
    """What the page says before the variant table."""
    return page[:page.index('id="variant-table"')]


def test_a_recommendation_leads_with_its_paired_ratio_and_grade(member_client, team):
    doc = with_paired(real_doc("engine_result_digits_v2.json"), "prune-unstructured:0.5",
                      ratio=0.64, ci=(0.61, 0.68), verdict="lower")
    audit = store(team, doc)
    assert audit.quality_grade == "B"
    page = member_client.get(audit.get_absolute_url()).content.decode()
    clean(page)
    top = first_screen(page)
    assert "Recommended: prune-unstructured:0.5 — energy ×0.64 [0.61, 0.68]" in top
    assert 'id="quality-grade"' in top and 'class="grade gB"' in top and "B: test grade" in top
    assert top.index('id="recommendation"') < top.index('id="kpis"')
    kpi = re.search(r'id="kpi-j-per-inference">(.*?)</div>\s*</div>', page, re.S).group(1)
    assert "×0.64 [0.61, 0.68]" in kpi and "delta good" in kpi and "%</span>" not in kpi
    # the variant table: grade, paired ratio interval, fidelity beside accuracy
    row = re.search(r'data-variant="prune-unstructured:0.5">(.*?)</tr>', page, re.S).group(1)
    assert "×0.64 [0.61, 0.68]" in row and "top-1 agreement 0.996" in row and "99.22%" in row and "gB" in row
    # the evidence folds away
    for fold in ("details-power", "details-measurements", "details-windows", "details-assumptions"):
        assert f'<details class="card fold" id="{fold}"' in page
    assert "w_per_core_source" in page  # every assumed figure of the estimate


def test_an_interval_within_the_margin_is_no_measurable_difference(member_client, team):
    doc = with_paired(real_doc("engine_result_digits_v2.json"), "prune-unstructured:0.5",
                      ratio=1.0, ci=(0.97, 1.03), verdict="no measurable difference")
    page = member_client.get(store(team, doc).get_absolute_url()).content.decode()
    top = first_screen(page)
    assert "No measurable difference." in top and "Recommended:" not in page
    assert "within ±5% of baseline" in top and "below x0.95" in top  # the margin and the rule on the page


def test_an_interval_straddling_the_minimum_saving_is_inconclusive(member_client, team):
    doc = with_paired(real_doc("engine_result_digits_v2.json"), "prune-unstructured:0.5",
                      ratio=0.97, ci=(0.90, 1.05), verdict="no measurable difference")
    page = member_client.get(store(team, doc).get_absolute_url()).content.decode()
    top = first_screen(page)
    assert "Inconclusive." in top and "saving of 5% or more is possible but not shown" in top


def test_a_busy_host_graded_d_gets_the_answer_its_intervals_give(member_client, team):
    """The real run on this busy machine: grade D, the baseline drifted, every interval wide. The
    answer is inconclusive because the intervals straddle the threshold, not because of the grade,
    and the drift warning is on the first screen, not at the bottom."""
    audit = store(team, real_doc("engine_result_digits_v2.json"))
    Audit.objects.filter(pk=audit.pk).update(budget_verdict="inconclusive", budget_results=[
        {"budget": "b", "limit": "j_per_inference", "variant": "baseline", "batch_size": 1, "value": 1.0,
         "threshold": 2.0, "unit": "J", "passed": None, "inconclusive": True}])
    page = member_client.get(audit.get_absolute_url()).content.decode()
    clean(page)
    top = first_screen(page)
    assert audit.quality_grade == "D"
    assert "Inconclusive." in top and 'data-verdict="inconclusive"' in top and "quality grade D" not in top
    assert "prune-unstructured:0.5 x1.10 [0.87, 1.40]: a saving of 5% or more is possible but not shown" in top
    assert "the baseline moved by" in top  # the engine's drift warning
    assert "budget-inconclusive" in top
    assert "v1 result" not in top


def test_decisive_intervals_graded_d_are_recommended_with_the_grade_beside(member_client, team):
    """GPT-2 int8 x0.30 [0.25, 0.37] measured under heavy load: grade D qualifies it, vetoes nothing."""
    doc = with_paired(real_doc("engine_result_digits_v2.json"), "prune-unstructured:0.5",
                      ratio=0.30, ci=(0.25, 0.37), verdict="lower", grade="D")
    audit = store(team, doc)
    page = member_client.get(audit.get_absolute_url()).content.decode()
    clean(page)
    top = first_screen(page)
    assert audit.quality_grade == "D"
    assert "Recommended: prune-unstructured:0.5 — energy ×0.30 [0.25, 0.37]" in top
    assert re.search(r'id="verdict-grade"[^>]*>grade D<', top) and "grade D)" in top
    assert "accuracy drop 0.00391 (limit accuracy drop ≤ 0.01)" in top  # the constraint it met, with its figure


def test_a_v1_audit_renders_as_before_and_says_its_change_is_absolute(member_client, team):
    audit = stored_audit(team, [variant_doc("baseline", energy=0.010, accuracy=0.950),
                                variant_doc("fp16", energy=0.006, accuracy=0.947)])
    page = member_client.get(audit.get_absolute_url()).content.decode()
    clean(page)
    assert "Recommended: fp16" in first_screen(page) and "v1 result" in first_screen(page)
    kpi = re.search(r'id="kpi-j-per-inference">(.*?)</div>\s*</div>\s*</div>', page, re.S).group(1)
    assert "−40%" in kpi and "absolute change (v1 result, no paired rounds)" in kpi
    assert 'class="grade' not in page.split('id="variant-table"')[1].split("</table>")[0]  # no grades in v1


def test_a_generation_report_speaks_in_tokens(member_client, team):
    audit = store(team, real_doc("engine_result_gpt2_generation_v2.json"))
    page = member_client.get(audit.get_absolute_url()).content.decode()
    clean(page)
    assert "generation: 16 prompt tokens, 8 new tokens, transformers" in page
    for kpi in ("kpi-j-per-output-token", "kpi-ttft-p95", "kpi-tpot-p95", "kpi-tokens-per-s"):
        assert f'id="{kpi}"' in page
    figs = re.search(r'<script id="report-figures" type="application/json">(.*?)</script>', page, re.S).group(1)
    for chart in ("chart-tokens", "chart-ttft", "chart-tpot", "chart-share"):
        assert f'id="{chart}"' in page and f'"{chart}"' in figs
    assert "Energy per output token vs batch size" in figs and "Prefill vs decode energy share" in figs
    assert 'id="verdict-slo"' in page and "cheapest meeting TPOT p95" in page


def test_compare_any_two_figures_across_every_variant(member_client, team):
    a = stored_audit(team, [variant_doc("baseline", energy=0.004, accuracy=0.95),
                            variant_doc("fp16", energy=0.002, accuracy=0.948)],
                     model_version=make_version(team, name="cmp2", label="v1"))
    b = store(team, with_paired(real_doc("engine_result_digits_v2.json"), "prune-unstructured:0.5",
                                ratio=0.64, ci=(0.61, 0.68), verdict="lower"),
              model_version=make_version(team, name="cmp2", label="v2"))
    url = reverse("compare") + f"?a={a.pk}&a={b.pk}&x=flops&y=fidelity&ref={b.pk}:baseline"
    page = member_client.get(url).content.decode()
    clean(page)
    figs = re.search(r'<script id="compare-figures" type="application/json">(.*?)</script>', page, re.S).group(1)
    xy = json.loads(figs)["chart-compare-xy"]
    assert xy["layout"]["xaxis"]["title"]["text"] == "FLOPs per sample (FLOPs)"
    assert xy["layout"]["yaxis"]["title"]["text"] == "Fidelity to the baseline"
    assert 'value="flops" selected' in page and 'value="fidelity" selected' in page
    # every variant of both audits is a row; within audit b, changes against its baseline are paired
    rows = re.findall(r'<tr class="[^"]*" data-row="([^"]+)">', page)
    assert f"{a.pk}:fp16" in rows and f"{b.pk}:int8-dynamic" in rows and len(rows) == 2 + 4
    prune = re.search(rf'data-row="{b.pk}:prune-unstructured:0.5">(.*?)</tr>', page, re.S).group(1)
    assert "×0.64 [0.61, 0.68]" in prune
    # not like for like: the two audits ran on different CPUs
    assert "different hardware (AMD EPYC, Test CPU)" in page
    assert "%</span>" not in page  # no percentage changes anywhere


def test_compare_warns_when_task_hardware_or_batch_size_differ(member_client, team):
    a = stored_audit(team, [variant_doc("baseline", batch_sizes=(1,))], fingerprint={"cpu_model": "Xeon", "cpu_logical_cores": 8},
                     model_version=make_version(team, name="warn-a"))
    b = stored_audit(team, [variant_doc("baseline", batch_sizes=(8,))], fingerprint={"cpu_model": "EPYC", "cpu_logical_cores": 4},
                     model_version=make_version(team, name="warn-b"))
    b.model_version.asset.task = "regression"
    b.model_version.asset.save()
    page = member_client.get(reverse("compare") + f"?a={a.pk}&a={b.pk}").content.decode()
    box = re.search(r'id="compare-differences">(.*?)</div>', page, re.S).group(1)
    assert "different tasks" in box and "different hardware" in box and "different batch sizes (1, 8)" in box


def test_progress_names_variant_batch_phase_and_the_claiming_workers_hardware(member_client, team):
    event = {"event": "progress", "stage": "measuring", "percent": 40.0, "message": "", "variant": 1, "n_variants": 5,
             "batch_size": 8, "phase": "decode", "round": 1, "n_rounds": 3}
    assert stage_text(event) == "measuring · variant 2 of 5 · batch 8 · decode · round 1/3"
    assert stage_text({**event, "stage": "loading", "batch_size": None, "phase": None, "round": None}) == "loading"
    assert len(stage_text({**event, "n_variants": 10**12, "batch_size": 10**12})) <= 60
    assert parse_stage("measuring · variant 2 of 5 · batch 8 · decode · round 1/3") == {
        "stage": "measuring", "variant": 2, "n_variants": 5, "batch_size": 8, "phase": "decode", "round": 1,
        "n_rounds": 3}

    WorkerNode.objects.create(hostname="gpu-7", queue="cpu", fingerprint={"gpu": {"name": "NVIDIA H200"}},
                              started_at=timezone.now(), last_seen=timezone.now())
    audit = make_audit(team)
    assert "not known until a worker claims" in member_client.get(audit.get_absolute_url()).content.decode()
    claim = services.audit_claim(audit_id=audit.pk, hostname="gpu-7")
    services.audit_progress(audit_id=audit.pk, attempt=claim.attempt, stage=stage_text(event), percent=40)
    partial = member_client.get(reverse("audit-progress", args=[audit.pk])).content.decode()
    assert "variant 2 of 5 · batch size 8 · decode · round 1 of 3" in partial
    assert 'id="progress-hardware">NVIDIA H200<' in partial and "40%" in partial
    page = member_client.get(audit.get_absolute_url()).content.decode()
    assert 'id="report-hardware">NVIDIA H200<' in page and "unknown hardware" not in page


def test_the_eta_counts_down_to_the_engines_own_estimate_of_the_measuring_left(member_client, team):
    """Issue 20: an ETA from progress percentages said 1 h 16 min with 11 min left; the engine's
    estimate from the windows it has measured is what the page shows while it measures."""
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    event = {"stage": "measuring", "percent": 20.0, "variant": 0, "n_variants": 2, "batch_size": 1, "round": 1,
             "n_rounds": 3}
    services.audit_progress(audit_id=audit.pk, attempt=claim.attempt, stage=stage_text(event), percent=20,
                            eta_s=600.0)
    partial = member_client.get(reverse("audit-progress", args=[audit.pk])).content.decode()
    assert "about 10 min of measuring left" in partial or "about 9 min of measuring left" in partial
    # evaluating, after the measuring: back to the percentage's extrapolation, without the engine's words
    services.audit_progress(audit_id=audit.pk, attempt=claim.attempt, stage="evaluating", percent=95)
    partial = member_client.get(reverse("audit-progress", args=[audit.pk])).content.decode()
    assert "of measuring left" not in partial
    # a new attempt forgets the old estimate
    Audit.objects.filter(pk=audit.pk).update(status=Audit.Status.QUEUED)
    services.audit_claim(audit_id=audit.pk, hostname="w2")
    assert Audit.objects.get(pk=audit.pk).measuring_ends_at is None


def test_history_draws_the_chosen_figure(member_client, team):
    v1 = make_version(team, name="hist3", label="v1")
    stored_audit(team, [variant_doc("baseline", energy=0.004, accuracy=0.9)], model_version=v1)
    page = member_client.get(reverse("model-history", args=[v1.asset_id]) + "?figure=flops").content.decode()
    clean(page)
    figs = json.loads(re.search(r'<script id="history-figures" type="application/json">(.*?)</script>', page, re.S).group(1))
    assert figs["chart-history-chosen"]["layout"]["yaxis"]["title"]["text"] == "FLOPs per sample (FLOPs)"
    assert figs["chart-history-chosen"]["data"][0]["y"] == [4672.0]


def test_team_overview_per_week_and_model_with_the_grid_intensity(member_client, team):
    from datetime import timedelta

    a = stored_audit(team, [variant_doc("baseline", energy=0.004)], model_version=make_version(team, name="week-a"))
    b = stored_audit(team, [variant_doc("baseline", energy=0.002)], model_version=make_version(team, name="week-b", label="v1"))
    c = store(team, real_doc("engine_result_digits_v2.json"), model_version=make_version(team, name="week-b", label="v2"))
    three_weeks_ago = timezone.now() - timedelta(weeks=3)
    Audit.objects.filter(pk=a.pk).update(created_at=three_weeks_ago, finished_at=three_weeks_ago)
    page = member_client.get(reverse("home")).content.decode()
    clean(page)
    figs = json.loads(re.search(r'<script id="home-figures" type="application/json">(.*?)</script>', page, re.S).group(1))
    bars = {t["name"]: (t["x"], t["y"]) for t in figs["chart-week-audits"]["data"]}
    assert sum(bars["week-a"][1]) == 1 and sum(bars["week-b"][1]) == 2
    assert len(set(bars["week-a"][0]) | set(bars["week-b"][0])) == 2  # two different weeks
    energy = {t["name"]: t for t in figs["chart-week-energy"]["data"]}
    assert energy["week-a (estimated)"]["y"] == [pytest.approx(0.004 * 1000 / 3600)]
    carbon = figs["chart-week-carbon"]
    assert carbon["layout"]["yaxis"]["title"]["text"] == "CO₂e per 1,000 inferences (g)"
    table = re.search(r'id="overview-models">(.*?)</table>', page, re.S).group(1)
    # week-b's latest audit is the schema-2 one: its grams used the world average of the shipped table
    assert c.carbon["intensity_g_per_kwh"] == 481.0
    assert re.search(r"week-b \(estimated\).*?481 gCO₂e/kWh \(WORLD 2023 average\)", table, re.S)
