"""Verdicts that answer: decide on the paired interval, stop the rounds when the answer is known,
and keep the error rate at 5% despite looking after every round and despite the spread between runs.
"""
import math
import random
import time

import pytest

from workers.engine import rounds, sequential
from workers.engine.meters import Reading


@pytest.mark.parametrize("ci, expected", [
    ([0.45, 0.46], "lower"),  # int8's saving, decisively beyond the 5% minimum
    ([0.93, 0.97], "inconclusive"),  # lower than 1, but it may save less than 5%
    ([0.97, 0.99], "no measurable difference"),  # measurably lower, by less than the equivalence margin
    ([0.96, 1.04], "no measurable difference"),
    ([0.90, 1.10], "inconclusive"),  # straddles both thresholds
    ([1.06, 1.20], "higher"),
    ([1.02, 1.08], "inconclusive"),
    (None, "inconclusive"),  # a single round has no interval
])
def test_the_verdict_rule_on_constructed_intervals(ci, expected):
    assert sequential.verdict(ci) == expected


def test_thresholds_are_options_and_a_veto_is_inconclusive():
    assert sequential.verdict([0.93, 0.97], min_saving=0.02) == "lower"
    assert sequential.verdict([0.97, 1.04], equivalence_margin=0.02) == "inconclusive"
    assert sequential.verdict([0.45, 0.46], vetoed=True) == "inconclusive"


BASE = [(10.0, 1.0), (10.5, 1.05), (9.8, 0.98), (10.2, 1.02), (10.0, 1.0)]
HALF = [(5.0, 0.5), (5.4, 0.54), (4.8, 0.49), (5.2, 0.5)]


def test_a_veto_makes_a_decisive_comparison_inconclusive_and_is_named():
    plain = rounds.compare(BASE[:4], BASE[4], HALF)
    assert plain["verdict"] == "lower" and plain["veto_reasons"] == []
    vetoed = rounds.compare(BASE[:4], BASE[4], HALF, veto_reasons=["int8-dynamic: the meter read no energy"])
    assert vetoed["verdict"] == "inconclusive" and vetoed["latency_verdict"] == "inconclusive"
    assert vetoed["veto_reasons"] == ["int8-dynamic: the meter read no energy"]
    assert vetoed["energy_ratio_ci95"] == plain["energy_ratio_ci95"]  # the interval is still shown


def _half_width(entry):
    lo, hi = entry["energy_ratio_ci95"]
    return math.log(hi / lo) / 2


def test_the_between_run_component_widens_the_interval():
    within = rounds.compare(BASE[:4], BASE[4], HALF, sequential.Plan(between_run_rel=0.0))
    between = rounds.compare(BASE[:4], BASE[4], HALF, sequential.Plan(between_run_rel=0.05))
    basis = between["verdict_basis"]
    se, q = basis["energy_se_log"], basis["quantile"]
    assert _half_width(within) == pytest.approx(q * se)
    assert _half_width(between) == pytest.approx(q * math.sqrt(se ** 2 + 0.05 ** 2))
    assert _half_width(between) > 2 * _half_width(within)
    assert basis["between_run_rel"] == 0.05 and "sqrt(se^2 + tau^2)" in basis["interval"]


def test_each_look_spends_a_share_of_the_error_rate():
    one, eight = sequential.Plan(looks=1), sequential.Plan(looks=8)
    assert one.quantile(10) == pytest.approx(2.262, abs=1e-3)  # the ordinary 95% t quantile, 9 df
    assert eight.quantile(10) == pytest.approx(sequential.t_quantile(0.05 / 8, 9))
    assert eight.quantile(10) > 3.5
    basis = eight.basis(10)
    assert basis["looks"] == 8 and "Bonferroni" in basis["interval"] and basis["alpha"] == 0.05


def test_a_run_uses_its_device_class_between_run_component_and_the_request_options():
    table = sequential.between_run("cpu")
    plan = sequential.Plan.for_run(device="cpu", options={}, min_rounds=3, max_rounds=10)
    assert plan.between_run_rel == table["rel"] > 0 and plan.looks == 8
    assert (plan.min_saving, plan.equivalence_margin) == (0.05, 0.05)
    cuda = sequential.Plan.for_run(device="cuda:0", options={}, min_rounds=3, max_rounds=3)
    assert "not calibrated" in cuda.basis(3)["interval"] and sequential.between_run("cuda")["status"] == "default"
    plan = sequential.Plan.for_run(device="cpu", options={"min_saving": 0.1, "equivalence_margin": 0.02,
                                                          "between_run_rel": 0.0}, min_rounds=3, max_rounds=3)
    assert (plan.min_saving, plan.equivalence_margin, plan.between_run_rel, plan.looks) == (0.1, 0.02, 0.0, 1)


# --- the sequential stop on a meter whose energy the test controls --------------------------


class ControlledMeter:
    """Energy = what the workloads declare per call, times a per-window log-normal noise."""

    method = "test-controlled"
    estimated = False
    uncertainty_rel = 0.0
    reads_idle = True

    def __init__(self, noise: float, seed: int):
        self.noise, self.rng, self.joules, self.flags = noise, random.Random(seed), 0.0, []

    def add(self, joules: float) -> None:
        self.joules += joules

    def begin(self):
        self.t0, self.j0 = time.perf_counter(), self.joules

    def end(self):
        d = time.perf_counter() - self.t0
        e = (self.joules - self.j0) * math.exp(self.rng.gauss(0.0, self.noise))
        return Reading(e, d, e / d if d > 0 else 0.0, [], [])


