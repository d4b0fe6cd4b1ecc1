"""The measurement options a user may set on an audit (form and API alike), checked once here
and passed to the engine as request options (docs/ENGINE_INTERFACE.md, schema 2)."""
from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError

# The engine's caps (workers/engine/generation.py MAX_NEW_TOKENS); repeated here so the web
# process does not import torch to check a form.
MAX_NEW_TOKENS = 1024
MAX_PROMPT_TOKENS = 32768
SCENARIOS = ("auto", "forward", "generation", "serving")
MAX_LOAD_LEVELS = 8  # of each kind (the engine takes 16 in all: workers/engine/serving/stage.py)
TIMING_MODES = ("latency", "throughput")


@dataclass(frozen=True)
class Option:
    name: str
    kind: type
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    label: str = ""  # the form's label; empty: from the name
    item: type | None = None  # kind list: each item's type ("1,4,16" or [1, 4, 16])


OPTIONS = (
    Option("scenario", str, "auto: generation for text-generation and seq2seq models, forward passes otherwise.",
           choices=SCENARIOS),
    Option("prompt_tokens", int, "Generation: prompt length in tokens (default 64).", 1, MAX_PROMPT_TOKENS),
    Option("new_tokens", int, f"Generation: new tokens per sequence, exactly (default 32, at most {MAX_NEW_TOKENS}).",
           1, MAX_NEW_TOKENS),
    Option("slo_ttft_ms_p95", float, "Generation: latency target for the first token, p95 in ms.", 0.001, 3.6e6,
           label="TTFT target (p95, ms)"),
    Option("slo_tpot_ms_p95", float, "Generation: latency target per output token, p95 in ms.", 0.001, 3.6e6,
           label="TPOT target (p95, ms)"),
    Option("concurrency", list, "Serving: closed-loop load levels, requests in flight (e.g. 1,4,16); a new request "
                                "starts when one ends.", 1, 4096, item=int, label="Concurrency"),
    Option("request_rate", list, "Serving: open-loop load levels, requests per second with seeded Poisson arrivals "
                                 "(e.g. 2,8).", 0.001, 1e5, item=float, label="Request rate (per s)"),
    Option("latency_target_ms_p95", float, "Latency target per inference, p95 in ms: the cheapest setting within it is named.",
           0.001, 3.6e6, label="Latency target (p95, ms)"),
    Option("timing_mode", str, "latency: synchronise after every call (per-call percentiles); "
                               "throughput: once per window, the way a server runs (means only).", choices=TIMING_MODES),
    Option("rounds", int, "Paired interleaved rounds of baseline and variants (default 3 on CPU).", 2, 20),
    Option("power_limit_sweep", bool, "GPU workers that allow it: measure at a few power limits and find the "
                                      "cheapest one within the latency target."),
    # The constraints a recommendation and the latency-target answer apply (workers/engine/
    # constraints.py has the defaults and the reasoning for each); empty: the default.
    Option("min_fidelity", float, "Without labels: lowest fidelity to the baseline a recommended variant keeps "
                                  "(embedding cosine or top-1 agreement; regression: 1 - relative error). "
                                  "Default 0.98 for embeddings and classifiers, 0.95 for language models.",
           0.0, 1.0, label="Min fidelity"),
    Option("max_kl_divergence", float, "Without labels: highest KL divergence of the variant's output distribution "
                                       "from the baseline's, nats (default 0.01, about 1% perplexity).",
           0.0, 100.0, label="Max KL divergence (nats)"),
    Option("max_perplexity_increase_rel", float, "Language models on real text: highest relative perplexity "
                                                 "increase over the baseline (default 0.01 = 1%).",
           0.0, 10.0, label="Max perplexity increase"),
    Option("max_accuracy_drop", float, "With labels: most of the metric a recommended variant may lose, in its own "
                                       "units (default 0.01 = 1 point of accuracy).", 0.0, 1.0,
           label="Max accuracy drop"),
    Option("max_metric_increase_rel", float, "With labels, a lower-is-better metric (perplexity, MSE): highest "
                                             "relative increase (default 0.01 = 1%).", 0.0, 10.0,
           label="Max metric increase"),
    Option("min_saving", float, "Smallest energy saving claimed: the paired ratio's whole 95% interval must lie "
                                "below 1 minus this (default 0.05).", 0.0, 0.9, label="Min saving"),
    Option("equivalence_margin", float, "\"No measurable difference\" when the paired ratio's whole 95% interval "
                                        "lies within 1 ± this (default 0.05).", 0.001, 0.9,
           label="Equivalence margin"),
)
OPTION_NAMES = tuple(o.name for o in OPTIONS)


def clean_engine_options(values: dict) -> dict:
    """The options set in ``values`` (None and "" are unset), converted and range-checked;
    raises ValidationError naming the option."""
    out = {}
    errors = {}
    for o in OPTIONS:
        raw = values.get(o.name)
        if raw is None or raw == "":
            continue
        try:
            if o.kind is list:
                value = _clean_list(o, raw)
                if value is None:
                    errors[o.name] = (f"{o.name}: up to {MAX_LOAD_LEVELS} comma-separated {o.item.__name__}s "
                                      f"between {o.low:g} and {o.high:g}.")
                elif value:
                    out[o.name] = value
                continue
            if o.kind is bool:
                if isinstance(raw, str):
                    if raw.lower() not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
                        raise ValueError
                    value = raw.lower() in ("1", "true", "on", "yes")
                else:
                    value = bool(raw)
            elif o.kind is int:
                if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                value = int(raw)
            elif o.kind is float:
                if isinstance(raw, bool):
                    raise ValueError
                value = float(raw)
            else:
                value = str(raw).strip().lower()
        except (TypeError, ValueError):
            errors[o.name] = f"{o.name}: not a valid {o.kind.__name__}."
            continue
        if o.choices and value not in o.choices:
            errors[o.name] = f"{o.name}: one of {', '.join(o.choices)}."
            continue
        if o.low is not None and not (o.low <= value <= o.high):
            errors[o.name] = f"{o.name}: between {o.low:g} and {o.high:g}."
            continue
        if o.kind is bool and not value:
            continue
        out[o.name] = value
    if errors:
        raise ValidationError(errors)
    levels = ([{"concurrency": c} for c in out.get("concurrency", [])]
              + [{"request_rate": r} for r in out.get("request_rate", [])])
    if levels:  # what the engine reads (workers/engine/serving/stage.py load_levels)
        out["load_levels"] = levels
    return out


def _clean_list(o: Option, raw) -> list | None:
    """The items of a list option, each converted and in range, duplicates dropped; None when invalid."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)):
        return None
    out = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            if not item:
                continue
        if isinstance(item, bool):
            return None
        try:
            value = o.item(float(item)) if o.item is int and not isinstance(item, str) else o.item(item)
        except (TypeError, ValueError):
            return None
        if o.item is int and isinstance(item, float) and not item.is_integer():
            return None
        if not (o.low <= value <= o.high):
            return None
        if value not in out:
            out.append(value)
    return out if len(out) <= MAX_LOAD_LEVELS else None
