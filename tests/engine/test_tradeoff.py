"""tradeoff.py: Pareto frontier, recommendation under a constraint, projected savings."""

import subprocess
import sys

import pytest

from workers.engine.tradeoff import (
    build_tradeoff, dominates, format_tradeoff, pareto_frontier, projected_savings, recommend,
)


def _p(recipe, energy, value):
    return {"recipe": recipe, "energy_j_per_inference": energy, "energy_j_per_sample": energy / 8, "value": value}


POINTS = [
    _p("baseline", 10.0, 0.95),
    _p("int8", 6.0, 0.945),
    _p("prune", 7.0, 0.93),     # dominated by int8: more energy, lower accuracy
    _p("distill", 3.0, 0.90),
    _p("fp16", 10.0, 0.95),     # ties the baseline: neither dominates the other
]


def test_dominance_and_frontier_accuracy():
    assert dominates(POINTS[1], POINTS[2])
    assert not dominates(POINTS[0], POINTS[4]) and not dominates(POINTS[4], POINTS[0])
    frontier = [p["recipe"] for p in pareto_frontier(POINTS)]
    assert frontier == ["distill", "int8", "baseline", "fp16"]


def test_frontier_lower_is_better_metric():
    points = [_p("baseline", 10.0, 20.0), _p("a", 5.0, 25.0), _p("b", 6.0, 30.0), _p("c", 12.0, 19.0)]
    frontier = [p["recipe"] for p in pareto_frontier(points, higher_is_better=False)]
    assert frontier == ["a", "baseline", "c"]


def test_recommend_under_one_point_of_accuracy():
    rec = recommend(POINTS, max_accuracy_drop=0.01)
    assert rec["recipe"] == "int8" and "40.0% less energy" in rec["reason"]
    assert recommend(POINTS, max_accuracy_drop=0.05)["recipe"] == "distill"
    assert recommend(POINTS, max_accuracy_drop=0.0)["recipe"] == "baseline"


def test_recommend_relative_increase_for_perplexity():
    points = [_p("baseline", 10.0, 20.0), _p("a", 5.0, 20.1), _p("b", 4.0, 21.0)]
    assert recommend(points, higher_is_better=False, max_metric_increase_rel=0.01)["recipe"] == "a"
    assert recommend(points, higher_is_better=False, max_metric_increase_rel=0.06)["recipe"] == "b"
    assert recommend([_p("a", 1.0, 1.0)])["recipe"] is None


def test_projected_savings_known_answer():
    # 1 J/query saved, 1e6 queries/day: 365e6 J = 101.39 kWh/year; x PUE 1.5 = 152.08 kWh
    s = projected_savings(baseline_j_per_query=3.0, variant_j_per_query=2.0, queries_per_day=1e6,
                          intensity_g_per_kwh=400.0, pue=1.5, price_per_kwh=0.2)
    kwh = 365e6 / 3.6e6 * 1.5
    assert s["saved"]["kwh_per_year"] == pytest.approx(kwh)
    assert s["saved"]["kgco2e_per_year"] == pytest.approx(kwh * 0.4)
    assert s["saved"]["cost_per_year"] == pytest.approx(kwh * 0.2)
    assert s["baseline"]["kwh_per_year"] == pytest.approx(3 * kwh)


def _measured(recipe, energy, latency, value=None, metric="accuracy"):
    m = {"batch_size": 8, "energy_j_per_inference": energy, "energy_j_per_sample": energy / 8,
         "latency_ms_p50": latency, "energy_estimated": True}
    ev = None if value is None else {"metric": metric, "value": value, "n_samples": 100, "fidelity": {},
                                     "higher_is_better": True}
    return {"recipe": recipe, "status": "succeeded", "measurements": [m], "evaluation": ev}


def test_build_tradeoff_from_a_result_document():
    result = {"carbon": {"intensity_g_per_kwh": 475.0, "pue": 1.0},
              "variants": [_measured("baseline", 8.0, 2.0, 0.97), _measured("int8-dynamic", 4.0, 1.0, 0.965),
                           {"recipe": "sparse-2:4", "status": "skipped", "measurements": [], "evaluation": None}]}
    t = build_tradeoff(result, {"queries_per_day": 1000, "electricity_price_per_kwh": 0.3})
    (entry,) = t["per_batch_size"]
    assert entry["recommended"] == "int8-dynamic" and entry["frontier"] == ["int8-dynamic", "baseline"]
    assert [p["recipe"] for p in entry["points"]] == ["baseline", "int8-dynamic"]
    assert entry["points"][1]["energy_ratio"] == pytest.approx(0.5) and entry["points"][1]["latency_ratio"] == 0.5
    assert entry["savings"]["saved"]["kwh_per_year"] == pytest.approx(0.5 * 1000 * 365 / 3.6e6)
    text = format_tradeoff(t)
    assert "recommended: int8-dynamic" in text and "queries/day" in text