class DeclaredWork:
    """A workload whose every call does a little CPU work and declares ``joules`` to the meter."""

    primary = "forward"
    phases = {"forward": "forward"}

    def __init__(self, meter: ControlledMeter, joules: float):
        def call():
            sum(range(300))
            meter.add(joules)

        self.parts = {"forward": call}

    def summarize(self, summaries):
        return {"batch_size": 1, **summaries["forward"]}


def _audit(joules_by_recipe: dict, *, seed=1, noise=0.03, **options):
    meter = ControlledMeter(noise, seed)
    recipes = list(joules_by_recipe)
    variants = [{"recipe": r, "status": "succeeded", "measurements": [], "comparison": []} for r in recipes]
    opts = dict(dict(window_s=0.01, time_cap_s=0.3, warmup_iters=10, rounds=3, target_rel_ci=0.02,
                     between_run_rel=0.02), **options)
    rounds.measure_paired({k: r for k, r in enumerate(recipes)}, variants, [1],
                          make_workload=lambda recipe, bs: DeclaredWork(meter, joules_by_recipe[recipe]),
                          device="cpu", meter=meter, idle_w=0.0, options=opts, report=lambda *a, **k: None,
                          pct_start=0.0, pct_end=100.0)
    for v in variants:
        assert v["status"] == "succeeded", v.get("error")
    return variants


def test_rounds_stop_when_the_answer_is_known_and_open_comparisons_stay_paired():
    base, big, same = _audit({"baseline": 1.0, "half": 0.5, "same": 1.0})
    (b,), (s,) = big["comparison"], same["comparison"]
    # a large effect is decided early ...
    assert b["verdict"] == "lower" and b["stopped_because"] == "decisive"
    assert 3 <= b["rounds"] <= 6 and 0.45 < b["energy_ratio"] < 0.55
    # ... while the null effect claims nothing and gets the rounds the decided one no longer needs
    assert s["verdict"] != "lower" and s["verdict"] != "higher"
    assert s["stopped_because"] in ("precise", "time cap", "max rounds") and s["rounds"] > b["rounds"] + 5
    # every round of each comparison is bracketed by baseline windows: the baseline went on to the end
    assert big["measurements"][0]["windows"] == b["rounds"]
    assert base["measurements"][0]["windows"] == same["measurements"][0]["windows"] + 1 == s["rounds"] + 1
    assert base["measurements"][0]["rounds"] == s["rounds"]
    for entry in (b, s):
        assert entry["verdict_basis"]["looks"] > 1 and entry["veto_reasons"] == []


def test_a_quiet_audit_of_a_large_effect_finishes_at_the_minimum_rounds():
    _, big = _audit({"baseline": 1.0, "half": 0.5}, noise=0.005, between_run_rel=0.0)
    (entry,) = big["comparison"]
    assert entry["rounds"] == 3 and entry["stopped_because"] == "decisive" and entry["verdict"] == "lower"


def test_a_meter_that_reads_nothing_vetoes_the_verdict():
    base, nothing = _audit({"baseline": 1.0, "nothing": 0.0})
    (entry,) = nothing["comparison"]
    assert entry["verdict"] == "inconclusive"
    assert entry["veto_reasons"] == ["nothing: the meter read no energy"]


# --- the error rate over many simulated runs ----------------------------------------------------


def _simulated_claims(truth: float, *, runs: int, plan: sequential.Plan, min_rounds=3, max_rounds=20,
                      sigma=0.04, tau_true=0.02, seed=7) -> dict:
    """Verdicts of ``runs`` simulated audits: per-round log ratios = log(truth) + the run's offset
    (the host's state for the whole run, sd tau_true) + round noise (sd sigma), decided with the
    engine's own comparison and stop rule after every round."""
    rng = random.Random(seed)
    counts = {}
    base = [(1.0, 1.0)] * (max_rounds + 1)
    for _ in range(runs):
        offset = rng.gauss(0.0, tau_true)
        var = [(1.0, truth * math.exp(offset + rng.gauss(0.0, sigma))) for _ in range(max_rounds)]
        for r in range(min_rounds, max_rounds + 1):
            entry = rounds.compare(base[:r], base[r], var[:r], plan)
            if rounds.stop_reason(entry, 0.02) or r == max_rounds:
                break
        counts[entry["verdict"]] = counts.get(entry["verdict"], 0) + 1
    return counts


PLAN = sequential.Plan(looks=18, between_run_rel=0.02)


@pytest.mark.parametrize("truth", [1.0, 0.95])  # A/A, and a saving of exactly the minimum
def test_false_claims_of_a_saving_stay_within_five_percent(truth):
    runs = 500
    counts = _simulated_claims(truth, runs=runs, plan=PLAN)
    false_claims = counts.get("lower", 0) + counts.get("higher", 0)
    assert false_claims / runs <= 0.05, counts


def test_without_the_corrections_the_same_runs_claim_savings_that_are_not_there():
    # the test above has teeth: a plain 95% interval looked at after every round, blind to the
    # run's own offset, claims "saves more than 5%" for a saving of exactly 5% far too often
    runs = 500
    naive = _simulated_claims(0.95, runs=runs, plan=sequential.Plan(looks=1, between_run_rel=0.0))
    assert naive.get("lower", 0) / runs > 0.10, naive


def test_a_real_saving_is_found():
    counts = _simulated_claims(0.5, runs=200, plan=PLAN)
    assert counts.get("lower", 0) / 200 >= 0.95, counts
