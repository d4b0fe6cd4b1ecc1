"""Paired, interleaved measurement rounds: baseline, A, B, ..., baseline, A, B, ... per batch size.

Absolute figures from one run drift with the machine (thermal state, clock boost, other
tenants): five runs of the same model on a shared host gave batch-1 means ten times apart, each
with a tight interval. What a comparison needs is robust to that: in every round each variant
gets one window right after the baseline's, so both see the same state of the machine, and the
ratio variant / baseline of that round cancels what they share. The interval of the ratio comes
from the spread of the per-round ratios (a t-interval on their logarithms), so it covers the
run-to-run variation, not only the noise of a few seconds.

Each variant's ratio in round r divides by the geometric mean of the baseline's windows in
rounds r and r + 1 (one closing baseline window after the last round): a linear drift during
the round then cancels as well.

Rounds continue until every variant's interval of the mean is within the target (after
``min_rounds``) or the time cap of one measurement is spent on each.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from . import quality, timing

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


def _log_ratio_ci(ratios: list[float]) -> tuple[float, list[float] | None]:
    logs = [math.log(r) for r in ratios if r > 0]
    if not logs:
        return math.nan, None
    centre = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(centre), None
    half = timing.ci95_half_width(logs)
    return math.exp(centre), [math.exp(centre - half), math.exp(centre + half)]


def _verdict(ci: list[float] | None) -> str:
    if ci is None or ci[0] <= 1.0 <= ci[1]:
        return "no measurable difference"
    return "lower" if ci[1] < 1.0 else "higher"


def compare(base_rounds: list, closing, var_rounds: list) -> dict:
    """Per-round ratios of the variant to its bracketing baseline windows, and their intervals."""
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
    lat, lat_ci = _log_ratio_ci(lat_ratios)
    en, en_ci = _log_ratio_ci(en_ratios)
    return {"rounds": len(var_rounds), "latency_ratio": lat, "latency_ratio_ci95": lat_ci,
            "energy_ratio": en, "energy_ratio_ci95": en_ci,
            "latency_verdict": _verdict(lat_ci), "verdict": _verdict(en_ci)}


class _Progress:
    """Monotonic percentages over the whole schedule, whatever round it stops at."""

    def __init__(self, report, pct_start, pct_end, n_batch_sizes):
        self.report, self.start, self.end, self.n = report, pct_start, pct_end, max(n_batch_sizes, 1)

    def at(self, bs_index, fraction):
        share = (self.end - self.start) / self.n
        return self.start + share * (bs_index + min(max(fraction, 0.0), 1.0))


def measure_paired(models: dict, variants: list, batch_sizes: list, *, make_workload, device, meter, idle_w,
                   options: dict, report, pct_start: float, pct_end: float) -> dict | None:
    """Measure every model at every batch size in paired rounds; fill each variant's
    ``measurements`` and ``comparison``; return the baseline's drift entry (None without one)."""
    base_k = next((k for k in sorted(models) if variants[k]["recipe"] == "baseline"), None)
    progress = _Progress(report, pct_start, pct_end, len(batch_sizes))
    drift_rows = []
    for i, bs in enumerate(batch_sizes):
        subjects = _prepare(models, variants, bs, make_workload, device, meter, idle_w, options)
        if not subjects:
            continue
        _run_rounds(subjects, variants, bs, i, base_k, options, progress)
        base = next((s for s in subjects if s.k == base_k), None)
        closing = _closing_window(base, variants) if base is not None and len(subjects) > 1 else None
        for s in subjects:
            if variants[s.k]["status"] != "succeeded":
                continue
            measured = s.workload.summarize({name: sm.summary() for name, sm in s.samplers.items()})
            measured["rounds"] = len(s.rounds)
            measured["quality_grade"], measured["quality_reasons"] = quality.grade_measurement(measured)
            variants[s.k]["measurements"].append(measured)
            if base is not None and s is not base and variants[base_k]["status"] == "succeeded":
                n = min(len(s.rounds), len(base.rounds))
                entry = compare(base.rounds[:n], closing if n == len(base.rounds) else base.rounds[n]
                                if n < len(base.rounds) else None, s.rounds[:n])
                base_m = variants[base_k]["measurements"][-1]
                entry["quality_grade"], entry["quality_reasons"] = quality.grade_ratio(
                    entry["energy_ratio_ci95"], measured["quality_grade"], base_m["quality_grade"])
                entry.update(batch_size=bs, latency_key=_latency_key(measured), energy_key=_energy_key(measured))
                variants[s.k]["comparison"].append(entry)
        if base is not None and variants[base_k]["status"] == "succeeded" and base.rounds:
            last = closing if closing is not None else base.rounds[-1]
            drift_rows.append(_drift_row(bs, base.rounds[0], last))
    report("measuring", pct_end, "measurements finished", 0)
    if base_k is None or not drift_rows:
        return None
    worst = max((abs(r[key]) for r in drift_rows for key in ("latency_rel_change", "energy_rel_change")
                 if r[key] is not None), default=None)
    return {"recipe": "baseline", "per_batch_size": drift_rows, "max_abs_rel_change": worst,
            "method": "first vs last paired round"}