def test_no_evaluation_means_no_recommendation():
    result = {"variants": [_measured("baseline", 8.0, 2.0), _measured("int8-dynamic", 4.0, 1.0)]}
    (entry,) = build_tradeoff(result)["per_batch_size"]
    assert entry["recommended"] is None and "accuracy unknown" in entry["recommended_reason"]


def test_tradeoff_imports_no_torch():
    code = "import sys, workers.engine.tradeoff; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_noise_floor_is_the_baseline_drift_and_at_least_five_percent():
    from workers.engine.tradeoff import noise_floor

    assert noise_floor(None) == 0.05
    assert noise_floor({"max_abs_rel_change": 0.02}) == 0.05
    assert noise_floor({"max_abs_rel_change": 0.3}) == 0.3


def test_recommend_ignores_savings_inside_the_noise():
    from workers.engine.tradeoff import recommend

    points = [{"recipe": "baseline", "energy_j_per_inference": 1.0, "value": 0.9},
              {"recipe": "noise", "energy_j_per_inference": 0.97, "value": 0.9}]
    rec = recommend(points, min_saving_rel=0.05)
    assert rec["recipe"] == "baseline" and "noise" in rec["reason"]
    assert recommend(points, min_saving_rel=0.0)["recipe"] == "noise"


def test_a_nan_metric_does_not_break_the_recommendation():
    """fp16 logits that overflow give a NaN perplexity; the trade-off must still be built."""
    from workers.engine.tradeoff import pareto_frontier, recommend

    nan = float("nan")
    points = [{"recipe": "baseline", "energy_j_per_inference": 1.0, "value": nan},
              {"recipe": "fp16", "energy_j_per_inference": 0.5, "value": nan}]
    assert recommend(points, higher_is_better=False)["recipe"] is None
    assert pareto_frontier(points) == []
    points[0]["value"] = 10.0
    assert recommend(points, higher_is_better=False)["recipe"] == "baseline"


# --- issue 18: decide on the interval, show every constraint, compare within one run --------


def _paired_doc(ratio, ci, *, grade="D", fidelity=("embedding_cosine", 0.95), kind="embedding", vetoes=None,
                task="feature-extraction", extra_fidelity=None):
    """A schema-2 result: the baseline and int8-dynamic at batch 1, the comparison as an older
    engine stored it (no veto_reasons) unless ``vetoes`` is given."""
    metric, value = fidelity

    def ev(v):
        fid = {metric: v, **(extra_fidelity or {})}
        return {"metric": None, "value": None, "labelled": False, "fidelity": fid, "fidelity_metric": metric,
                "fidelity_value": v, "fidelity_higher_is_better": metric != "relative_error", "fidelity_kind": kind}

    def m(j):
        return {"batch_size": 1, "energy_j_per_inference": j, "energy_j_per_sample": j, "latency_ms_p50": 1.0,
                "quality_grade": grade}

    comparison = {"batch_size": 1, "energy_ratio": ratio, "energy_ratio_ci95": ci, "latency_ratio": ratio,
                  "latency_ratio_ci95": ci, "verdict": "lower", "quality_grade": grade}
    if vetoes is not None:
        comparison["veto_reasons"] = vetoes
    return {"model": {"task": task}, "variants": [
        {"recipe": "baseline", "status": "succeeded", "measurements": [m(1.0)], "comparison": [],
         "evaluation": ev(1.0 if metric != "relative_error" else 0.0)},
        {"recipe": "int8-dynamic", "status": "succeeded", "measurements": [m(ratio)], "comparison": [comparison],
         "evaluation": ev(value)}]}


def test_a_decisive_saving_graded_d_is_recommended_with_its_grade():
    (entry,) = build_tradeoff(_paired_doc(0.30, [0.25, 0.37], fidelity=("embedding_cosine", 0.99)))["per_batch_size"]
    assert entry["verdict"] == "recommended" and entry["recommended"] == "int8-dynamic"
    assert "x0.30 [0.25, 0.37]" in entry["recommended_reason"] and "grade D" in entry["recommended_reason"]
    assert "embedding cosine 0.99 (limit embedding cosine ≥ 0.98)" in entry["recommended_reason"]


