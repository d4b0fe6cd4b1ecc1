"""What each compression recipe buys on CPU, through the engine's own path (profile_model).

(a) a small BERT-style transformer (4 layers, hidden 256, seq 64), batch 1 and 8: every torch
    recipe that runs on CPU; fidelity to the baseline on 256 random token sequences (no labels);
(b) a Linear-heavy MLP (64 -> 1024 -> 1024 -> 10) trained here on scikit-learn's digits,
    batch 32: accuracy on held-out digits; expectation: int8-dynamic latency ratio < 0.7;
(c) the same MLP exported to ONNX: onnxruntime recipes, accuracy on digits.

Each variant's latency (p50) and energy per inference as a ratio to the baseline measured in
the same run (interleaved), with its accuracy or fidelity, and the baseline's drift (first vs
last measurement). Energy here is the engine's CPU estimate unless RAPL is readable.

Run: .venv/bin/python bench/compression.py [--quick] [--json OUT]   (about 4 minutes; --quick ~1)
     BENCH_THREADS=N sets the thread count (default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

THREADS = int(os.environ.get("BENCH_THREADS", "1"))
MLP = {"in_features": 64, "hidden": [1024, 1024], "num_classes": 10, "activation": "relu"}
TRANSFORMER_RECIPES = ["baseline", "int8-dynamic", "int8-weight-only", "bf16", "fp16", "prune-unstructured:0.5",
                       "prune-structured:0.3", "distill:100", "compile"]
MLP_RECIPES = ["baseline", "int8-dynamic", "int8-weight-only", "int8-static", "prune-unstructured:0.5",
               "prune-structured:0.5;finetune_steps=100", "distill:300", "compile"]
ONNX_RECIPES = ["baseline", "ort-int8-dynamic", "ort-int8-static", "ort-fp16"]


def _options(quick: bool) -> dict:
    return {"threads": THREADS, "window_s": 0.25 if quick else 0.5, "time_cap_s": 1.0 if quick else 3.0,
            "idle_s": 0.5, "warmup_iters": 10, "eval_max_samples": 600}


def build_transformer(folder: Path, quick: bool) -> tuple[Path, Path]:
    import numpy as np
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    layers, hidden = (2, 128) if quick else (4, 256)
    config = BertConfig(vocab_size=2000, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=4 * hidden, max_position_embeddings=128, num_labels=4)
    BertForSequenceClassification(config).eval().save_pretrained(folder, safe_serialization=True)
    ids = np.random.default_rng(0).integers(5, 2000, size=(256, 64))
    data = folder.parent / "tokens.npz"
    np.savez(data, input_ids=ids, attention_mask=np.ones_like(ids))
    return folder, data


def build_digits_mlp(path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    from workers.engine.datasets import read_dataset
    from workers.engine.registry import get_architecture

    torch.manual_seed(0)
    model = get_architecture("mlp").build(MLP)
    raw = read_dataset("builtin:digits")
    # train on the first 1,000 digits; the engine draws its evaluation samples from all 1,797
    x, y = torch.from_numpy(raw.arrays["inputs"][:1000]), torch.from_numpy(raw.labels[:1000])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_file(model.eval().state_dict(), str(path),
              metadata={"architecture": "mlp", "architecture_config": json.dumps(MLP)})
    return path


def export_onnx(safetensors_path: Path, out: Path) -> Path:
    import torch

    from workers.engine.loaders import load_model

    loaded = load_model(safetensors_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(loaded.module, (torch.randn(1, 64),), str(out), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return out


def rows(doc: dict) -> list[dict]:
    base = {m["batch_size"]: m for v in doc["variants"] if v["recipe"] == "baseline" for m in v["measurements"]}
    out = []
    for v in doc["variants"]:
        ev = v.get("evaluation") or {}
        quality = "-"
        if ev:
            fid = ev.get("fidelity", {})
            if ev.get("task") == "unlabeled":
                quality = f"top-1 agreement {fid.get('top1_agreement', 0):.3f}, cos {fid.get('mean_cosine_similarity', 0):.4f}"
            else:
                quality = f"{ev['metric']} {ev['value']:.4f} (agreement {fid.get('top1_agreement', 0):.3f})"
        if v["status"] != "succeeded":
            out.append({"recipe": v["recipe"], "batch": "-", "status": v["status"], "error": v["error"][:90]})
            continue
        for m in v["measurements"]:
            b = base.get(m["batch_size"])
            out.append({
                "recipe": v["recipe"], "batch": m["batch_size"], "status": "ok",
                "latency_ms": m["latency_ms_p50"],
                "latency_ratio": m["latency_ms_p50"] / b["latency_ms_p50"] if b else None,
                "energy_ratio": m["energy_j_per_inference"] / b["energy_j_per_inference"] if b else None,
                "params": v["params"], "size_mb": v["size_bytes"] / 1e6, "mflops": v["flops"] / 1e6,
                "quality": quality,
            })
    return out


def table(title: str, doc: dict) -> str:
    lines = [f"### {title}", "",
             "| variant | batch | p50 ms | latency ratio | energy ratio | params | size MB | MFLOPs | accuracy / fidelity |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows(doc):
        if r["status"] != "ok":
            lines.append(f"| {r['recipe']} | - | {r['status']}: {r['error']} | | | | | | |")
            continue
        lines.append(f"| {r['recipe']} | {r['batch']} | {r['latency_ms']:.3f} | {r['latency_ratio']:.2f} | "
                     f"{r['energy_ratio']:.2f} | {r['params']:,} | {r['size_mb']:.2f} | {r['mflops']:.2f} | {r['quality']} |")
    drift = doc.get("drift") or {}
    for d in drift.get("per_batch_size", []):
        lines.append(f"\nbaseline drift at batch {d['batch_size']}: latency {d['latency_rel_change']:+.1%}, "
                     f"energy {d['energy_rel_change']:+.1%}")
    for entry in (doc.get("tradeoff") or {}).get("per_batch_size", []):
        if entry.get("recommended"):
            lines.append(f"\nrecommended at batch {entry['batch_size']} (at most 1 point lost): "
                         f"**{entry['recommended']}**; Pareto frontier: {', '.join(entry['frontier'])}")
    method = next((m["energy_method"] for v in doc["variants"] for m in v["measurements"]), "?")
    lines.append(f"\nenergy method: {method}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--only", choices=["transformer", "mlp", "onnx"], default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    from workers.engine.profile import profile_model

    options = _options(args.quick)
    docs = {}
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mlp = build_digits_mlp(tmp / "digits-mlp.safetensors")
        if args.only in (None, "transformer"):
            bert, tokens = build_transformer(tmp / "bert", args.quick)
            docs["transformer"] = profile_model(bert, batch_sizes=(1, 8), seq_len=64, recipes=TRANSFORMER_RECIPES,
                                                dataset=str(tokens), options=options)
        if args.only in (None, "mlp"):
            docs["mlp"] = profile_model(mlp, batch_sizes=(32,), recipes=MLP_RECIPES, dataset="builtin:digits",
                                        options=options)
        if args.only in (None, "onnx"):
            onnx_path = export_onnx(mlp, tmp / "digits-mlp.onnx")
            docs["onnx"] = profile_model(onnx_path, batch_sizes=(32,), recipes=ONNX_RECIPES,
                                         dataset="builtin:digits", options=options)
    import torch

    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {THREADS}, "
          f"wall {time.time() - started:.0f} s\n")
    titles = {"transformer": "(a) small transformer (BERT-style), fidelity on random tokens",
              "mlp": "(b) Linear-heavy MLP trained on digits, batch 32",
              "onnx": "(c) the same MLP as ONNX (onnxruntime), batch 32"}
    for key, doc in docs.items():
        print(table(titles[key], doc))
        print()
    if "mlp" in docs:
        int8 = next((r for r in rows(docs["mlp"]) if r["recipe"] == "int8-dynamic" and r["status"] == "ok"), None)
        if int8:
            verdict = "PASS" if int8["latency_ratio"] < 0.7 else "FAIL"
            print(f"expectation int8-dynamic latency ratio < 0.7 on the Linear-heavy MLP: "
                  f"{int8['latency_ratio']:.2f} {verdict}")
    if args.json:
        args.json.write_text(json.dumps(docs, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
