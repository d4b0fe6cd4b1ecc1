"""Repeated paired audits of one model: how far the verdicts hold from run to run.

Profiles a model N times (baseline, prune-unstructured:0.5, int8-dynamic; with --aa also the
baseline against itself) and prints, per run and variant, the paired energy ratio, its interval,
the verdict, the rounds taken and why they stopped; then, per variant over the N runs:

- the spread of the ratios (min, median, max, standard deviation of the log ratio);
- the share of the runs' intervals that hold the median of all runs (target: at least 9 of 10);
- the between-run component tau (log scale) that would make at least 9 of 10 hold, given each
  run's within-run standard error and quantile (``verdict_basis``): the figure
  workers/engine/data/between_run.csv records per device class;
- how often each verdict was given: for a variant doing the baseline's work (A/A: the baseline
  against itself, or masked pruning, whose dense work is the same) any "lower" or "higher" is a
  false claim; for int8 "lower" is the real saving found;
- the paired latency interval's width against the unpaired one from the same windows.

    .venv/bin/python bench/paired.py [--runs 10] [--aa] [--calibrate] [--model PATH] [--burners 2]

--calibrate measures the within-run intervals alone (between_run_rel 0) and prints the CSV row
for between_run.csv; without it the engine's own between-run component is used, and the share
of intervals holding the median is what an audit's verdicts would get.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.engine.api import profile  # noqa: E402
from workers.engine.recipes import RECIPES, Recipe  # noqa: E402
from workers.engine.timing import t975  # noqa: E402

SAME = "same-model"  # the baseline against itself
HOLD_TARGET = 0.9


def tiny_bert(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=2000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=128)
    BertModel(config).eval().save_pretrained(folder, safe_serialization=True)
    return folder


def unpaired_ci(base: list[float], var: list[float]) -> tuple[float, float, float]:
    """Ratio of the means with a 95% interval from each side's own window means."""
    mb, mv = statistics.fmean(base), statistics.fmean(var)
    sb = statistics.stdev(base) / mb / math.sqrt(len(base))
    sv = statistics.stdev(var) / mv / math.sqrt(len(var))
    half = t975(min(len(base), len(var)) - 1) * math.sqrt(sb ** 2 + sv ** 2)
    r = mv / mb
    return r, r * math.exp(-half), r * math.exp(half)


def overlap_share(intervals: list[tuple[float, float]]) -> float:
    pairs = list(itertools.combinations(intervals, 2))
    return sum(1 for a, b in pairs if a[0] <= b[1] and b[0] <= a[1]) / len(pairs) if pairs else 1.0


def tau_needed(log_ratio: float, centre: float, se: float, q: float) -> float:
    """The smallest between-run component for which q * sqrt(se^2 + tau^2) reaches the centre."""
    return math.sqrt(max(0.0, ((log_ratio - centre) / q) ** 2 - se ** 2))


def holds(c: dict, centre: float, tau: float) -> bool:
    """Whether run c's interval, rebuilt with between-run component tau, holds ``centre``."""
    half = c["q"] * math.sqrt(c["se"] ** 2 + tau ** 2)
    return abs(c["log"] - centre) <= half


def summarize(recipe: str, runs: list[dict], tau_used: float) -> tuple[str, float | None]:
    """The lines for one variant over all runs, and the tau that makes 9 of 10 intervals hold."""
    logs = [c["log"] for c in runs]
    centre = statistics.median(logs)
    reported = sum(1 for c in runs if c["lo"] <= math.exp(centre) <= c["hi"]) / len(runs)
    ok = [c for c in runs if c["se"] is not None and c["q"] is not None]
    needed = sorted(tau_needed(c["log"], centre, c["se"], c["q"]) for c in ok)
    tau = needed[max(0, math.ceil(HOLD_TARGET * len(needed)) - 1)] if needed else None
    verdicts = {v: sum(1 for c in runs if c["verdict"] == v) for v in
                ("lower", "higher", "no measurable difference", "inconclusive")}
    sd = statistics.stdev(logs) if len(logs) > 1 else 0.0
    lines = [
        f"{recipe}: ratio min {min(math.exp(x) for x in logs):.3f} median {math.exp(centre):.3f} "
        f"max {max(math.exp(x) for x in logs):.3f}, sd of log ratio {sd:.4f}, "
        f"rounds median {statistics.median(c['rounds'] for c in runs):g}",
        f"  intervals holding the median of all runs: {reported:.0%} as reported (between-run {tau_used:g}); "
        f"tau for >= {HOLD_TARGET:.0%}: {tau:.4f}" if tau is not None else "  no intervals",
        "  verdicts: " + ", ".join(f"{v} {n}/{len(runs)}" for v, n in verdicts.items() if n),
        "  stopped: " + ", ".join(f"{k} {n}" for k, n in sorted(
            {c["stopped"]: sum(1 for d in runs if d["stopped"] == c["stopped"]) for c in runs}.items())),
    ]
    return "\n".join(lines), tau


