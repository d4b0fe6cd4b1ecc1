"""The engine's timing against torch.utils.benchmark, the reference PyTorch ships.

For a few models, the same callable is timed three ways on one device:
- torch.utils.benchmark.Timer(...).blocked_autorange (its median of blocked measurements,
  synchronising CUDA around each block),
- the engine's Sampler in throughput mode (one synchronise per window),
- the engine's Sampler in latency mode (a synchronise after every call),
and the ratio engine / torch.utils.benchmark is printed (issue 12's target: throughput mode
within 5% on a GPU). The three are interleaved over ``--repeats`` rounds and each figure is the
median of its rounds, so a drifting machine moves them together.

    python bench/timing_modes.py [--device cpu|cuda] [--repeats 5] [--window 0.5] [--threads 1]
"""
import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.utils.benchmark as tb  # noqa: E402

from workers.engine.meters import select_meter  # noqa: E402
from workers.engine.timing import measure  # noqa: E402


def models(device: str):
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 512)).to(device).eval()
    x_mlp = torch.randn(32, 512, device=device)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(32, 32, 3, padding=1)).to(device).eval()
    x_conv = torch.randn(8, 3, 64, 64, device=device)
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=1024,
                                vocab_size=4000)).to(device).eval()
    ids = torch.randint(0, 4000, (8, 64), device=device)
    return {"mlp 512-2048-512 b32": lambda: mlp(x_mlp), "conv 2x32 64px b8": lambda: conv(x_conv),
            "bert 2x256 seq64 b8": lambda: bert(input_ids=ids)}


def engine_ms(fn, device, mode, window):
    meter = select_meter(device, {"energy_method": "estimate-tdp"} if device == "cpu" else {})
    try:
        m = measure(fn, batch_size=1, device=device, meter=meter, idle_power_w=0.0,
                    options={"timing_mode": mode, "window_s": window, "time_cap_s": 6 * window, "warmup_iters": 10})
    finally:
        close = getattr(meter, "close", None)
        if close:
            close()
    return m["latency_ms_mean"]


def torch_benchmark_ms(fn, window):
    # the same thread count as the engine runs with (Timer defaults to one thread)
    timer = tb.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=window).median * 1e3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.repeats} interleaved rounds, window {args.window} s")
    print(f"{'model':<24}{'torch.utils.benchmark':>22}{'engine throughput':>19}{'ratio':>8}"
          f"{'engine latency':>16}{'ratio':>8}")
    with torch.inference_mode():
        for name, fn in models(args.device).items():
            runs = {"tb": [], "throughput": [], "latency": []}
            for _ in range(args.repeats):
                runs["tb"].append(torch_benchmark_ms(fn, args.window))
                runs["throughput"].append(engine_ms(fn, args.device, "throughput", args.window))
                runs["latency"].append(engine_ms(fn, args.device, "latency", args.window))
            ref, thr, lat = (statistics.median(runs[k]) for k in ("tb", "throughput", "latency"))
            print(f"{name:<24}{ref:>19.3f} ms{thr:>16.3f} ms{thr / ref:>8.3f}{lat:>13.3f} ms{lat / ref:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
