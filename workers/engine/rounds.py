"""Paired, interleaved measurement rounds: baseline, A, B, ..., baseline, A, B, ... per batch size.

Absolute figures from one run drift with the machine (thermal state, clock boost, other
tenants): five runs of the same model on a shared host gave batch-1 means ten times apart, each
with a tight interval. What a comparison needs is robust to that: in every round each variant
gets one window right after the baseline's, so both see the same state of the machine, and the
ratio variant / baseline of that round cancels what they share. The interval of the ratio comes
from the spread of the per-round ratios (a t-interval on their logarithms), widened for the
repeated looks and the spread between runs (``sequential.py``).

Each variant's ratio in round r divides by the geometric mean of the baseline's windows in
rounds r and r + 1 (the baseline's window after the last round closes it): a linear drift during
the round then cancels as well.

When to stop. After ``rounds`` rounds (the minimum), the baseline's window that opens each round
also closes the previous one, and each comparison's energy interval is looked at: a comparison
stops ("decisive") when its verdict is no longer inconclusive, ("precise") when the within-run
part of its half-width is below ``target_rel_ci``, ("time cap") when its variant has spent
``time_cap_s``, or ("max rounds") at the planned maximum. Stopped variants are no longer
measured; the baseline goes on as long as one comparison is open, so the open ones stay paired.
A quiet host decides in few rounds; a busy one spends its rounds where the answer is still open.
Without a baseline (or with the baseline alone) every sampler runs to its own interval target.

Comparators. A subject may be measured in the rounds as a comparator rather than a variant (a
reference version of the model, ``reference.py``): it takes a variant's place in every round,
bracketed by the baseline's windows, but its comparison is read the other way round, baseline /
comparator, because there the baseline is what is judged. Inverting each round's ratio inverts
the interval exactly (it is symmetric on the log scale), so the rule and the stop are the same.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

from . import quality, sequential, timing

DEFAULT_MIN_ROUNDS = 3
WINDOWS_PER_ROUND = 1


@dataclass
class ForwardWorkload:
    """One forward pass of one batch per call."""

    model: object
    batch_size: int
    seq_len: int | None
    overrides: dict
    input_shape: dict = field(default_factory=dict)

    def __post_init__(self):
        sample = self.model.make_inputs(self.batch_size, self.seq_len, self.overrides)
        self.input_shape = sample.input_shape
        values, forward = sample.values, self.model.forward
        self.parts = {"forward": lambda: forward(values)}
        self.primary = "forward"
        self.phases = {"forward": "forward"}

    def summarize(self, summaries: dict) -> dict:
        return {"batch_size": self.batch_size, "input_shape": self.input_shape, **summaries["forward"]}


class GenerationWorkload:
    """One prefill of the batch's prompts, and one whole request (prefill + decode), per call."""

    def __init__(self, model, batch_size: int, options: dict):
        from . import generation

        self._generation = generation
        self.batch_size = batch_size
        self.plan = generation.GenerationPlan.build(
            model, batch_size=batch_size, prompt_tokens=int(options["prompt_tokens"]),
            new_tokens=int(options["new_tokens"]), options=options)
        self.parts = {"prefill": self.plan.prefill, "request": self.plan.request}
        self.primary = "request"
        self.phases = {"prefill": "prefill", "request": "decode"}

    def summarize(self, summaries: dict) -> dict:
        measured = dict(summaries["request"])
        measured.update(self._generation.summarize(self.plan, summaries["prefill"], summaries["request"]))
        measured["scenario"] = "generation"
        measured["batch_size"] = self.batch_size
        measured.setdefault("input_shape", {"input_ids": [self.batch_size, self.plan.prompt_tokens]})
        return measured


@dataclass
class _Subject:
    k: int
    workload: object
    samplers: dict
    rounds: list = field(default_factory=list)  # (latency ms, J per call) of the primary part
    inverse: bool = False  # a comparator: its comparison is baseline / it (see the module doc)


