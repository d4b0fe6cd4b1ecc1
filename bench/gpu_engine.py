"""The engine's GPU path for real: NVML energy, fp16/bf16, int8, 2:4 sparsity, compile.

Builds two models from code (a Linear-heavy MLP as safetensors for the registered `mlp`
architecture, and a small BERT from a transformers config), profiles each on CUDA through
the sandboxed child exactly as a worker does, and prints the summary tables. The full
result documents go to $OUT (or ./var/gpu-engine/) as JSON.

    python bench/gpu_engine.py [--window 2] [--cap 8] [--batch-sizes 1,256]
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
from workers.engine.sandbox import run_engine  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--cap", type=float, default=8.0)
    parser.add_argument("--batch-sizes", default="1,256")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    args = parser.parse_args()
    out = Path(os.environ.get("OUT") or ROOT / "var" / "gpu-engine")
    out.mkdir(parents=True, exist_ok=True)
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