def _latency_key(measured: dict) -> str:
    return "latency_ms_mean"


def _energy_key(measured: dict) -> str:
    return "energy_j_per_request" if measured.get("scenario") == "generation" else "energy_j_per_inference"


def _prepare(models, variants, bs, make_workload, device, meter, idle_w, options) -> list[_Subject]:
    subjects = []
    for k in sorted(models):
        doc = variants[k]
        if doc["status"] != "succeeded":
            continue
        try:
            workload = make_workload(models[k], bs)
            samplers = {name: timing.Sampler(fn, batch_size=bs, device=device, meter=meter, idle_power_w=idle_w,
                                             options=options)
                        for name, fn in workload.parts.items()}
            for sampler in samplers.values():
                sampler.warmup()
        except Exception as exc:
            _fail_variant(doc, bs, exc)
            continue
        subjects.append(_Subject(k, workload, samplers))
    return subjects


def _fail_variant(doc, bs, exc) -> None:
    doc["status"] = "failed"
    message = str(exc) if getattr(exc, "user_facing", False) else f"{type(exc).__name__}: {exc}"
    doc["error"] = f"measuring at batch size {bs} failed: {message}"


def _run_rounds(subjects, variants, bs, bs_index, base_k, options, progress) -> None:
    min_rounds = max(1, int(options.get("rounds") or DEFAULT_MIN_ROUNDS))
    first = next(iter(subjects[0].samplers.values()))
    per_round_s = first.window_s * WINDOWS_PER_ROUND
    max_rounds = max(min_rounds, math.ceil(first.time_cap_s / per_round_s)) if per_round_s > 0 else min_rounds
    n = len(subjects)
    for r in range(max_rounds):
        for j, s in enumerate(subjects):
            doc = variants[s.k]
            if doc["status"] != "succeeded":
                continue
            for name, sampler in s.samplers.items():
                progress.report(
                    "measuring", progress.at(bs_index, (r * n + j) / (max_rounds * n)),
                    f"round {r + 1}: {doc['recipe']} at batch size {bs}"
                    + ("" if s.workload.phases[name] == "forward" else f" ({s.workload.phases[name]})"),
                    s.k, batch_size=bs, phase=s.workload.phases[name], round_no=r + 1, n_rounds=max_rounds)
                try:
                    window = [sampler.window() for _ in range(WINDOWS_PER_ROUND)]
                except Exception as exc:
                    _fail_variant(doc, bs, exc)
                    break
                if name == s.workload.primary:
                    s.rounds.append((statistics.fmean(w[0] for w in window), statistics.fmean(w[1] for w in window)))
        live = [s for s in subjects if variants[s.k]["status"] == "succeeded"]
        if r + 1 >= min_rounds and all(all(sm.enough(min_rounds) or sm.capped() for sm in s.samplers.values())
                                       for s in live):
            break


def _closing_window(base: _Subject, variants) -> tuple | None:
    """One more baseline window after the last round, so the last round is bracketed too."""
    sampler = base.samplers[base.workload.primary]  # a generation baseline repeats the request only
    try:
        return sampler.window()
    except Exception:
        return None


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