@pytest.mark.parametrize("ci, expected", [
    ([0.90, 0.97], "inconclusive"),  # below 1, but a 5% saving is not shown
    ([0.97, 1.03], "no measurable difference"),  # within the ±5% margin
    ([1.10, 1.30], "none"),  # a cost
])
def test_the_minimum_saving_and_the_equivalence_margin_decide(ci, expected):
    doc = _paired_doc(sum(ci) / 2, ci, fidelity=("embedding_cosine", 0.99))
    (entry,) = build_tradeoff(doc)["per_batch_size"]
    assert entry["verdict"] == expected, entry["recommended_reason"]
    t = build_tradeoff(doc, {"min_saving": 0.02, "equivalence_margin": 0.02})
    assert t["constraint"]["min_saving"] == 0.02 and "x0.98" in t["decision_rule"]["text"]
    if ci == [0.90, 0.97]:  # a 2% minimum saving: now decisive
        assert t["per_batch_size"][0]["verdict"] == "recommended"


def test_a_veto_breaks_the_pairing_whatever_the_interval():
    doc = _paired_doc(0.46, [0.45, 0.46], fidelity=("embedding_cosine", 0.99),
                      vetoes=["baseline at batch 1: active energy clamped at 0"])
    (entry,) = build_tradeoff(doc)["per_batch_size"]
    assert entry["verdict"] == "inconclusive" and "active energy clamped at 0" in entry["recommended_reason"]


def test_a_variant_excluded_by_a_constraint_is_listed_with_its_figure():
    """The MiniLM case: int8 x0.46 [0.45, 0.46], embedding cosine 0.95 against the 0.98 floor."""
    t = build_tradeoff(_paired_doc(0.46, [0.45, 0.46]))
    (entry,) = t["per_batch_size"]
    assert entry["verdict"] == "none" and entry["recommended"] is None
    assert entry["excluded"] == [{"recipe": "int8-dynamic", "batch_size": 1, "constraint": "min_fidelity",
                                  "figure": 0.95, "limit": 0.98, "reason": "embedding cosine 0.95 < 0.98",
                                  "energy": "x0.46 [0.45, 0.46] lower"}]
    assert "excluded by a constraint: int8-dynamic (energy x0.46 [0.45, 0.46] lower): embedding cosine 0.95 < 0.98" \
        in entry["recommended_reason"]
    (c,) = t["constraints"]
    assert (c["name"], c["metric"], c["limit"], c["default"]) == ("min_fidelity", "embedding_cosine", 0.98, True)
    assert "neighbours" in c["why"]
    text = format_tradeoff(t)
    assert "constraints: embedding cosine ≥ 0.98" in text and "excluded: int8-dynamic: embedding cosine 0.95 < 0.98" in text
    # the floor is an option of the audit: set lower, int8 is recommended, and the page can say it was set
    t = build_tradeoff(_paired_doc(0.46, [0.45, 0.46]), {"min_fidelity": 0.9})
    assert t["per_batch_size"][0]["recommended"] == "int8-dynamic" and t["constraints"][0]["why"] == "set for this audit"


@pytest.mark.parametrize("fidelity, kind, task, extra, limit, excluded", [
    (("top1_agreement", 0.958), "sequence", "text-generation", {"kl_divergence": 0.002}, 0.95, False),
    (("top1_agreement", 0.958), "classifier", "text-classification", {}, 0.98, True),
    (("top1_agreement", 0.99), "sequence", "text-generation", {"kl_divergence": 0.05}, 0.95, True),  # KL > 0.01
    (("relative_error", 0.03), "regression", "regression", {}, 0.02, True),
])
def test_fidelity_defaults_per_kind(fidelity, kind, task, extra, limit, excluded):
    doc = _paired_doc(0.5, [0.45, 0.55], fidelity=fidelity, kind=kind, task=task, extra_fidelity=extra)
    t = build_tradeoff(doc)
    assert t["constraints"][0]["limit"] == pytest.approx(limit)
    assert bool(t["per_batch_size"][0]["excluded"]) == excluded
    if fidelity[0] == "top1_agreement":
        assert any(c["name"] == "max_kl_divergence" and c["limit"] == 0.01 for c in t["constraints"])