def _burn(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def run_audits(args, model: Path) -> tuple[dict, dict, float]:
    recipes = ["baseline", *([SAME] if args.aa else []), "prune-unstructured:0.5", "int8-dynamic"]
    options = {"window_s": args.window, "time_cap_s": args.cap, "idle_s": 0.5, "threads": args.threads,
               "rounds": args.rounds, "fidelity_samples": 4, "prompt_tokens": args.prompt_tokens,
               "new_tokens": args.new_tokens}
    if args.calibrate:
        options["between_run_rel"] = 0.0
    per_variant: dict[str, list] = {r: [] for r in recipes[1:]}
    unpaired: dict[str, list] = {r: [] for r in recipes[1:]}
    tau_used = 0.0
    for run in range(args.runs):
        started = time.perf_counter()
        doc = profile(model, device=args.device, batch_sizes=[args.batch_size], seq_len=args.seq_len,
                      recipes=recipes, options=options)
        base = doc["variants"][0]["measurements"][0]
        print(f"run {run + 1}: {time.perf_counter() - started:.1f} s, baseline {base['latency_ms_mean']:.2f} ms "
              f"(grade {base['quality_grade']})", flush=True)
        for v in doc["variants"][1:]:
            if v["status"] != "succeeded":
                print(f"  {v['recipe']}: {v['status']} {v['error']}")
                continue
            c = v["comparison"][0]
            if not c["energy_ratio_ci95"]:
                print(f"  {v['recipe']}: no interval ({c['rounds']} rounds)")
                continue
            lo, hi = c["energy_ratio_ci95"]
            basis = c["verdict_basis"]
            tau_used = basis["between_run_rel"]
            per_variant[v["recipe"]].append({
                "log": math.log(c["energy_ratio"]), "lo": lo, "hi": hi, "se": basis["energy_se_log"],
                "q": basis["quantile"], "verdict": c["verdict"], "rounds": c["rounds"],
                "stopped": c["stopped_because"]})
            u = unpaired_ci(base["window_means_ms"], v["measurements"][0]["window_means_ms"])
            unpaired[v["recipe"]].append((c["latency_ratio_ci95"], u))
            print(f"  {v['recipe']:<24} energy x{c['energy_ratio']:.3f} [{lo:.3f}, {hi:.3f}] {c['verdict']} "
                  f"({c['rounds']} rounds, {c['stopped_because']}, grade {c['quality_grade']}); latency paired "
                  f"[{c['latency_ratio_ci95'][0]:.3f}, {c['latency_ratio_ci95'][1]:.3f}] unpaired "
                  f"[{u[1]:.3f}, {u[2]:.3f}]", flush=True)
    return per_variant, unpaired, tau_used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", "--repeats", type=int, default=10, help="audits of the same model")
    parser.add_argument("--aa", action="store_true", help="also compare the baseline against itself (A/A)")
    parser.add_argument("--calibrate", action="store_true",
                        help="within-run intervals only (between_run_rel 0); print the between_run.csv row")
    parser.add_argument("--model", type=Path, help="a model folder (default: a small BERT built here)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--cap", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="minimum paired rounds")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt-tokens", type=int, default=64, help="generation models: prompt length")
    parser.add_argument("--new-tokens", type=int, default=32, help="generation models: tokens generated")
    parser.add_argument("--burners", type=int, default=0, help="CPU burner processes during the runs")
    args = parser.parse_args()

    RECIPES[SAME] = Recipe(SAME, lambda loaded, params: loaded)
    burners = [multiprocessing.get_context("spawn").Process(target=_burn, args=(time.time() + 86400,))
               for _ in range(args.burners)]
    for b in burners:
        b.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = args.model or tiny_bert(Path(tmp) / "bert")
            per_variant, unpaired, tau_used = run_audits(args, model)
    finally:
        for b in burners:
            b.terminate()
            b.join()
    print()
    taus = {}
    for recipe, runs in per_variant.items():
        if runs:
            text, taus[recipe] = summarize(recipe, runs, tau_used)
            print(text)
    print()
    print("latency interval width ln(high/low), median over runs: paired / unpaired")
    for recipe, pairs in unpaired.items():
        if pairs:
            wp = statistics.median(math.log(p[1] / p[0]) for p, _ in pairs)
            wu = statistics.median(math.log(u[2] / u[1]) for _, u in pairs)
            op = overlap_share([tuple(p) for p, _ in pairs])
            ou = overlap_share([(u[1], u[2]) for _, u in pairs])
            print(f"  {recipe:<24} {wp:.3f} / {wu:.3f}; intervals overlapping (pairs) {op:.0%} / {ou:.0%}")
    if args.calibrate and any(t is not None for t in taus.values()):
        recipe, tau = max(((r, t) for r, t in taus.items() if t is not None), key=lambda rt: rt[1])
        cls = "cuda" if args.device.startswith("cuda") else "cpu"
        print()
        print("between_run.csv row (the largest tau over the variants, here " + recipe + "):")
        print(f'{cls},{tau:.4f},{date.today().isoformat()},{args.runs},"bench/paired.py --calibrate --runs '
              f'{args.runs} --window {args.window:g} --cap {args.cap:g} --batch-size {args.batch_size} --seq-len '
              f'{args.seq_len} --threads {args.threads}{" --model " + args.model.name if args.model else ""}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
