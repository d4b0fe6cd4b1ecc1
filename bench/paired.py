"""Paired rounds against unpaired comparisons, on the same runs.

Profiles a small BERT-style encoder N times (baseline, prune-unstructured:0.5, int8-dynamic) and
prints, for each variant:

- the paired ratio and its 95% interval (from the interleaved rounds);
- the unpaired interval of the same ratio from the same windows, as one would get by comparing
  the two measurements' means with their own intervals (log-normal propagation);
- whether the N paired intervals overlap each other (all pairs), and the same for unpaired.

Masked pruning does the same dense work as the baseline: its true ratio is 1.

    .venv/bin/python bench/paired.py [--repeats 5] [--window 0.5] [--cap 5]
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.engine.api import profile  # noqa: E402
from workers.engine.timing import t975  # noqa: E402


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--cap", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    recipes = ["baseline", "prune-unstructured:0.5", "int8-dynamic"]
    paired: dict[str, list] = {r: [] for r in recipes[1:]}
    unpaired: dict[str, list] = {r: [] for r in recipes[1:]}
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_bert(Path(tmp) / "bert")
        for run in range(args.repeats):
            started = time.perf_counter()
            doc = profile(model, batch_sizes=[args.batch_size], seq_len=64, recipes=recipes,
                          options={"window_s": args.window, "time_cap_s": args.cap, "idle_s": 0.5, "threads": 1})
            base = doc["variants"][0]["measurements"][0]
            print(f"run {run + 1}: {time.perf_counter() - started:.1f} s, baseline {base['latency_ms_mean']:.2f} ms "
                  f"(grade {base['quality_grade']}), audit grade {doc['quality']['grade']}")
            for v in doc["variants"][1:]:
                if v["status"] != "succeeded":
                    print(f"  {v['recipe']}: {v['status']} {v['error']}")
                    continue
                c = v["comparison"][0]
                lo, hi = c["latency_ratio_ci95"]
                paired[v["recipe"]].append((c["latency_ratio"], lo, hi))
                u = unpaired_ci(base["window_means_ms"], v["measurements"][0]["window_means_ms"])
                unpaired[v["recipe"]].append(u)
                print(f"  {v['recipe']:<24} paired x{c['latency_ratio']:.3f} [{lo:.3f}, {hi:.3f}] "
                      f"({c['rounds']} rounds, {c['verdict']}, grade {c['quality_grade']});  "
                      f"unpaired x{u[0]:.3f} [{u[1]:.3f}, {u[2]:.3f}]")
    print()
    print("variant                   median width paired / unpaired   intervals overlapping (pairs) paired / unpaired")
    for recipe in recipes[1:]:
        if not paired[recipe]:
            continue
        wp = statistics.median(math.log(h / lo) for _, lo, h in paired[recipe])
        wu = statistics.median(math.log(h / lo) for _, lo, h in unpaired[recipe])
        op = overlap_share([(lo, h) for _, lo, h in paired[recipe]])
        ou = overlap_share([(lo, h) for _, lo, h in unpaired[recipe]])
        print(f"{recipe:<25} {wp:.3f} / {wu:.3f} (ratio {wp / wu:.2f})            {op:.0%} / {ou:.0%}")
    print("(width: ln(high/low) of the 95% interval; truth for prune-unstructured is 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
