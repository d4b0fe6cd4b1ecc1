"""Variants served at each load level in paired, interleaved rounds (issue 20).

The same method as ``rounds.py``, with one serving of the whole workload (``serving.serve_pass``)
as a subject's window: per load level, round r serves the workload with the baseline, then with
each open variant; the baseline's pass that opens round r + 1 also closes round r, so every
variant's pass is bracketed by two of the baseline's. Each round's ratio of a variant to the
geometric mean of its bracketing baseline passes, for

- energy: J per output token over the pass's steady window (``energy_j_per_output_token``);
- latency: the median time per output token of the requests completed in the window
  (``tpot_ms_p50``; ``e2e_ms_p50`` for a workload of one-token requests),

gives ``energy_ratio_ci95`` and ``latency_ratio_ci95`` per level from ``rounds.compare`` (the
t-interval on the log ratios, widened for the looks and the between-run spread,
``sequential.py``) and the verdicts. A comparison stops after ``rounds`` rounds (the minimum)
when it is decided or precise, or at ``serving_max_rounds``. Each subject's figures at a level
pool all its passes (``figures.pooled_figures``).

A variant whose pass fails (the manager fails, a request comes back short, the level times out,
memory runs out) fails at that level only (``serving_failed``: the level and why); its other
levels and the other variants go on. A variant no level could serve has failed. The first pass of each subject at each level
serves ``warmup_requests`` requests first (not measured); later passes rely on the ramp-up,
which the steady window excludes anyway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .. import quality, rounds, sequential
from .load import level_document, level_key, level_label, serve_pass
from .figures import Slo

DEFAULT_MAX_ROUNDS = 6


@dataclass
class _Subject:
    k: int
    model: object
    passes: list = field(default_factory=list)
    infos: list = field(default_factory=list)
    rounds: list = field(default_factory=list)  # (latency ms, J per output token) per pass
    inverse: bool = False
    failed: str | None = None  # why its pass at this level failed: the level fails, not the variant


def round_value(figures: dict) -> tuple[float, float]:
    """(latency, energy) of one pass as the rounds compare them (see the module doc)."""
    latency = figures.get("tpot_ms_p50")
    if latency is None:
        latency = figures.get("e2e_ms_p50") or 0.0
    return float(latency), float(figures.get("energy_j_per_output_token") or 0.0)


def latency_key(figures: dict) -> str:
    return "tpot_ms_p50" if figures.get("tpot_ms_p50") is not None else "e2e_ms_p50"


def _rounds_bounds(options: dict) -> tuple[int, int]:
    low = max(1, int(options.get("rounds") or rounds.DEFAULT_MIN_ROUNDS))
    high = max(low, int(options.get("serving_max_rounds") or DEFAULT_MAX_ROUNDS))
    return low, high


def measure_serving_paired(models: dict, variants: list, prompts, max_news, levels: list[dict], *, meter,
                           device: str, slo: Slo, options: dict, report, pct_start: float, pct_end: float,
                           timing: dict | None = None) -> None:
    """Serve every model at every level in paired rounds; fill each variant's ``serving`` (one
    figures dict per level) and ``serving_comparison`` (one paired entry per level). ``timing``:
    where the warm-up requests' seconds and the steady windows' seconds are added up."""
    timing = timing if timing is not None else {"warmup_s": 0.0, "warmup_calls": 0, "windows_s": 0.0}
    base_k = next((k for k in sorted(models) if variants[k]["recipe"] == "baseline"), None)
    min_rounds, max_rounds = _rounds_bounds(options)
    plan = sequential.Plan.for_run(device=device, options=options, min_rounds=min_rounds, max_rounds=max_rounds)
    span = (pct_end - pct_start) / max(len(levels), 1)
    eta = _Eta(len(levels), min_rounds)
    eta.timing = timing
    for i, level in enumerate(levels):
        subjects = [_Subject(k, models[k]) for k in sorted(models)
                    if variants[k]["status"] == "succeeded"]
        base = next((s for s in subjects if s.k == base_k), None)
        progress = _LevelProgress(report, pct_start + span * i, span, len(subjects), max_rounds, level, eta, i)
        stopped = _run_level(subjects, base, variants, level, plan, min_rounds, max_rounds, prompts, max_news,
                             meter, slo, options, progress)
        eta.level_done(max((len(s.passes) for s in subjects), default=0))
        base_doc = None
        for s in sorted(subjects, key=lambda s: s is not base):
            if s.failed is not None:
                key = level_key(level)
                variants[s.k].setdefault("serving_failed", []).append({key: level[key], "error": s.failed[:2000]})
                continue
            if not s.passes:
                continue
            doc = level_document(level, s.passes, s.infos, slo=slo, meter=meter, options=options)
            doc["device"] = device
            doc["rounds"] = len(s.passes)
            doc["round_energy_j_per_output_token"] = [e for _, e in s.rounds]
            doc["round_latency_ms"] = [lat for lat, _ in s.rounds]
            doc["quality_grade"], doc["quality_reasons"] = _grade(doc)
            variants[s.k].setdefault("serving", []).append(doc)
            if s is base:
                base_doc = doc
            elif base is not None and base_doc is not None:
                variants[s.k].setdefault("serving_comparison", []).append(
                    _comparison(s, base, level, plan, stopped.get(s.k), doc, base_doc, variants[s.k]["recipe"]))
    for k in models:  # a variant that no level could serve has failed, with every level's reason
        doc = variants[k]
        if doc["status"] == "succeeded" and not doc.get("serving") and doc.get("serving_failed"):
            doc["status"] = "failed"
            doc["error"] = "; ".join(f["error"] for f in doc["serving_failed"])[:8000]
    report("measuring", pct_end, "serving measurements finished", 0)


def _grade(doc: dict) -> tuple[str, list[str]]:
    grade, reasons = "A", []
    if "few-requests-in-window" in doc["flags"]:
        grade, reasons = "C", [f"only {doc['steady_requests']} requests completed in the steady windows"]
    if doc.get("energy_estimated"):
        grade = max(grade, "C")
        reasons.append(f"energy is estimated ({doc['energy_method']})")
    return grade, reasons


def _comparison(s, base, level, plan, stopped_because, doc, base_doc, recipe) -> dict:
    n = min(len(s.rounds), len(base.rounds))
    closing = base.rounds[n] if n < len(base.rounds) else None
    vetoes = ([f"baseline: {f}" for f in base_doc["flags"] if f.startswith("few-")]
              + [f"{recipe}: {f}" for f in doc["flags"] if f.startswith("few-")])
    entry = rounds.compare(base.rounds[:n], closing, s.rounds[:n], plan, vetoes, inverse=s.inverse)
    entry["stopped_because"] = stopped_because
    entry["quality_grade"], entry["quality_reasons"] = quality.grade_ratio(
        entry["energy_ratio_ci95"], doc["quality_grade"], base_doc["quality_grade"])
    key = level_key(level)
    entry.update({key: level[key], "latency_key": latency_key(doc), "energy_key": "energy_j_per_output_token"})
    return entry


class _Eta:
    """Seconds of serving left, from the passes measured so far: the passes still due at this
    level and the later ones (as many rounds as the finished levels took, at least the minimum
    plus the closing pass), each as long as this level's passes so far, or the last level's."""

    def __init__(self, n_levels: int, min_rounds: int):
        self.n_levels, self.min_rounds = n_levels, min_rounds
        self.current: list[float] = []
        self.last: list[float] = []
        self.rounds_used: list[int] = []

    def passed(self, seconds: float) -> None:
        self.current.append(seconds)

    def level_done(self, rounds: int) -> None:
        self.rounds_used.append(rounds)
        self.last, self.current = self.current or self.last, []

    def seconds(self, level_index: int, r: int, j: int, n: int) -> float | None:
        known = self.current or self.last
        if not known:
            return None
        one = sum(known) / len(known)
        rounds = max([self.min_rounds + 1] + self.rounds_used)
        return (max(0, (rounds - r) * n - j) + (self.n_levels - level_index - 1) * rounds * n) * one


class _LevelProgress:
    def __init__(self, report, start, span, n_subjects, max_rounds, level, eta: _Eta, level_index: int):
        self.report, self.start, self.span = report, start, span
        self.n, self.max_rounds, self.level = max(n_subjects, 1), max_rounds, level
        self.eta, self.level_index = eta, level_index

    def __call__(self, r: int, j: int, s: _Subject, recipe: str, warm: bool) -> None:
        fraction = min(1.0, (r * self.n + j) / ((self.max_rounds + 1) * self.n))
        what = "warm-up and " if warm else ""
        self.report("warm-up" if warm else "measuring", self.start + self.span * fraction,
                    f"round {min(r + 1, self.max_rounds)}: {what}serving {recipe} at {level_label(self.level)}",
                    s.k, phase="serving", round_no=min(r + 1, self.max_rounds), n_rounds=self.max_rounds,
                    eta_s=self.eta.seconds(self.level_index, r, j, self.n))


def _serve(s: _Subject, variants, level, prompts, max_news, meter, slo, options, progress, r, j) -> bool:
    doc = variants[s.k]
    if doc["status"] != "succeeded" or s.failed is not None:
        return False
    progress(r, j, s, doc["recipe"], warm=not s.passes)
    started = time.perf_counter()
    try:
        one, info = serve_pass(s.model.module, prompts, max_news, level, meter=meter, options=options,
                               warm=None if not s.passes else 0)
    except Exception as exc:  # this level fails for this variant; its other levels and the others go on
        message = str(exc) if getattr(exc, "user_facing", False) else f"{type(exc).__name__}: {exc}"
        s.failed = f"serving at {level_label(level)} failed: {message}"
        return False
    progress.eta.passed(time.perf_counter() - started)
    progress.eta.timing["warmup_s"] += info.get("warmup_s") or 0.0
    progress.eta.timing["warmup_calls"] += info.get("warmup_requests") or 0
    progress.eta.timing["windows_s"] += one.end - one.start
    s.passes.append(one)
    s.infos.append(info)
    figures = level_document(level, [one], [info], slo=slo, meter=meter, options=options)
    s.rounds.append(round_value(figures))
    return True


def _run_level(subjects, base, variants, level, plan, min_rounds, max_rounds, prompts, max_news, meter, slo,
               options, progress) -> dict:
    """The rounds of one level; returns {variant k: why its comparison stopped}."""
    args = (level, prompts, max_news, meter, slo, options, progress)
    others = [s for s in subjects if s is not base]
    if base is None or not others:
        for r in range(min_rounds):
            for j, s in enumerate(subjects):
                _serve(s, variants, *args, r, j)
        return {}
    open_, stopped = list(others), {}
    for r in range(max_rounds + 1):
        if not _serve(base, variants, *args, r, 0):
            if r == 0:  # the baseline cannot be served at this level: the others are measured unpaired
                for unpaired in range(min_rounds):
                    for j, s in enumerate(open_, start=1):
                        _serve(s, variants, *args, unpaired, j)
            return stopped  # without the baseline nothing more can be paired
        open_ = [s for s in open_ if s.failed is None]
        if r >= min_rounds:
            for s in list(open_):
                entry = rounds.compare(base.rounds[:r], base.rounds[r], s.rounds[:r], plan, inverse=s.inverse)
                why = rounds.stop_reason(entry, float(options.get("target_rel_ci") or 0.02))
                if why or r >= max_rounds:
                    stopped[s.k] = why or "max rounds"
                    open_.remove(s)
        if not open_:
            break
        for j, s in enumerate(open_, start=1):
            _serve(s, variants, *args, r, j)
    return stopped
