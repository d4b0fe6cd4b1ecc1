"""Paired comparisons and quality grades: what a reviewer can defend.

Variants are measured in interleaved rounds with the baseline; each reports variant/baseline
ratios with 95% intervals from the rounds. A saving whose interval holds 1 is "no measurable
difference", never a recommendation; every measurement and the audit carry a grade A-D.
"""
import multiprocessing
import time

import pytest

from tests.engine import models as m
from workers.engine import quality, rounds, sequential
from workers.engine.loaders import LoadedModel
from workers.engine.profile import profile_model
from workers.engine.recipes import RECIPES, Recipe
from workers.engine.tradeoff import build_tradeoff

FAST = dict(m.FAST_OPTIONS, window_s=0.05, time_cap_s=0.4, rounds=4, target_rel_ci=0.02)


def test_paired_ratio_cancels_drift_that_ruins_absolute_figures():
    # The machine slows down 4x during the audit; the variant always takes 0.5x the baseline's time
    # at the same moment. Absolute means mislead; the paired ratio does not.
    base, var = [], []
    for r in range(6):
        slow = 1.0 + 0.6 * r
        base.append((10.0 * slow, 2.0 * slow))
        var.append((10.0 * (slow + 0.3) * 0.5, 2.0 * (slow + 0.3) * 0.5))  # measured just after the baseline
    closing = (10.0 * 4.6, 2.0 * 4.6)
    entry = rounds.compare(base, closing, var)
    assert entry["rounds"] == 6
    assert entry["energy_ratio"] == pytest.approx(0.5, rel=0.02)
    lo, hi = entry["energy_ratio_ci95"]
    assert 0.45 < lo < 0.5 < hi < 0.55
    assert entry["verdict"] == "lower" and entry["latency_verdict"] == "lower"


def test_a_comparator_in_the_rounds_is_read_the_other_way_round():
    # A reference version measured in a variant's place, at half the baseline's cost: the baseline
    # (the new version) costs twice the reference, with the interval inverted exactly.
    base = [(10.0, 2.0), (11.0, 2.2), (9.5, 1.9), (10.5, 2.1)]
    half = [(5.1, 1.0), (5.4, 1.1), (4.8, 0.96), (5.2, 1.04)]
    forward = rounds.compare(base, (10.0, 2.0), half)
    inverse = rounds.compare(base, (10.0, 2.0), half, inverse=True)
    assert inverse["energy_ratio"] == pytest.approx(1 / forward["energy_ratio"])
    lo, hi = inverse["energy_ratio_ci95"]
    assert (lo, hi) == pytest.approx((1 / forward["energy_ratio_ci95"][1], 1 / forward["energy_ratio_ci95"][0]))
    assert 1.8 < lo < 2.0 < hi < 2.2
    assert (forward["verdict"], inverse["verdict"], inverse["latency_verdict"]) == ("lower", "higher", "higher")


def test_a_ratio_whose_interval_straddles_the_thresholds_is_inconclusive():
    base = [(10.0, 1.0), (12.0, 1.2), (9.0, 0.9), (11.0, 1.1)]
    var = [(9.0, 0.9), (13.5, 1.35), (8.0, 0.8), (12.5, 1.25)]
    entry = rounds.compare(base, None, var)
    lo, hi = entry["energy_ratio_ci95"]
    assert lo < 0.95 and hi > 1.05  # neither a saving nor within the equivalence margin
    assert entry["verdict"] == "inconclusive"


def _doc(ratio, ci, grade="A", value=0.95, base_value=0.95):
    def variant(recipe, comparison, v):
        return {"recipe": recipe, "status": "succeeded",
                "measurements": [{"batch_size": 1, "energy_j_per_inference": 1.0 * (ratio if comparison else 1),
                                  "energy_j_per_sample": 1.0, "latency_ms_p50": 1.0, "quality_grade": "A"}],
                "comparison": comparison, "evaluation": {"metric": "accuracy", "value": v, "higher_is_better": True}}

    comparison = [{"batch_size": 1, "energy_ratio": ratio, "energy_ratio_ci95": ci, "latency_ratio": ratio,
                   "latency_ratio_ci95": ci, "verdict": sequential.verdict(ci), "quality_grade": grade}]
    return {"variants": [variant("baseline", [], base_value), variant("int8-dynamic", comparison, value)]}


