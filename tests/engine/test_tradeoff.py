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