def compare(base_rounds: list, closing, var_rounds: list, plan: sequential.Plan | None = None,
            veto_reasons: list | tuple = (), *, inverse: bool = False) -> dict:
    """Per-round ratios of the variant to its bracketing baseline windows, their intervals under
    ``plan`` (one look, no between-run component without one) and the verdicts. ``inverse``: the
    rounds are a comparator's, and each round's ratio is baseline / comparator instead."""
    plan = plan or sequential.Plan()
    lat_ratios, en_ratios = [], []
    following = base_rounds[1:] + [closing]
    for r, (v_lat, v_en) in enumerate(var_rounds):
        b_lat, b_en = base_rounds[r]
        n_lat, n_en = following[r] if following[r] is not None else base_rounds[r]
        ref_lat = math.sqrt(b_lat * n_lat) if b_lat > 0 and n_lat > 0 else b_lat
        ref_en = math.sqrt(b_en * n_en) if b_en > 0 and n_en > 0 else b_en
        if ref_lat > 0:
            lat_ratios.append(v_lat / ref_lat)
        if ref_en > 0 and v_en > 0:
            en_ratios.append(v_en / ref_en)
    if inverse:
        lat_ratios = [1.0 / x for x in lat_ratios if x > 0]
        en_ratios = [1.0 / x for x in en_ratios]
    lat, en = plan.interval(lat_ratios), plan.interval(en_ratios)
    vetoed = bool(veto_reasons)
    basis = plan.basis(len(var_rounds))
    basis.update(energy_se_log=en.se_log, latency_se_log=lat.se_log)  # within-run standard errors
    return {"rounds": len(var_rounds), "latency_ratio": lat.ratio, "latency_ratio_ci95": lat.ci,
            "energy_ratio": en.ratio, "energy_ratio_ci95": en.ci,
            "latency_verdict": plan.verdict(lat.ci, vetoed), "verdict": plan.verdict(en.ci, vetoed),
            "veto_reasons": list(veto_reasons), "verdict_basis": basis, "stopped_because": None}


def stop_reason(entry: dict, target_rel_ci: float) -> str | None:
    """Why a comparison's rounds may stop now: its energy verdict is decided, or the part of its
    interval that more rounds can shrink is within the precision target; None while it is open."""
    if entry["verdict"] in sequential.DECISIVE:
        return "decisive"
    basis = entry["verdict_basis"]
    se, q = basis["energy_se_log"], basis["quantile"]
    if se is not None and q is not None and q * se <= target_rel_ci:
        return "precise"
    return None


class _Progress:
    """Monotonic percentages over the whole schedule, whatever round it stops at, and the time
    the measuring has left, from what it has measured so far (``eta_s``)."""

    def __init__(self, report, pct_start, pct_end, n_batch_sizes):
        self.report, self.start, self.end, self.n = report, pct_start, pct_end, max(n_batch_sizes, 1)
        self.window_s: list[float] = []  # how long each window took, measured
        self.warmup_s: list[float] = []  # how long each subject took to warm up at one batch size
        self.rounds_used: list[int] = []  # rounds each finished batch size took

    def at(self, bs_index, fraction):
        share = (self.end - self.start) / self.n
        return self.start + share * (bs_index + min(max(fraction, 0.0), 1.0))

    def eta_s(self, bs_index: int, r: int, j: int, n: int, parts: int, min_rounds: int) -> float | None:
        """Seconds of measuring left: the windows still due at this batch size and at the later
        ones, each as long as the windows measured so far, and the later batch sizes' warm-ups as
        long as those measured. Rounds a batch size will take: as many as the finished ones took
        (at least the minimum, plus the closing window); a comparison that is decided early ends
        sooner. None before the first window."""
        if not self.window_s:
            return None
        window = statistics.fmean(self.window_s[-50:])
        rounds = max([min_rounds] + self.rounds_used) + 1
        here = max(0, (rounds - r) * n - j) * parts * window
        warm = statistics.fmean(self.warmup_s) * n if self.warmup_s else 0.0
        later = (self.n - bs_index - 1) * (rounds * n * parts * window + warm)
        return here + later


def measure_paired(models: dict, variants: list, batch_sizes: list, *, make_workload, device, meter, idle_w,
                   options: dict, report, pct_start: float, pct_end: float, comparators=(),
                   timing: dict | None = None) -> dict | None:
    """Measure every model at every batch size in paired rounds; fill each variant's
    ``measurements`` and ``comparison``; return the baseline's drift entry (None without one).
    ``comparators``: keys of ``models`` measured like variants whose comparison is baseline / it.
    ``timing``: where the seconds spent warming up and inside windows are added up (run_timing)."""
    spent = timing if timing is not None else new_timing()
    base_k = next((k for k in sorted(models) if variants[k]["recipe"] == "baseline"), None)
    progress = _Progress(report, pct_start, pct_end, len(batch_sizes))
    drift_rows = []
    for i, bs in enumerate(batch_sizes):
        subjects = _prepare(models, variants, bs, make_workload, device, meter, idle_w, options,
                            lambda k, text: progress.report("warm-up", progress.at(i, 0.0), text, k, batch_size=bs),
                            spent, progress.warmup_s)
        for s in subjects:
            s.inverse = s.k in comparators
        if not subjects:
            continue
        schedule = _Schedule.of(subjects, options, device)
        base = next((s for s in subjects if s.k == base_k), None)
        stopped = _run_rounds(subjects, variants, bs, i, base, schedule, progress)
        paired = base is not None and len(subjects) > 1 and variants[base_k]["status"] == "succeeded"
        for s in sorted(subjects, key=lambda s: s is not base):  # the baseline's measurement first
            if variants[s.k]["status"] != "succeeded":
                continue
            measured = s.workload.summarize({name: sm.summary() for name, sm in s.samplers.items()})
            spent["windows_s"] += sum(sm.spent_s for sm in s.samplers.values())
            # the paired baseline's last window closes the last round; it opens none
            measured["rounds"] = len(s.rounds) - 1 if paired and s is base else len(s.rounds)
            measured["quality_grade"], measured["quality_reasons"] = quality.grade_measurement(measured)
            variants[s.k]["measurements"].append(measured)
            if paired and s is not base:
                variants[s.k]["comparison"].append(
                    _comparison(s, base, variants[base_k]["measurements"][-1], measured, variants[s.k]["recipe"],
                                schedule, stopped.get(s.k), bs))
        if paired and base.rounds:
            drift_rows.append(_drift_row(bs, base.rounds[0], base.rounds[-1]))
        progress.rounds_used.append(max(len(s.rounds) for s in subjects))
    report("measuring", pct_end, "measurements finished", 0)
    if base_k is None or not drift_rows:
        return None
    worst = max((abs(r[key]) for r in drift_rows for key in ("latency_rel_change", "energy_rel_change")
                 if r[key] is not None), default=None)
    return {"recipe": "baseline", "per_batch_size": drift_rows, "max_abs_rel_change": worst,
            "method": "first vs last paired round"}