@pytest.mark.parametrize("ratio, ci, grade, value, expected", [
    (0.6, [0.55, 0.66], "A", 0.95, "recommended"),
    (0.8, [0.62, 1.04], "A", 0.95, "inconclusive"),  # the interval straddles the minimum saving
    (0.97, [0.96, 0.98], "A", 0.95, "no measurable difference"),  # measurable, but 3% is not worth a change
    (0.6, [0.55, 0.66], "D", 0.95, "recommended"),  # the grade qualifies a decisive interval, no veto
    (0.6, [0.55, 0.66], "A", 0.80, "none"),  # cheaper, but loses 15 points of accuracy
])
def test_the_recommendation_rests_on_the_paired_interval(ratio, ci, grade, value, expected):
    (entry,) = build_tradeoff(_doc(ratio, ci, grade, value))["per_batch_size"]
    assert entry["verdict"] == expected
    assert (entry["recommended"] == "int8-dynamic") == (expected == "recommended")
    if expected == "recommended":
        # the savings use the paired ratio, not two drifting absolute figures
        assert entry["savings"]["variant"]["kwh_per_year"] == pytest.approx(
            0.6 * entry["savings"]["baseline"]["kwh_per_year"])
        assert "95% interval" in entry["recommended_reason"]


def test_fidelity_decides_when_there_are_no_labels():
    doc = _doc(0.6, [0.55, 0.66])
    for v, fid in zip(doc["variants"], (1.0, 0.95)):
        v["evaluation"] = {"metric": None, "value": None, "labelled": False, "fidelity_metric": "embedding_cosine",
                           "fidelity_value": fid, "fidelity_higher_is_better": True}
    (entry,) = build_tradeoff(doc, {"min_fidelity": 0.98})["per_batch_size"]
    assert entry["judged_by"] == "fidelity" and entry["verdict"] == "none"  # cosine 0.95 < 0.98
    (entry,) = build_tradeoff(doc, {"min_fidelity": 0.9})["per_batch_size"]
    assert entry["recommended"] == "int8-dynamic"


def test_grades_say_why():
    good = {"latency_ci95_rel": 0.01, "energy_method": "nvml-counter", "window_s": 10.0, "meter_resolution_s": 0.1,
            "flags": []}
    assert quality.grade_measurement(good) == ("A", [])
    grade, reasons = quality.grade_measurement(dict(good, energy_method="estimate-tdp", energy_estimated=True))
    assert grade == "C" and "estimated" in reasons[0]
    grade, reasons = quality.grade_measurement(dict(good, window_s=0.5))
    assert grade == "C" and "5 updates of the meter" in reasons[0]
    grade, reasons = quality.grade_measurement(dict(good, window_s=0.15))
    assert grade == "D"
    grade, reasons = quality.grade_measurement(dict(good, latency_ci95_rel=0.3, flags=["contended:1"]))
    assert grade == "D" and any("±30.0%" in r for r in reasons) and any("another process" in r for r in reasons)
    assert quality.grade_drift(0.3)[0] == "C" and quality.grade_drift(47.0)[0] == "D"


@pytest.fixture
def same_model_recipe(monkeypatch):
    """A variant that is the baseline's own model: any difference measured is noise."""
    monkeypatch.setitem(RECIPES, "same-model", Recipe("same-model", lambda loaded, params: loaded))
    return "same-model"


def _burn(stop_at):
    while time.time() < stop_at:
        pass


def test_a_variant_measured_beside_a_cpu_burner_is_never_recommended(mlp_safetensors, same_model_recipe):
    burners = [multiprocessing.get_context("spawn").Process(target=_burn, args=(time.time() + 30,))
               for _ in range(2)]
    for b in burners:
        b.start()
    try:
        doc = profile_model(mlp_safetensors, batch_sizes=(4,), recipes=["baseline", same_model_recipe],
                            options=dict(FAST, threads=1))
    finally:
        for b in burners:
            b.terminate()
            b.join()
    base, same = doc["variants"]
    assert same["status"] == "succeeded", same["error"]
    (cmp,) = same["comparison"]
    assert cmp["rounds"] >= 4 and cmp["energy_ratio_ci95"] and cmp["latency_ratio_ci95"]
    # Pretend its quality is perfect, so only the measurement can stop a recommendation.
    for v in doc["variants"]:
        v["evaluation"] = {"metric": "accuracy", "value": 0.9, "higher_is_better": True}
    (entry,) = build_tradeoff(doc)["per_batch_size"]
    assert entry["verdict"] != "recommended", entry["recommended_reason"]
    assert doc["quality"]["grade"] in quality.GRADES and doc["quality"]["reasons"]


