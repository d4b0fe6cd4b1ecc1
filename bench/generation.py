"""The generation scenario against a plain timed ``model.generate`` loop, and where an audit's time goes.

Builds a GPT-2-style causal LM from a config (default: 4 layers, hidden 256, vocab 8000), saves it
as a Hugging Face folder, then, in each repeat:

- plain: ``model.generate(ids, max_new_tokens=N, min_new_tokens=N, do_sample=False)`` timed call
  by call (and the same with ``max_new_tokens=1`` for the prefill) on its own copy of the model, in
  slices of one window run just before each of the engine's windows (from the audit's progress
  callback), so the two sides alternate window by window: output tokens/s = batch x N / mean
  request time, decode tokens/s = batch x (N - 1) / (mean request - mean prefill time);
- engine: a whole audit (``workers.engine.api.profile``, generation scenario, baseline only) of the
  same folder at the same lengths, threads and batch size; its ``output_tokens_per_s`` and
  ``decode_tokens_per_s``.

It prints the engine / plain ratios (target 0.95-1.05) and, for each audit, its wall time split
into loading + counting, idle baseline, warm-up, measurement windows and the rest.

    .venv/bin/python bench/generation.py [--layers 4 --hidden 256 --prompt-tokens 64 --new-tokens 32
                                          --batch-size 1 --threads 1 --repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.engine import timing  # noqa: E402
from workers.engine.api import profile  # noqa: E402


def build_model(folder: Path, layers: int, hidden: int, vocab: int) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=max(1, hidden // 64),
                        n_positions=1024, bos_token_id=1, eos_token_id=2)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    return folder


class PlainLoop:
    """What a user timing ``model.generate`` by hand sees: its own copy of the model, timed in
    slices of one engine window each, run from the audit's progress callback just before each of
    the engine's windows, so both sides see the same state of the machine."""

    def __init__(self, folder: Path, args):
        import torch

        from workers.engine import generation
        from workers.engine.loaders import load_model

        self.torch = torch
        self.model = load_model(folder).module
        self.ids = generation.prompt_batch(load_model(folder), args.batch_size, args.prompt_tokens)
        self.mask = torch.ones_like(self.ids)
        self.args = args
        self.times = {1: [], args.new_tokens: []}
        self.spent_s = 0.0
        self.stage_times: dict = {}  # when each stage of the audit began, less the plain slices before it
        for n_new in self.times:
            for _ in range(10):  # warm-up, as the engine's
                self._call(n_new)

    def _call(self, n_new: int):  # as a user writes it: generate itself turns gradients off
        return self.model.generate(self.ids, attention_mask=self.mask, max_new_tokens=n_new,
                                   min_new_tokens=n_new, do_sample=False, pad_token_id=0)

    def on_event(self, event: dict) -> None:
        self.stage_times.setdefault(event.get("stage"), time.perf_counter() - self.spent_s)
        phase = event.get("phase")
        if event.get("stage") != "measuring" or phase not in ("prefill", "decode"):
            return
        n_new = 1 if phase == "prefill" else self.args.new_tokens
        started = time.perf_counter()
        end = started + self.args.window
        while time.perf_counter() < end:
            t0 = time.perf_counter_ns()
            out = self._call(n_new)
            self.times[n_new].append(time.perf_counter_ns() - t0)
        assert out.shape[-1] == self.args.prompt_tokens + n_new
        self.spent_s += time.perf_counter() - started

    def figures(self) -> dict:
        b, n = self.args.batch_size, self.args.new_tokens
        request_s = statistics.fmean(self.times[n]) / 1e9
        prefill_s = statistics.fmean(self.times[1]) / 1e9
        return {"request_ms": request_s * 1e3, "prefill_ms": prefill_s * 1e3,
                "output_tokens_per_s": b * n / request_s,
                "decode_tokens_per_s": b * (n - 1) / (request_s - prefill_s)}


class Clock:
    """Where an audit's time goes: wraps the engine's idle, warm-up and window calls."""

    def __init__(self):
        self.spent = {"idle": 0.0, "warmup": 0.0, "windows": 0.0}
        self._saved = []

    def _wrap(self, owner, name, key):
        original = getattr(owner, name)
        spent = self.spent

        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                spent[key] += time.perf_counter() - t0

        self._saved.append((owner, name, original))
        setattr(owner, name, wrapper)

    def __enter__(self):
        self._wrap(timing, "measure_idle", "idle")
        self._wrap(timing.Sampler, "warmup", "warmup")
        self._wrap(timing.Sampler, "window", "windows")
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)