def test_an_older_result_without_a_fidelity_kind_takes_it_from_the_task():
    doc = _paired_doc(0.5, [0.45, 0.55], fidelity=("top1_agreement", 0.958), kind=None, task="text-generation")
    for v in doc["variants"]:
        del v["evaluation"]["fidelity_kind"]
    assert build_tradeoff(doc)["constraints"][0]["limit"] == 0.95


def _gen(recipe, rows, *, fidelity=1.0, method=0.81, stat=0.05):
    """Generation measurements: (batch, J per output token, TTFT p95, TPOT p95); a CPU estimate's
    scale error ``method`` shared by every figure, a within-run spread ``stat``."""
    return {"recipe": recipe, "status": "succeeded", "comparison": [],
            "evaluation": {"metric": None, "value": None, "fidelity": {"top1_agreement": fidelity},
                           "fidelity_metric": "top1_agreement", "fidelity_value": fidelity,
                           "fidelity_higher_is_better": True, "fidelity_kind": "sequence"},
            "measurements": [{"batch_size": bs, "energy_j_per_inference": j * bs * 8, "energy_j_per_sample": j * 8,
                              "energy_j_per_output_token": j, "ttft_ms_p95": ttft, "tpot_ms_p95": tpot,
                              "latency_ms_p50": tpot * 8, "energy_uncertainty_method_rel": method,
                              "energy_uncertainty_stat_rel": stat,
                              "energy_uncertainty_rel": (method ** 2 + stat ** 2) ** 0.5,
                              "energy_j_per_output_token_uncertainty_rel": (method ** 2 + stat ** 2) ** 0.5}
                             for bs, j, ttft, tpot in rows]}


GEN = {"model": {"task": "text-generation"}, "scenario": {"kind": "generation"}}


def test_the_slo_answer_names_what_a_constraint_excluded():
    """GPT-2: bf16 at batch 1 meets TTFT <= 300 / TPOT <= 60 ms but its top-1 agreement is 0.90."""
    doc = dict(GEN, variants=[_gen("baseline", [(1, 0.50, 350.0, 70.0), (4, 0.30, 900.0, 90.0)]),
                              _gen("bf16", [(1, 0.40, 111.0, 48.3)], fidelity=0.90),
                              _gen("int8-dynamic", [(1, 0.45, 250.0, 55.0)], fidelity=0.99)])
    slo = build_tradeoff(doc, {"slo_ttft_ms_p95": 300, "slo_tpot_ms_p95": 60})["slo"]
    assert (slo["cheapest"]["recipe"], slo["cheapest"]["batch_size"]) == ("int8-dynamic", 1)
    assert slo["excluded"] == [{"recipe": "bf16", "batch_size": 1, "constraint": "min_fidelity", "figure": 0.90,
                                "limit": 0.95, "reason": "top-1 agreement 0.9 < 0.95", "energy_j_per_output_token": 0.40,
                                "ttft_ms_p95": 111.0, "tpot_ms_p95": 48.3}]
    assert "within top-1 agreement ≥ 0.95" in slo["reason"]
    assert "meet the targets but excluded by a constraint: bf16 at batch 1 (top-1 agreement 0.9 < 0.95)" in slo["reason"]
    # without int8, nothing within the constraints meets the targets: said so, and bf16 still named
    doc["variants"].pop()
    slo = build_tradeoff(doc, {"slo_ttft_ms_p95": 300, "slo_tpot_ms_p95": 60})["slo"]
    assert slo["cheapest"] is None and slo["reason"].startswith("no configuration meets TTFT p95 <= 300 ms")
    assert "bf16 at batch 1 (top-1 agreement 0.9 < 0.95)" in slo["reason"]


@pytest.mark.parametrize("stat, close", [(0.05, False), (0.8, True)])
def test_a_shared_scale_error_does_not_make_two_batch_sizes_alike(stat, close):
    """Batch 4 at 0.40x batch 1's J per output token, both under a CPU estimate's ±81% scale
    error: only the within-run spread decides whether they are told apart."""
    doc = dict(GEN, variants=[_gen("baseline", [(1, 0.05, 50.0, 20.0), (4, 0.02, 80.0, 25.0)], stat=stat)])
    slo = build_tradeoff(doc, {"slo_tpot_ms_p95": 60})["slo"]
    assert slo["cheapest"]["batch_size"] == 4
    assert ("within the measurement uncertainty" in slo["reason"]) is close

    from workers.engine.frontier import build_frontier

    (v,) = build_frontier(doc, {"slo_tpot_ms_p95": 60})["variants"]
    assert v["cheapest"]["batch_size"] == 4
    assert ("within the measurement uncertainty" in v["reason"]) is close
