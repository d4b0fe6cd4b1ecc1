"""The serving engine (workers/engine/serving/load.py) against a plain closed loop over the same backend.

Builds a GPT-2-style causal LM from a config (default: 4 layers, hidden 256, vocab 8000, 512
positions; no download), and a workload of the shipped default's lengths read as tokens (prompt
words x 1.3, the GPT-2 BPE ratio, so no tokenizer is needed; ``max_new_tokens`` capped by
``--max-new`` to keep the run short), its first ``--requests`` requests. Then, for each
concurrency and repeat, alternately:

- plain: a closed loop written here against transformers' ``ContinuousBatchingManager``
  (``add_request`` / ``get_result``, the same paged-cache settings), no meter, no engine code;
  output tokens/s over the interval from the c-th completion to the (n - c + 1)-th (ramp-up and
  drain left out, as the engine does), TTFT and TPOT medians of the requests completed in it;
- engine: ``measure_serving`` at that concurrency (estimate-tdp meter, cheap to read);

the side that goes first alternates from repeat to repeat.

It prints each side's median over repeats and the median (and range) of the repeats' engine / plain
ratios (target 0.95-1.05).

    .venv/bin/python bench/serving.py [--concurrency 1,4,8 --requests 32 --max-new 32 --repeats 3
                                      --layers 4 --hidden 256 --threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.engine import serving  # noqa: E402
from workers.engine.meters import TdpEstimateMeter  # noqa: E402
from workers.engine.serving.figures import Slo  # noqa: E402
from workers.engine.serving.workload import load_workload, parse_workload  # noqa: E402


def build_model(layers: int, hidden: int, vocab: int, positions: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=max(1, hidden // 64),
                        n_positions=positions, bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(config).eval()


def bench_workload(requests: int, max_new: int, positions: int):
    rows = []
    for r in load_workload()[:requests]:
        prompt = min(positions - max_new, max(1, round(len(r.prompt.split()) * 1.3)))
        rows.append(json.dumps({"prompt_tokens": prompt, "max_new_tokens": min(max_new, r.max_new_tokens)}))
    return parse_workload("\n".join(rows))


def _median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def plain_closed_loop(model, prompts, news, concurrency: int, options: dict) -> dict:
    """Output tokens/s, TTFT p50 and TPOT p50 of a minimal closed loop (no engine code)."""
    from transformers import ContinuousBatchingConfig, GenerationConfig

    pages = -(-max(len(p) + n for p, n in zip(prompts, news)) // options["page_size"])
    manager = model.init_continuous_batching(
        generation_config=GenerationConfig(do_sample=False, num_beams=1, eos_token_id=-1, max_new_tokens=max(news)),
        continuous_batching_config=ContinuousBatchingConfig(
            page_size=options["page_size"], num_blocks=(concurrency + 1) * pages + 2,
            max_batch_tokens=options["max_batch_tokens"], max_requests_per_batch=concurrency,
            allow_block_sharing=False, scheduler_type="fifo"))
    manager.start()
    try:
        def run(indices):
            arrival, stamps, queue = {}, {}, list(indices)

            def submit():
                i = queue.pop(0)
                arrival[i] = time.perf_counter()
                manager.add_request(prompts[i], request_id=f"p{i}", max_new_tokens=news[i], record_timestamps=True,
                                    eos_token_id=-1)
            for _ in range(min(concurrency, len(queue))):
                submit()
            ends = []
            while len(stamps) < len(indices):
                out = manager.get_result(timeout=1.0)
                if out is None or not out.is_finished():
                    continue
                i = int(out.request_id[1:])
                assert len(out.generated_tokens) == news[i], "a request did not get its max_new_tokens"
                stamps[i] = out.timestamps
                ends.append(time.perf_counter())
                if queue:
                    submit()
            return arrival, stamps, ends

        run(list(range(min(4, len(prompts)))))  # warm-up, as the engine's default
        arrival, stamps, ends = run(list(range(len(prompts))))
    finally:
        manager.stop(block=True)
        manager.destroy()
    n = len(prompts)
    start, end = ends[concurrency - 1], ends[n - concurrency]
    tokens = sum(1 for ts in stamps.values() for t in ts if start <= t < end)
    inside = [i for i, ts in stamps.items() if start <= ts[-1] <= end]
    return {"output_tokens_per_s": tokens / (end - start),
            "ttft_ms_p50": _median([(stamps[i][0] - arrival[i]) * 1e3 for i in inside]),
            "tpot_ms_p50": _median([(stamps[i][-1] - stamps[i][0]) * 1e3 / (len(stamps[i]) - 1)
                                    for i in inside if len(stamps[i]) > 1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-new", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--positions", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model = build_model(args.layers, args.hidden, args.vocab, args.positions)
    requests = bench_workload(args.requests, args.max_new, args.positions)
    from workers.engine.serving.workload import prompt_ids

    prompts = prompt_ids(requests, model.config.to_dict())
    news = [r.max_new_tokens for r in requests]
    options = dict(serving.DEFAULT_OPTIONS)
    keys = ("output_tokens_per_s", "ttft_ms_p50", "tpot_ms_p50")
    print(f"model: GPT-2 {args.layers} layers, hidden {args.hidden}; {len(requests)} requests, prompts "
          f"{min(map(len, prompts))}-{max(map(len, prompts))} tokens, new {min(news)}-{max(news)}; "
          f"transformers {serving.backend_version()}, threads {args.threads}")
    for c in (int(x) for x in args.concurrency.split(",")):
        plain, engine = {k: [] for k in keys}, {k: [] for k in keys}
        for repeat in range(args.repeats):
            # alternate which side goes first, so a drift of the host's load falls on both alike
            for side in ((0, 1) if repeat % 2 == 0 else (1, 0)):
                if side == 0:
                    p = plain_closed_loop(model, prompts, news, c, options)
                else:
                    [e] = serving.measure_serving(model, None, requests, load_levels=[{"concurrency": c}], slo=Slo(),
                                                  meter=TdpEstimateMeter({}), options=options)
            for k in keys:
                plain[k].append(p[k])
                engine[k].append(e[k])
        print(f"concurrency {c}:", flush=True)
        for k in keys:
            # the ratio of each repeat's adjacent pair (which cancels the host's drift), median and range
            ratios = sorted(en / pe for en, pe in zip(engine[k], plain[k]))
            print(f"  {k:20s} engine {statistics.median(engine[k]):9.2f}  plain {statistics.median(plain[k]):9.2f}"
                  f"  ratio {statistics.median(ratios):5.3f} (repeats {ratios[0]:5.3f}-{ratios[-1]:5.3f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