def test_every_measurement_and_the_audit_carry_a_grade(mlp_safetensors):
    events = []
    doc = profile_model(mlp_safetensors, batch_sizes=(1, 4), recipes=["baseline", "int8-dynamic"],
                        options=dict(FAST, threads=1), progress=events.append)
    base, int8 = doc["variants"]
    for v in (base, int8):
        for x in v["measurements"]:
            assert x["quality_grade"] in quality.GRADES and isinstance(x["quality_reasons"], list)
            assert x["rounds"] >= 4 and len(x["window_means_ms"]) == x["windows"]
            # the CPU estimate is never graded above C, and says so
            assert x["quality_grade"] in ("C", "D") and any("estimated" in r for r in x["quality_reasons"])
    assert base["comparison"] == [] and [c["batch_size"] for c in int8["comparison"]] == [1, 4]
    assert doc["quality"]["grade"] in ("C", "D")
    assert doc["drift"]["method"] == "first vs last paired round"
    # progress says which variant, batch size and round, and never goes back
    measuring = [e for e in events if e["stage"] == "measuring" and e["round"]]
    assert {e["batch_size"] for e in measuring} == {1, 4} and {e["variant"] for e in measuring} == {0, 1}
    percents = [e["percent"] for e in events]
    assert percents == sorted(percents)
    # the baseline is not measured a second time at the end: one schedule of rounds per batch size
    assert base["measurements"][0]["windows"] == int8["measurements"][0]["windows"] + 1  # + the closing window
    # the stage says warm-up while warming, and from the first window on the events carry the
    # measuring left, from the windows measured: the first batch size's estimate holds the second's
    assert any(e["stage"] == "warm-up" and e["batch_size"] == 4 for e in events)
    etas = [(e["batch_size"], e["eta_s"]) for e in measuring if e.get("eta_s") is not None]
    window = FAST["window_s"]
    first = [eta for bs, eta in etas if bs == 1]
    assert first and first[0] > 4 * window  # rounds of two subjects at two batch sizes are still due
    assert etas[-1][1] < first[0] and etas[-1][1] < 4 * window * 3  # near the end, little is left
    assert doc["run_timing"]["windows_s"] > 0 and doc["run_timing"]["warmup_calls"] > 0


def _gen_variant(recipe, rows, fidelity=1.0):
    return {"recipe": recipe, "status": "succeeded", "comparison": [],
            "evaluation": {"metric": None, "value": None, "labelled": False, "fidelity_metric": "top1_agreement",
                           "fidelity_value": fidelity, "fidelity_higher_is_better": True},
            "measurements": [{"batch_size": bs, "energy_j_per_inference": j * bs * 32, "energy_j_per_sample": j * 32,
                              "energy_j_per_output_token": j, "ttft_ms_p95": ttft, "tpot_ms_p95": tpot,
                              "energy_uncertainty_rel": 0.05, "latency_ms_p50": tpot * 32}
                             for bs, j, ttft, tpot in rows]}


def test_cheapest_configuration_within_the_latency_slo():
    doc = {"scenario": {"kind": "generation", "prompt_tokens": 64, "new_tokens": 32},
           "variants": [
               _gen_variant("baseline", [(1, 0.50, 20.0, 10.0), (8, 0.10, 60.0, 14.0), (32, 0.04, 250.0, 40.0)]),
               _gen_variant("int8-dynamic", [(1, 0.40, 18.0, 8.0), (8, 0.08, 55.0, 12.0), (32, 0.03, 230.0, 35.0)]),
               _gen_variant("prune-structured:0.5", [(8, 0.01, 30.0, 6.0)], fidelity=0.4),  # cheap but broken
           ]}
    t = build_tradeoff(doc, {"slo_ttft_ms_p95": 100.0, "slo_tpot_ms_p95": 20.0})
    assert t["per_batch_size"][0]["energy_key"] == "energy_j_per_output_token"
    cheapest = t["slo"]["cheapest"]
    assert (cheapest["recipe"], cheapest["batch_size"]) == ("int8-dynamic", 8)  # batch 32 misses the SLO
    assert "baseline at batch 8 is within the measurement uncertainty" not in t["slo"]["reason"]
    t = build_tradeoff(doc, {"slo_ttft_ms_p95": 10.0, "slo_tpot_ms_p95": 5.0})
    assert t["slo"]["cheapest"] is None and "no configuration meets" in t["slo"]["reason"]
    assert "TTFT p95 18 ms" in t["slo"]["reason"]