def _comparison(s, base, base_m: dict, measured: dict, recipe: str, schedule, stopped_because, bs) -> dict:
    """The comparison entry of variant ``s``: its rounds against the baseline windows that
    bracket them, vetoed by what breaks either side's measurement."""
    vetoes = ([f"baseline: {r}" for r in quality.veto_reasons(base_m)]
              + [f"{recipe}: {r}" for r in quality.veto_reasons(measured)])
    n = min(len(s.rounds), len(base.rounds))
    closing = base.rounds[n] if n < len(base.rounds) else None
    entry = compare(base.rounds[:n], closing, s.rounds[:n], schedule.plan, vetoes, inverse=s.inverse)
    entry["stopped_because"] = stopped_because
    entry["quality_grade"], entry["quality_reasons"] = quality.grade_ratio(
        entry["energy_ratio_ci95"], measured["quality_grade"], base_m["quality_grade"])
    entry.update(batch_size=bs, latency_key=_latency_key(measured), energy_key=_energy_key(measured))
    return entry


def _latency_key(measured: dict) -> str:
    return "latency_ms_mean"


def _energy_key(measured: dict) -> str:
    return "energy_j_per_request" if measured.get("scenario") == "generation" else "energy_j_per_inference"


def new_timing() -> dict:
    """What a run spends warming up and inside measurement windows (the result's run_timing)."""
    return {"warmup_s": 0.0, "warmup_calls": 0, "windows_s": 0.0, "warmups_unstable": []}


def _prepare(models, variants, bs, make_workload, device, meter, idle_w, options, warming, spent,
             warmed: list) -> list[_Subject]:
    subjects = []
    for k in sorted(models):
        doc = variants[k]
        if doc["status"] != "succeeded":
            continue
        warming(k, f"warm-up: {doc['recipe']} at batch size {bs} (until its call time is stable)")
        try:
            workload = make_workload(models[k], bs)
            samplers = {name: timing.Sampler(fn, batch_size=bs, device=device, meter=meter, idle_power_w=idle_w,
                                             options=options)
                        for name, fn in workload.parts.items()}
            for name, sampler in samplers.items():
                sampler.warmup()
                info = sampler.warmup_info
                warmed.append(info["s"])
                spent["warmup_s"] += info["s"]
                spent["warmup_calls"] += info["calls"]
                if not info["stable"]:
                    phase = "" if workload.phases[name] == "forward" else f" ({workload.phases[name]})"
                    spent["warmups_unstable"].append(f"{doc['recipe']} at batch size {bs}{phase}: "
                                                      f"{info['calls']} calls in {info['s']:.1f} s")
        except Exception as exc:
            _fail_variant(doc, bs, exc)
            continue
        subjects.append(_Subject(k, workload, samplers))
    return subjects


def _fail_variant(doc, bs, exc) -> None:
    doc["status"] = "failed"
    message = str(exc) if getattr(exc, "user_facing", False) else f"{type(exc).__name__}: {exc}"
    doc["error"] = f"measuring at batch size {bs} failed: {message}"