def engine_audit(folder: Path, args, plain: PlainLoop) -> dict:
    options = {"scenario": "generation", "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
               "threads": args.threads, "idle_s": args.idle, "window_s": args.window, "time_cap_s": args.cap}
    with Clock() as clock:
        t0 = time.perf_counter()
        doc = profile(folder, batch_sizes=[args.batch_size], options=options, progress=plain.on_event)
        wall = time.perf_counter() - t0 - plain.spent_s  # the plain slices are not the audit's
    (m,) = doc["variants"][0]["measurements"]
    marks = sorted(plain.stage_times.items(), key=lambda kv: kv[1]) + [("end", t0 + wall)]
    stages = {name: marks[i + 1][1] - at for i, (name, at) in enumerate(marks[:-1])}
    stages["loading"] = stages.get("loading", 0.0) + marks[0][1] - t0
    return {"wall_s": wall, **clock.spent, "stages": stages, "output_tokens_per_s": m["output_tokens_per_s"],
            "decode_tokens_per_s": m["decode_tokens_per_s"], "request_ms": m["latency_ms_mean"],
            "prefill_ms": m["ttft_ms_mean"], "tpot_ms_p50": m["tpot_ms_p50"], "tpot_ms_p95": m["tpot_ms_p95"],
            "ttft_ms_p95": m["ttft_ms_p95"], "j_per_output_token": m["energy_j_per_output_token"],
            "energy_method": m["energy_method"], "n_windows": m["windows"], "grade": m["quality_grade"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--cap", type=float, default=20.0)
    parser.add_argument("--idle", type=float, default=2.0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(f"GPT-2-style LM: {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}; prompt "
          f"{args.prompt_tokens}, new {args.new_tokens}, batch {args.batch_size}, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    ratios_out, ratios_dec = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "lm", args.layers, args.hidden, args.vocab)
        for r in range(args.repeats):
            plain_loop = PlainLoop(folder, args)
            eng = engine_audit(folder, args, plain_loop)
            plain = plain_loop.figures()
            ro = eng["output_tokens_per_s"] / plain["output_tokens_per_s"]
            rd = eng["decode_tokens_per_s"] / plain["decode_tokens_per_s"]
            ratios_out.append(ro)
            ratios_dec.append(rd)
            other = eng["wall_s"] - eng["idle"] - eng["warmup"] - eng["windows"]
            print(f"repeat {r + 1}:")
            print(f"  plain generate: request {plain['request_ms']:.2f} ms, prefill {plain['prefill_ms']:.2f} ms, "
                  f"{plain['output_tokens_per_s']:.1f} output tok/s, {plain['decode_tokens_per_s']:.1f} decode tok/s")
            print(f"  engine:         request {eng['request_ms']:.2f} ms, prefill {eng['prefill_ms']:.2f} ms, "
                  f"{eng['output_tokens_per_s']:.1f} output tok/s, {eng['decode_tokens_per_s']:.1f} decode tok/s; "
                  f"TTFT p95 {eng['ttft_ms_p95']:.2f} ms, TPOT p50/p95 {eng['tpot_ms_p50']:.3f}/"
                  f"{eng['tpot_ms_p95']:.3f} ms, {eng['j_per_output_token']:.4g} J/output token "
                  f"({eng['energy_method']}, grade {eng['grade']}, {eng['n_windows']} windows)")
            print(f"  ratio engine/plain: output tok/s x{ro:.3f}, decode tok/s x{rd:.3f}")
            print(f"  audit wall {eng['wall_s']:.1f} s = idle {eng['idle']:.1f} + warm-up {eng['warmup']:.1f} + "
                  f"windows {eng['windows']:.1f} ({eng['windows'] / eng['wall_s']:.0%}) + load/count/other "
                  f"{other:.1f}")
            print("  by stage: " + ", ".join(f"{name} {sec:.1f} s" for name, sec in eng["stages"].items()))
    print(f"median ratio engine/plain: output tok/s x{statistics.median(ratios_out):.3f} "
          f"(range {min(ratios_out):.3f}-{max(ratios_out):.3f}), decode tok/s x{statistics.median(ratios_dec):.3f} "
          f"(range {min(ratios_dec):.3f}-{max(ratios_dec):.3f}); target 0.95-1.05")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
