"""Pure functions: the Pareto frontier, the recommendation, the yearly footprint."""
import math

import pytest

from audit.reports.tradeoff import (
    Point, accuracy_pct, pareto_frontier, pick_accuracy, recommend, relative_change, yearly_footprint,
)


def test_frontier_keeps_only_undominated_points_sorted_by_energy():
    points = [
        Point("baseline", 10.0, 95.0, is_baseline=True),
        Point("fp16", 6.0, 94.9),
        Point("int8", 4.0, 93.0),
        Point("bad", 8.0, 90.0),  # dominated by fp16: more energy, less accuracy
        Point("tie", 6.0, 94.0),  # dominated by fp16: same energy, less accuracy
        Point("unknown", 1.0, None),  # no accuracy: takes no part
    ]
    assert [p.key for p in pareto_frontier(points)] == ["int8", "fp16", "baseline"]


def test_frontier_of_nothing_is_empty():
    assert pareto_frontier([]) == []
    assert pareto_frontier([Point("a", float("nan"), 90.0)]) == []


def test_recommends_least_energy_within_one_point_of_accuracy():
    points = [Point("baseline", 10.0, 95.0, is_baseline=True), Point("fp16", 6.0, 94.5), Point("int8", 4.0, 93.0)]
    rec = recommend(points)
    assert rec.key == "fp16" and rec.accuracy_known
    assert "40% less energy" in rec.reason
    assert recommend(points, max_drop_pts=2.5).key == "int8"


def test_baseline_is_recommended_when_nothing_saves_within_the_limit():
    points = [Point("baseline", 10.0, 95.0, is_baseline=True), Point("int8", 4.0, 90.0), Point("big", 12.0, 96.0)]
    rec = recommend(points)
    assert rec.key == "baseline" and "No variant" in rec.reason


def test_no_accuracy_means_no_recommendation():
    points = [Point("baseline", 10.0, None, is_baseline=True), Point("int8", 4.0, None)]
    rec = recommend(points)
    assert rec.key is None and not rec.accuracy_known and "unknown" in rec.reason.lower()
    assert recommend([Point("int8", 4.0, 90.0)]).key is None  # no baseline


def test_accuracy_is_read_as_percent():
    assert accuracy_pct(0.953) == pytest.approx(95.3)
    assert accuracy_pct(95.3) == 95.3
    assert accuracy_pct(None) is None and accuracy_pct(float("nan")) is None
    assert pick_accuracy([{"metric": "f1", "value": 0.5}, {"metric": "accuracy", "value": 0.9}]) == pytest.approx(90.0)
    assert pick_accuracy([]) is None


def test_relative_change_and_footprint():
    assert relative_change(6.0, 10.0) == pytest.approx(-0.4)
    assert relative_change(1.0, 0.0) is None and relative_change(None, 1.0) is None
    year = yearly_footprint(j_per_query=3.6, queries_per_day=1000, pue=1.5, grid_g_per_kwh=400, price_per_kwh=0.2)
    kwh = 3.6 * 1000 * 365 / 3.6e6 * 1.5
    assert year.kwh_per_year == pytest.approx(kwh)
    assert year.kgco2e_per_year == pytest.approx(kwh * 0.4)
    assert year.cost_per_year == pytest.approx(kwh * 0.2)
    assert yearly_footprint(j_per_query=math.nan, queries_per_day=1, pue=1, grid_g_per_kwh=1, price_per_kwh=1) is None


def test_a_saving_within_the_measurement_noise_is_not_recommended():
    from audit.reports.tradeoff import Point, recommend

    points = [
        Point("baseline", 1.00, accuracy_pct=95.0, is_baseline=True),
        Point("prune-unstructured:0.5", 0.92, accuracy_pct=95.0),  # 8% "saving" on dense kernels
        Point("int8-dynamic", 0.40, accuracy_pct=94.8),
    ]
    assert recommend(points, min_saving_rel=0.10).key == "int8-dynamic"
    noisy = recommend(points[:2], min_saving_rel=0.10)
    assert noisy.key == "baseline" and "measurement noise (10%" in noisy.reason
    assert recommend(points[:2], min_saving_rel=0.0).key == "prune-unstructured:0.5"
