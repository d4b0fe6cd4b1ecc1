"""The engine on its own: ``python -m workers.engine profile PATH [options]``.

Progress goes to stderr as one plain-text bar redrawn with ``\\r``; the summary table goes to
stdout; ``--json OUT`` writes the same result document the worker stores. A model that cannot
be detected or loaded is one line on stderr and exit code 2; a run in which no variant
succeeded prints its table, then one line on stderr naming each variant and why, and exits 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import EngineError

EXIT_MODEL_ERROR = 2
EXIT_ALL_VARIANTS_FAILED = 3
BAR_WIDTH = 30


def _float_list(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not (v > 0) for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    values = [x.strip() for x in text.split(",") if x.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected at least one recipe name")
    return values


def _input_override(text: str) -> str:
    from .inputs import InputOverrideError, parse_input_override

    try:
        parse_input_override(text)
    except InputOverrideError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workers.engine", description="Measure what a model costs.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("profile", help="FLOPs, latency and energy of a model file, folder or zip")
    p.add_argument("path", type=Path)
    p.add_argument("--format", default="auto",
                   choices=["auto", "hf", "onnx", "safetensors", "state-dict", "torchscript", "torch-export"])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-sizes", type=_int_list, default=[1], metavar="1,8")
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--workload", default=None, metavar="FILE.jsonl|builtin:default",
                   help="serve this workload (one JSON request per line: prompt or prompt_tokens, max_new_tokens) "
                        "with continuous batching at each load level; builtin:default: the shipped mixed-length one")
    p.add_argument("--concurrency", type=_int_list, default=None, metavar="1,4,16",
                   help="serving: closed-loop levels, requests in flight (default 1,4 when serving)")
    p.add_argument("--request-rate", type=_float_list, default=None, metavar="2,8",
                   help="serving: open-loop levels, requests per second (seeded Poisson arrivals)")
    p.add_argument("--scenario", default=None, choices=["auto", "forward", "generation", "serving"],
                   help="auto (default): the generation scenario for text-generation and seq2seq models")
    p.add_argument("--prompt-tokens", type=int, default=None, metavar="N", help="generation: prompt length (64)")
    p.add_argument("--new-tokens", type=int, default=None, metavar="N",
                   help="generation: tokens generated per sequence, EOS ignored (32; at most 1024)")
    p.add_argument("--generation-backend", default=None, choices=["transformers", "vllm"],
                   help="generation: model.generate (default) or vLLM's offline engine where installed")
    p.add_argument("--recipes", type=_name_list, default=["baseline"], metavar="baseline,int8-dynamic,...",
                   help="recipe specs, e.g. baseline,int8-dynamic,prune-unstructured:0.5,distill:200")
    p.add_argument("--dataset", default=None, metavar="FILE|builtin:NAME",
                   help="CSV/JSONL (text, label), NPZ (inputs, labels), plain text, or builtin:digits / "
                        "builtin:iris / builtin:diabetes")
    p.add_argument("--eval-samples", type=int, default=None, metavar="N", help="evaluate on at most N samples")
    p.add_argument("--timing-mode", default=None, choices=["latency", "throughput"],
                   help="latency (default): per-call percentiles; throughput: one synchronisation per window")
    p.add_argument("--rounds", type=int, default=None, metavar="N",
                   help="paired interleaved rounds of baseline and variants, at least (default 3 on CPU)")
    p.add_argument("--latency-target-ms-p95", type=float, default=None, metavar="MS",
                   help="latency target per inference, p95: the cheapest setting within it is named")
    p.add_argument("--slo-ttft-ms-p95", type=float, default=None, metavar="MS",
                   help="generation: time-to-first-token target, p95")
    p.add_argument("--slo-tpot-ms-p95", type=float, default=None, metavar="MS",
                   help="generation: time-per-output-token target, p95")
    p.add_argument("--power-limit-sweep", action="store_true", default=None,
                   help="CUDA, where the worker allows it (AUDIT_ALLOW_POWER_LIMIT=1): measure at a few "
                        "power limits and name the cheapest within the latency target")
    # the constraints of the recommendation and the SLO answer (constraints.py: defaults and why)
    p.add_argument("--min-fidelity", type=float, default=None, metavar="F",
                   help="without labels: fidelity to the baseline kept, at least F (embedding cosine or top-1 "
                        "agreement; default 0.98, language models 0.95)")
    p.add_argument("--max-kl-divergence", type=float, default=None, metavar="NATS",
                   help="without labels: KL divergence from the baseline's outputs at most NATS (default 0.01)")
    p.add_argument("--max-perplexity-increase-rel", type=float, default=None, metavar="X",
                   help="language models on real text: perplexity at most X higher, relative (default 0.01)")
    p.add_argument("--max-accuracy-drop", type=float, default=None, metavar="X",
                   help="trade-off constraint: metric lost at most X (accuracy 0.01 = 1 point)")
    p.add_argument("--max-metric-increase-rel", type=float, default=None, metavar="X",
                   help="lower-is-better metrics (perplexity, MSE): at most X higher, relative (default 0.01)")
    p.add_argument("--min-saving", type=float, default=None, metavar="X",
                   help="a saving is claimed when the paired ratio's 95%% interval lies below 1 - X (default 0.05)")
    p.add_argument("--equivalence-margin", type=float, default=None, metavar="X",
                   help="no measurable difference when the interval lies within 1 ± X (default 0.05)")
    p.add_argument("--queries-per-day", type=float, default=None, metavar="N", help="for projected savings")
    p.add_argument("--price-per-kwh", type=float, default=None, metavar="P", help="electricity price for savings")
    p.add_argument("--threads", type=int, default=None, help="torch / onnxruntime intra-op threads")
    p.add_argument("--time-cap", type=float, default=None, metavar="S",
                   help="seconds of measuring per variant and batch size at most")
    p.add_argument("--window", type=float, default=None, metavar="S", help="measurement window in seconds")
    p.add_argument("--idle", type=float, default=None, metavar="S", help="seconds of idle-power baseline")
    p.add_argument("--architecture", default=None, help="registered architecture for weights-only files")
    p.add_argument("--architecture-config", default=None, metavar="JSON")
    p.add_argument("--input", action="append", dest="inputs", type=_input_override, default=None,
                   metavar="NAME=DIMS[:DTYPE]",
                   help="one input's per-sample shape (no batch dim) and optional dtype, repeatable: "
                        "--input pixel_values=3x224x224 --input x=3x48x320:float32")
    p.add_argument("--reference", type=Path, default=None, metavar="REF_PATH",
                   help="another version of the model (e.g. the approved one): the baseline is measured against "
                        "it in the same interleaved rounds, and the summary says whether this one costs more")
    p.add_argument("--reference-label", default=None, metavar="LABEL",
                   help="what the reference is called in the summary (default: its file name)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the result document here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


class ProgressBar:
    """One stderr line: ``[#####-----]  42.0% measuring  message``, redrawn in place."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.last_len = 0

    def __call__(self, event: dict) -> None:
        percent = float(event.get("percent", 0.0))
        filled = int(BAR_WIDTH * percent / 100)
        line = (f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {percent:5.1f}% "
                f"{event.get('stage', '')}: {event.get('message', '')}")[:120]
        pad = " " * max(0, self.last_len - len(line))
        self.stream.write("\r" + line + pad)
        self.last_len = len(line)
        self.stream.flush()

    def finish(self) -> None:
        if self.last_len:
            self.stream.write("\n")
            self.stream.flush()
            self.last_len = 0


def _fmt_count(n) -> str:
    if n is None:
        return "unknown"
    if not n:
        return "0"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _fmt_energy(m: dict) -> str:
    joules = m.get("energy_j_per_inference")
    if joules is None:
        return "-"
    estimated = "est. " if m.get("energy_estimated") else ""
    rel = m.get("energy_uncertainty_rel")
    spread = f" ±{rel:.0%}" if rel is not None else ""
    assumptions = m.get("energy_assumptions") or {}
    k1, k2 = assumptions.get("uncertainty_k1"), assumptions.get("uncertainty_k2")
    if k1 and k2:  # an estimate's own asymmetric interval [x/k1, x*k2] (meters/cpu_table.py)
        spread = f" x/{k1:.2g}-x{k2:.2g}"
    return f"{estimated}{joules:.4g}{spread} ({m.get('energy_method', '?')})"


def summary_table(result: dict) -> str:
    """The stdout table: one row per variant and batch size."""
    generation = (result.get("scenario") or {}).get("kind") == "generation"
    header = ["variant", "batch", "p50 ms", "p95 ms", "J/inference (method)", "FLOPs", "params", "status"]
    if generation:  # per batch: TTFT and TPOT p95, output tokens/s, J per output token, J per request
        header = ["variant", "batch", "TTFT p95 ms", "TPOT p95 ms", "out tok/s", "J/output token", "J/request (method)",
                  "FLOPs", "params", "status"]
    if (result.get("scenario") or {}).get("kind") == "serving":
        return serving_table(result) + "\n" + _tail_lines(result)
    rows = []
    for v in result["variants"]:
        base = [v["recipe"]]
        counted = v["status"] == "succeeded" or v.get("flops")
        tail = [_fmt_count(v.get("flops")) if counted else "-", _fmt_count(v.get("params")) if counted else "-",
                v["status"]]
        if not v["measurements"]:
            rows.append(base + ["-"] * (len(header) - 4) + tail)
        for m in v["measurements"]:
            if generation:
                rows.append(base + _generation_cells(m) + tail)
                continue
            rows.append(base + [str(m["batch_size"]), f"{m['latency_ms_p50']:.3f}", f"{m['latency_ms_p95']:.3f}",
                                _fmt_energy(m)] + tail)
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    return _table(header, rows) + "\n" + _tail_lines(result)


def _table(header: list, rows: list) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def serving_table(result: dict) -> str:
    """One row per variant and load level: latency percentiles, throughput, energy goodput, the
    paired ratio to the baseline at that level."""
    header = ["variant", "load", "TTFT p95 ms", "TPOT p95 ms", "ITL p95 ms", "req/s", "out tok/s (aggregate)",
              "J/output token", "J/request", "J/good token", "goodput req/s", "energy vs baseline", "rounds"]
    rows = []

    def num(value, fmt="{:.3f}"):
        return "-" if value is None else fmt.format(value)

    for v in result["variants"]:
        pairs = {(c.get("concurrency"), c.get("request_rate")): c for c in v.get("serving_comparison") or []}
        if not v.get("serving"):
            rows.append([v["recipe"]] + ["-"] * (len(header) - 2) + [v["status"]])
        for f in v.get("serving") or []:
            load = f"c={f['concurrency']}" if f.get("concurrency") is not None else f"{f['request_rate']:g}/s"
            c = pairs.get((f.get("concurrency"), f.get("request_rate")))
            ratio = "-" if not c or not c.get("energy_ratio_ci95") else \
                f"x{c['energy_ratio_ci95'][0]:.2f}-{c['energy_ratio_ci95'][1]:.2f} {c['verdict']}"
            rows.append([v["recipe"], load, num(f.get("ttft_ms_p95")), num(f.get("tpot_ms_p95")),
                         num(f.get("itl_ms_p95")), num(f.get("requests_per_s"), "{:.2f}"),
                         num(f.get("output_tokens_per_s"), "{:.1f}"), num(f.get("energy_j_per_output_token"), "{:.4g}"),
                         num(f.get("energy_j_per_request"), "{:.4g}"), num(f.get("energy_j_per_good_token"), "{:.4g}"),
                         num(f.get("goodput_requests_per_s"), "{:.2f}"), ratio, str(f.get("rounds") or "-")])
    scenario = result.get("scenario") or {}
    workload = scenario.get("workload") or {}
    head = (f"serving {workload.get('requests')} requests from {workload.get('source')} with "
            f"{scenario.get('backend')} {scenario.get('backend_version')}; energy per request attributed by tokens")
    answer = (result.get("tradeoff") or {}).get("serving") or {}
    tail = [f"answer: {answer['reason']}"] if answer.get("reason") else []
    return "\n".join([head, _table(header, rows)] + tail)


def _tail_lines(result: dict) -> str:
    lines = []
    evaluated = [v for v in result["variants"] if v.get("evaluation")]
    if evaluated:
        lines.append("")
        lines.append("evaluation:")
        for v in evaluated:
            ev = v["evaluation"]
            fid = ", ".join(f"{k} {val:.4g}" for k, val in ev.get("fidelity", {}).items())
            labelled = f"{ev['metric']} {ev['value']:.4g}" if ev.get("value") is not None else "no labels"
            lines.append(f"  {v['recipe']}: {labelled} on {ev['n_samples']} samples ({ev.get('dataset')}); "
                         f"fidelity: {fid}")
    for v in result["variants"]:
        if v["error"]:
            lines.append(f"{v['recipe']}: {v['status']}: {v['error']}")
        for note in v.get("notes") or []:
            lines.append(f"{v['recipe']}: note: {note}")
    drift = result.get("drift")
    if drift and drift.get("per_batch_size"):
        parts = [f"batch {r['batch_size']}: latency {_pct(r['latency_rel_change'])}, "
                 f"energy {_pct(r['energy_rel_change'])}"
                 for r in drift["per_batch_size"]]
        lines.append("baseline drift (first vs last measurement): " + "; ".join(parts))
    if result.get("reference"):
        from .reference import summary_lines

        lines.append("")
        lines.extend(summary_lines(result["reference"]))
    if result.get("tradeoff"):
        from .tradeoff import format_tradeoff

        text = format_tradeoff(result["tradeoff"])
        if text:
            lines.append("")
            lines.append(text)
    for w in result.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def _generation_cells(m: dict) -> list[str]:
    def num(key, fmt="{:.3f}"):
        value = m.get(key)
        return "-" if value is None else fmt.format(value)

    per_token = m.get("energy_j_per_output_token")
    rel = m.get("energy_j_per_output_token_uncertainty_rel")
    token_cell = "-" if per_token is None else f"{per_token:.4g}" + (f" ±{rel:.0%}" if rel is not None else "")
    return [str(m["batch_size"]), num("ttft_ms_p95"), num("tpot_ms_p95"), num("output_tokens_per_s", "{:.1f}"),
            token_cell, _fmt_energy(dict(m, energy_j_per_inference=m.get("energy_j_per_request")))]


def _pct(x) -> str:
    return "-" if x is None else f"{x:+.1%}"


# command-line flag -> engine option, copied when given
_OPTION_FLAGS = {
    "threads": "threads", "time_cap": "time_cap_s", "window": "window_s", "idle": "idle_s",
    "eval_samples": "eval_max_samples", "max_accuracy_drop": "max_accuracy_drop",
    "queries_per_day": "queries_per_day", "price_per_kwh": "electricity_price_per_kwh",
    "scenario": "scenario", "prompt_tokens": "prompt_tokens", "new_tokens": "new_tokens",
    "generation_backend": "generation_backend",
    "timing_mode": "timing_mode", "rounds": "rounds", "latency_target_ms_p95": "latency_target_ms_p95",
    "slo_ttft_ms_p95": "slo_ttft_ms_p95", "slo_tpot_ms_p95": "slo_tpot_ms_p95",
    "power_limit_sweep": "power_limit_sweep", "concurrency": "concurrency", "request_rate": "request_rate",
    "min_fidelity": "min_fidelity", "max_kl_divergence": "max_kl_divergence",
    "max_perplexity_increase_rel": "max_perplexity_increase_rel",
    "max_metric_increase_rel": "max_metric_increase_rel", "min_saving": "min_saving",
    "equivalence_margin": "equivalence_margin",
}


def _options(args) -> dict:
    options: dict = {option: getattr(args, flag) for flag, option in _OPTION_FLAGS.items()
                     if getattr(args, flag) is not None}
    if args.architecture:
        options["architecture"] = args.architecture
    if args.architecture_config:
        try:
            options["architecture_config"] = json.loads(args.architecture_config)
        except ValueError:
            raise EngineError("--architecture-config is not valid JSON") from None
    levels = ([{"concurrency": c} for c in args.concurrency or []]
              + [{"request_rate": r} for r in args.request_rate or []])
    if levels:
        options["load_levels"] = levels
    if args.inputs:
        from .inputs import input_overrides_from

        options["input_overrides"] = input_overrides_from(args.inputs)
    return options


def _reference(args) -> dict | None:
    """The request's ``reference`` entry for ``--reference``; its loading options are the run's."""
    if args.reference is None:
        return None
    return {"path": str(args.reference), "format": "auto", "seq_len": None, "options": {},
            "label": args.reference_label or args.reference.name}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .profile import profile_model

    bar = None if args.quiet else ProgressBar()

    def run_once(request: dict) -> dict:
        return profile_model(args.path, format=args.format, device=args.device, batch_sizes=args.batch_sizes,
                             seq_len=args.seq_len, recipes=args.recipes, dataset=args.dataset or None,
                             options=request["options"], progress=bar, reference=_reference(args),
                             workload=args.workload)

    try:
        request = {"device": args.device, "options": _options(args)}
        if request["options"].get("power_limit_sweep"):
            from workers.power import sweep_or_run  # the worker's own sweep: one run per power limit

            result = sweep_or_run(request, run_once)
        else:
            result = run_once(request)
    except EngineError as exc:
        if bar:
            bar.finish()
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_MODEL_ERROR
    if bar:
        bar.finish()
    print(summary_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
        print(f"result written to {args.json}", file=sys.stderr)
    if not any(v["status"] == "succeeded" for v in result["variants"]):
        reasons = "; ".join(f"{v['recipe']} {v['status']}: {' '.join(str(v['error']).split())}"
                            for v in result["variants"])
        print(f"error: no variant succeeded ({reasons})", file=sys.stderr)
        return EXIT_ALL_VARIANTS_FAILED
    return 0
