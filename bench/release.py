"""Did this release cost more? How often the paired reference comparison says so wrongly, and how
often it sees a real regression.

Two cases, each profiled ``--runs`` times (``workers.engine.profile.profile_model`` with a
``reference``, as an audit against the approved version does):

- identical versions: the same file as the new version and as its reference. Any "costs more"
  or "costs less" is a false claim; the share of such verdicts over all runs and batch sizes is
  the false-regression rate a CI gate would see (the verdict rule claims a cost only when the
  whole 95% interval lies above 1 + min_saving, and the interval is widened for the repeated
  looks and the between-run spread, so it should be well under 5%);
- a version doing about twice the compute of its reference (an MLP with more layers of the
  same width): the share of "costs more" is the rate a real regression is found.

Per run and batch size it prints the energy ratio new / reference, its interval, the verdict,
the rounds taken and why they stopped; then the rates.

    .venv/bin/python bench/release.py [--runs 10] [--batch-sizes 1,8] [--model PATH] [--skip-double]

--model profiles that model against itself instead of the built-in MLP (any upload the engine
loads: a Hugging Face folder, an ONNX file ...). The host's load shows in the figures: say how
busy it was when quoting them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.engine.profile import profile_model  # noqa: E402

V1 = {"in_features": 512, "hidden": [512], "num_classes": 10, "activation": "relu"}
V2 = dict(V1, hidden=[512] * 2)  # two 512x512 layers against one: twice V1's multiply-adds


def save_mlp(path: Path, config: dict) -> Path:
    import torch
    from safetensors.torch import save_file

    from workers.engine.registry import get_architecture

    torch.manual_seed(0)
    module = get_architecture("mlp").build(config).eval()
    save_file(module.state_dict(), str(path),
              metadata={"architecture": "mlp", "architecture_config": json.dumps(config)})
    return path


def macs(config: dict) -> int:
    widths = [config["in_features"], *config["hidden"], config["num_classes"]]
    return sum(a * b for a, b in zip(widths, widths[1:]))


def run_case(name: str, new: Path, reference: Path, args) -> list[dict]:
    """``args.runs`` audits of ``new`` against ``reference``; one row per run and batch size."""
    options = {"window_s": args.window, "time_cap_s": args.time_cap, "idle_s": 0.2, "rounds": args.rounds,
               "threads": args.threads}
    rows = []
    for run in range(args.runs):
        started = time.time()
        doc = profile_model(new, batch_sizes=args.batch_sizes, options=options,
                            reference={"path": str(reference), "label": "reference", "format": "auto",
                                       "seq_len": None, "options": {}})
        section = doc["reference"]
        if section["status"] != "compared":
            print(f"{name} run {run + 1}: {section['status']}: {section['reason']}")
            continue
        for e in section["per_batch_size"]:
            lo, hi = e["energy_ratio_ci95"] or (float("nan"), float("nan"))
            rows.append({"run": run + 1, **e})
            print(f"{name} run {run + 1:2d} batch {e['batch_size']:3d}: energy x{e['energy_ratio']:.3f} "
                  f"[{lo:.3f}, {hi:.3f}], latency x{e['latency_ratio']:.3f}: {e['verdict']:<24} "
                  f"({e['rounds']} rounds, {e['stopped_because']}; {time.time() - started:.0f} s)", flush=True)
    return rows


def rates(name: str, rows: list[dict]) -> None:
    if not rows:
        print(f"{name}: no comparisons")
        return
    n = len(rows)
    counts = {v: sum(r["verdict"] == v for r in rows)
              for v in ("costs more", "costs less", "no measurable difference", "inconclusive")}
    ratios = [r["energy_ratio"] for r in rows]
    lows = [r["energy_ratio_ci95"][0] for r in rows if r["energy_ratio_ci95"]]
    print(f"{name}: {n} comparisons; " + ", ".join(f"{v} {c} ({c / n:.0%})" for v, c in counts.items()))
    print(f"{name}: energy ratio min {min(ratios):.3f}, median {statistics.median(ratios):.3f}, max {max(ratios):.3f}; "
          f"interval lower bound min {min(lows):.3f}; rounds median {statistics.median(r['rounds'] for r in rows)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    p.add_argument("--rounds", type=int, default=4, help="paired rounds at least")
    p.add_argument("--window", type=float, default=0.1, help="measurement window, seconds")
    p.add_argument("--time-cap", type=float, default=1.5, help="seconds of measuring per subject and batch size")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", type=Path, default=None, help="profile this model against itself instead")
    p.add_argument("--skip-double", action="store_true", help="only the identical versions")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        v1 = args.model or save_mlp(Path(tmp) / "v1.safetensors", V1)
        same = run_case("identical", v1, v1, args)
        double = []
        if not args.skip_double and args.model is None:
            v2 = save_mlp(Path(tmp) / "v2.safetensors", V2)
            print(f"v2 does {macs(V2) / macs(V1):.2f}x v1's multiply-adds")
            double = run_case("2x compute", v2, v1, args)
    print()
    rates("identical versions", same)
    false_claims = sum(r["verdict"] in ("costs more", "costs less") for r in same)
    if same:
        print(f"identical versions: false 'costs more' {sum(r['verdict'] == 'costs more' for r in same)}/{len(same)}, "
              f"any false claim {false_claims}/{len(same)}")
    if double:
        rates("2x compute", double)
        print(f"2x compute: 'costs more' found {sum(r['verdict'] == 'costs more' for r in double)}/{len(double)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
