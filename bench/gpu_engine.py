"""The engine's GPU path for real: NVML energy, fp16/bf16, int8, 2:4 sparsity, compile.

Builds two models from code (a Linear-heavy MLP as safetensors for the registered `mlp`
architecture, and a small BERT from a transformers config), profiles each on CUDA through
the sandboxed child exactly as a worker does, and prints the summary tables. The full
result documents go to $OUT (or ./var/gpu-engine/) as JSON.

    python bench/gpu_engine.py [--window 2] [--cap 8] [--batch-sizes 1,256]
    python bench/gpu_engine.py --batch-sweep [--max-batch 256] [--latency-target 20]
    python bench/gpu_engine.py --compare-modes [--batch-sizes 1,64]

--batch-sweep profiles the baseline at batch sizes 1, 2, 4, ... --max-batch and prints energy
per sample against p95 latency per batch size, the Pareto frontier and the cheapest batch size
within --latency-target (workers/engine/frontier.py; no power limit is changed).
--compare-modes profiles the baseline twice, timing_mode "latency" (a synchronise after every
call) and "throughput" (one per window, the way a server keeps the queue full), and prints the
mean time per call and J per sample of both. Neither changes any device setting.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.engine.cli import summary_table  # noqa: E402
from workers.engine.errors import EngineFailure  # noqa: E402
from workers.engine.frontier import build_frontier  # noqa: E402
from workers.engine.supervise import run_engine  # noqa: E402

RECIPES = ["baseline", "fp16", "bf16", "int8-dynamic", "int8-weight-only", "prune-unstructured:0.5",
           "sparse-2:4", "compile"]


def build_models(folder: Path) -> dict[str, Path]:
    import torch
    from safetensors.torch import save_file

    from workers.engine.registry import get_architecture

    config = {"in_features": 1024, "hidden": [4096, 4096], "num_classes": 1000}
    torch.manual_seed(0)
    mlp = get_architecture("mlp").build(config)
    mlp_path = folder / "mlp.safetensors"
    save_file({k: v.contiguous() for k, v in mlp.state_dict().items()}, mlp_path,
              metadata={"architecture": "mlp", "architecture_config": json.dumps(config)})

    from transformers import BertConfig, BertForSequenceClassification

    bert = BertForSequenceClassification(BertConfig(hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
                                                    intermediate_size=2048, vocab_size=8000, num_labels=2))
    bert_path = folder / "bert"
    bert.save_pretrained(bert_path, safe_serialization=True)
    return {"mlp-1024x4096x4096": mlp_path, "bert-4x512": bert_path}


def _profile(path: Path, batch_sizes: list[int], args, **options) -> dict | None:
    request = {
        "command": "profile", "path": str(path), "format": "auto", "device": "cuda",
        "batch_sizes": batch_sizes, "seq_len": 128, "recipes": ["baseline"], "dataset": None,
        "options": {"window_s": args.window, "time_cap_s": args.cap, "idle_s": 3.0, **options},
    }
    try:
        return run_engine(request, timeout_s=580, on_event=lambda e: None)
    except EngineFailure as exc:
        print(f"  FAILED {exc}")
        return None


def _fmt(value, spec=".4g") -> str:
    return "-" if value is None else format(value, spec)


def batch_sweep(models: dict[str, Path], args, out: Path) -> None:
    sizes = [1 << i for i in range(args.max_batch.bit_length()) if 1 << i <= args.max_batch]
    for name, path in models.items():
        print(f"\n== batch sweep {name}: batch sizes {sizes}")
        result = _profile(path, sizes, args)
        if result is None:
            continue
        (out / f"{name}-batch-sweep.json").write_text(json.dumps(result, indent=1))
        print("  batch  p95 ms    mean ms   J/sample    samples/s  avg W    state")
        for m in result["variants"][0]["measurements"]:
            state = " ".join(f"{k}={m[k]}" for k in ("sm_clock_mhz", "temperature_c", "throttle_reasons") if k in m)
            print(f"  {m['batch_size']:>5}  {_fmt(m.get('latency_ms_p95')):>8}  {_fmt(m.get('latency_ms_mean')):>8}"
                  f"  {_fmt(m.get('energy_j_per_sample')):>9}  {_fmt(m.get('throughput_samples_per_s'), '.1f'):>9}"
                  f"  {_fmt(m.get('avg_power_w'), '.1f'):>6}  {state}")
        options = {"latency_target_ms_p95": args.latency_target} if args.latency_target else {}
        for fv in build_frontier(result, options)["variants"]:
            print(f"  pareto (batch sizes): {[p['batch_size'] for p in fv['pareto']]}")
            print(f"  {fv['reason']}")


def compare_modes(models: dict[str, Path], args, out: Path) -> None:
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    for name, path in models.items():
        print(f"\n== timing modes {name}: latency (sync per call) vs throughput (sync per window)")
        runs = {mode: _profile(path, sizes, args, timing_mode=mode) for mode in ("latency", "throughput")}
        if any(r is None for r in runs.values()):
            continue
        (out / f"{name}-timing-modes.json").write_text(json.dumps(runs, indent=1))
        print("  batch  latency: mean ms  J/sample   throughput: mean ms  J/sample   time ratio  energy ratio")
        by_mode = {mode: {m["batch_size"]: m for m in r["variants"][0]["measurements"]} for mode, r in runs.items()}
        for bs in sizes:
            lat, thr = by_mode["latency"].get(bs), by_mode["throughput"].get(bs)
            if not lat or not thr:
                continue
            t_ratio = (thr["latency_ms_mean"] / lat["latency_ms_mean"]) if lat.get("latency_ms_mean") else None
            e_ratio = (thr["energy_j_per_sample"] / lat["energy_j_per_sample"]) if lat.get("energy_j_per_sample") else None
            print(f"  {bs:>5}  {_fmt(lat.get('latency_ms_mean')):>16}  {_fmt(lat.get('energy_j_per_sample')):>8}"
                  f"  {_fmt(thr.get('latency_ms_mean')):>19}  {_fmt(thr.get('energy_j_per_sample')):>8}"
                  f"  {_fmt(t_ratio, '.3f'):>10}  {_fmt(e_ratio, '.3f'):>12}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--cap", type=float, default=8.0)
    parser.add_argument("--batch-sizes", default="1,256")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--batch-sweep", action="store_true", help="baseline at batch sizes 1, 2, 4, ... --max-batch")
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--latency-target", type=float, default=None, help="p95 ms, for --batch-sweep")
    parser.add_argument("--compare-modes", action="store_true", help="latency vs throughput timing mode")
    args = parser.parse_args()
    out = Path(os.environ.get("OUT") or ROOT / "var" / "gpu-engine")
    out.mkdir(parents=True, exist_ok=True)
    if args.batch_sweep or args.compare_modes:
        with tempfile.TemporaryDirectory() as tmp:
            models = build_models(Path(tmp))
            if args.batch_sweep:
                batch_sweep(models, args, out)
            if args.compare_modes:
                compare_modes(models, args, out)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in build_models(Path(tmp)).items():
            request = {
                "command": "profile", "path": str(path), "format": "auto", "device": "cuda",
                "batch_sizes": [int(b) for b in args.batch_sizes.split(",")], "seq_len": 128,
                "recipes": args.recipes.split(","), "dataset": None,
                "options": {"window_s": args.window, "time_cap_s": args.cap, "idle_s": 3.0},
            }
            started = time.monotonic()
            try:
                result = run_engine(request, timeout_s=580, on_event=lambda e: None)
            except EngineFailure as exc:
                print(f"== {name}: FAILED {exc}")
                continue
            (out / f"{name}.json").write_text(json.dumps(result, indent=1))
            fp = result["fingerprint"]
            gpu = fp.get("gpu") or {}
            print(f"\n== {name} on {gpu.get('name', '?')} (driver {fp.get('gpu_driver', '?')}, "
                  f"torch {fp.get('versions', {}).get('torch', '?')}), {time.monotonic() - started:.0f} s")
            print(summary_table(result))
            for v in result["variants"]:
                for note in v.get("notes") or []:
                    print(f"  note {v['recipe']}: {note[:160]}")
                if v["status"] != "succeeded":
                    print(f"  {v['status']} {v['recipe']}: {(v.get('error') or '')[:200]}")
            for m in result["variants"][0]["measurements"]:
                print(f"  baseline b={m['batch_size']}: {m['energy_method']} idle {m['idle_power_w']:.1f} W, "
                      f"avg {m['avg_power_w']:.1f} W, {m['iterations']} calls in {m['windows']} windows, flags {m['flags']}")
            if result.get("drift"):
                print(f"  drift: max |change| {result['drift'].get('max_abs_rel_change')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