@dataclass(frozen=True)
class _Schedule:
    """The rounds one batch size may take, and how their intervals are judged."""

    min_rounds: int
    max_rounds: int
    target: float  # precision target: the within-run half-width of the log ratio (target_rel_ci)
    plan: sequential.Plan

    @classmethod
    def of(cls, subjects: list, options: dict, device: str) -> _Schedule:
        min_rounds = max(1, int(options.get("rounds") or DEFAULT_MIN_ROUNDS))
        first = next(iter(subjects[0].samplers.values()))
        per_round_s = first.window_s * WINDOWS_PER_ROUND
        max_rounds = max(min_rounds, math.ceil(first.time_cap_s / per_round_s)) if per_round_s > 0 else min_rounds
        plan = sequential.Plan.for_run(device=device, options=options, min_rounds=min_rounds, max_rounds=max_rounds)
        return cls(min_rounds, max_rounds, first.target, plan)


def _run_rounds(subjects, variants, bs, bs_index, base, schedule: _Schedule, progress) -> dict:
    """The rounds of one batch size; returns {variant k: why its comparison stopped}."""
    others = [s for s in subjects if s is not base]
    if base is None or not others:
        _run_unpaired(subjects, variants, bs, bs_index, schedule, progress, start=0)
        return {}
    open_, stopped = list(others), {}
    for r in range(schedule.max_rounds + 1):
        # The baseline's window opens round r and closes round r - 1: every open variant's rounds
        # are bracketed now, so their intervals can be looked at.
        if not _measure(base, variants, bs, bs_index, r, 0, len(subjects), schedule, progress):
            _run_unpaired(open_, variants, bs, bs_index, schedule, progress, start=r)
            return stopped
        open_ = [s for s in open_ if variants[s.k]["status"] == "succeeded"]
        if r >= schedule.min_rounds:
            for s in list(open_):
                why = _why_stop(s, base, r, schedule)
                if why:
                    stopped[s.k] = why
                    open_.remove(s)
        if not open_:
            break
        for j, s in enumerate(open_, start=1):
            _measure(s, variants, bs, bs_index, r, j, len(subjects), schedule, progress)
    return stopped


def _why_stop(s: _Subject, base: _Subject, r: int, schedule: _Schedule) -> str | None:
    """After the baseline's window of round r: why variant ``s`` (r rounds) needs no more."""
    entry = compare(base.rounds[:r], base.rounds[r], s.rounds[:r], schedule.plan, inverse=s.inverse)
    why = stop_reason(entry, schedule.target)
    if why:
        return why
    if any(sm.capped() for sm in s.samplers.values()):
        return "time cap"
    return "max rounds" if r >= schedule.max_rounds else None


def _run_unpaired(subjects, variants, bs, bs_index, schedule: _Schedule, progress, *, start: int) -> None:
    """Rounds without a comparison to decide: each sampler runs to its own interval target."""
    for r in range(start, schedule.max_rounds):
        for j, s in enumerate(subjects):
            _measure(s, variants, bs, bs_index, r, j, len(subjects), schedule, progress)
        live = [s for s in subjects if variants[s.k]["status"] == "succeeded"]
        if r + 1 >= schedule.min_rounds and all(
                all(sm.enough(schedule.min_rounds) or sm.capped() for sm in s.samplers.values()) for s in live):
            break


def _measure(s: _Subject, variants, bs, bs_index, r, j, n, schedule: _Schedule, progress) -> bool:
    """One round's window(s) of subject ``s`` (the j-th of n); False when it fails or had failed."""
    doc = variants[s.k]
    if doc["status"] != "succeeded":
        return False
    passes = schedule.max_rounds + 1
    for name, sampler in s.samplers.items():
        progress.report(
            "measuring", progress.at(bs_index, (r * n + j) / (passes * n)),
            (f"round {r + 1}" if r < schedule.max_rounds else "closing window") + f": {doc['recipe']} at batch size {bs}"
            + ("" if s.workload.phases[name] == "forward" else f" ({s.workload.phases[name]})"),
            s.k, batch_size=bs, phase=s.workload.phases[name], round_no=min(r + 1, schedule.max_rounds),
            n_rounds=schedule.max_rounds,
            eta_s=progress.eta_s(bs_index, r, j, n, len(s.samplers), schedule.min_rounds))
        started = time.perf_counter()
        try:
            window = [sampler.window() for _ in range(WINDOWS_PER_ROUND)]
        except Exception as exc:
            _fail_variant(doc, bs, exc)
            return False
        progress.window_s.append((time.perf_counter() - started) / WINDOWS_PER_ROUND)
        if name == s.workload.primary:
            s.rounds.append((statistics.fmean(w[0] for w in window), statistics.fmean(w[1] for w in window)))
    return True


def _drift_row(bs: int, first: tuple, last: tuple) -> dict:
    def rel(a, b):
        return (a - b) / b if b else None

    return {
        "batch_size": bs,
        "latency_ms_mean_first": first[0], "latency_ms_mean_last": last[0],
        "latency_rel_change": rel(last[0], first[0]),
        "energy_j_per_inference_first": first[1], "energy_j_per_inference_last": last[1],
        "energy_rel_change": rel(last[1], first[1]),
    }
