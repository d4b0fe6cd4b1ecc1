"""The serving scenario of a profiling run (issue 20): what profile.py does instead of the
static-batch generation rounds when the request names a workload or load levels.

- ``serving_scenario``: the result's ``scenario`` entry (kind ``serving``): the workload (its
  source, hash and length statistics), the load levels, the SLO, the backend and its version;
  refuses (WorkloadError, LoadError) a workload the model cannot serve, before anything is built.
- ``stage_serve``: idle power, then every variant at every level in paired rounds
  (``rounds.py``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import LoadError
from .workload import DEFAULT_WORKLOAD_PATH, WorkloadError, length_statistics, load_workload, prompt_ids

DEFAULT_LEVELS = ({"concurrency": 1}, {"concurrency": 4})
BUILTIN_DEFAULT = "builtin:default"
# English prose in a BPE vocabulary (GPT-2, Llama): about 3/4 of a word per token (OpenAI's
# tokenizer guide), used only to serve the shipped default to a model that brings no tokenizer
TOKENS_PER_WORD = 4 / 3


def wants_serving(workload, options: dict) -> bool:
    return bool(workload) or bool(options.get("load_levels")) or options.get("scenario") == "serving"


def load_levels(options: dict) -> list[dict]:
    """The levels asked for, checked: [{"concurrency": N} | {"request_rate": R}, ...]."""
    levels = options.get("load_levels") or list(DEFAULT_LEVELS)
    if not isinstance(levels, list) or len(levels) > 16:
        raise WorkloadError("load_levels is a list of at most 16 levels")
    out = []
    for level in levels:
        if not isinstance(level, dict) or len(level) != 1 or not ({"concurrency", "request_rate"} & set(level)):
            raise WorkloadError(f"a load level is {{'concurrency': N}} or {{'request_rate': R}}, got {level!r}")
        if level not in out:
            out.append(dict(level))
    return out


def _read(workload) -> tuple[list, dict]:
    if not workload or workload == BUILTIN_DEFAULT:
        path, source = DEFAULT_WORKLOAD_PATH, "the shipped default (workers/engine/data/serving_workload.jsonl)"
    else:
        path = Path(workload)
        source = path.name
    requests = load_workload(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return requests, {"source": source, "sha256": digest, **length_statistics(requests)}


def serving_scenario(loaded, workload, options: dict) -> tuple[dict, list, list]:
    """(the scenario entry, each request's prompt ids, each request's max_new_tokens)."""
    from .. import generation
    from .load import BACKEND, DEFAULT_OPTIONS as SERVING_DEFAULTS, _check_level, _ramp, backend_version

    if loaded.task != "text-generation" or not generation.is_generative(loaded):
        raise LoadError(f"the serving scenario needs a decoder-only text-generation model; this one is "
                        f"{loaded.architecture} ({loaded.task})")
    backend = str(options.get("generation_backend") or "transformers").strip().lower()
    if backend != "transformers":
        raise LoadError(f"the serving scenario runs on transformers' continuous batching; the {backend} backend "
                        "serves the static-batch generation scenario only (yet)")
    requests, about = _read(workload)
    tokenizer, _ = generation._load_tokenizer(loaded.source_dir)
    if tokenizer is None and about["source"].startswith("the shipped default"):
        requests = [_as_length(r) for r in requests]
        about["lengths_note"] = (f"the model has no tokenizer: each text prompt of the shipped default was served as "
                                 f"{TOKENS_PER_WORD:.3g} tokens per word of it, cut from the corpus")
    prompts = prompt_ids(requests, loaded.config, tokenizer, seed=int(options.get("serving_seed") or 0))
    max_news = [r.max_new_tokens for r in requests]
    levels = load_levels(options)
    merged = {**SERVING_DEFAULTS, **options}
    for level in levels:  # before anything is measured: a level the workload is too small for
        _check_level(level, len(prompts), _ramp(level, len(prompts), merged))
    about["prompt_tokens"] = _token_stats([len(p) for p in prompts])
    about["tokenized_with"] = "the model's tokenizer" if tokenizer is not None else "no tokenizer (prompts as token ids or lengths)"
    about.update(_flops(loaded, prompts, max_news))
    scenario = {"kind": "serving", "prompt_tokens": None, "new_tokens": None, "backend": BACKEND,
                "backend_version": backend_version(), "workload": about, "load_levels": levels,
                "slo": {"ttft_ms": options.get("slo_ttft_ms_p95"), "tpot_ms": options.get("slo_tpot_ms_p95")},
                "energy_attribution": "tokens"}
    return scenario, prompts, max_news


def _flops(loaded, prompts, max_news) -> dict:
    from .flops import workload_flops
    from .workload import context_positions

    context = context_positions(loaded.config)
    try:
        return workload_flops(loaded.module, prompts, max_news, context=context[1] if context else None,
                              device=loaded.device)
    except Exception as exc:  # noqa: BLE001 - the measurements do not need the count
        return {"flops_per_request": None, "flops_per_output_token": None,
                "flops_method": f"the FLOP count failed: {type(exc).__name__}: {exc}"[:500]}


def _as_length(request):
    """A text request of the shipped default as a prompt length, for a model without a tokenizer."""
    from dataclasses import replace

    if request.prompt is None:
        return request
    return replace(request, prompt=None, prompt_length=max(1, round(len(request.prompt.split()) * TOKENS_PER_WORD)))


def _token_stats(values: list[int]) -> dict:
    values = sorted(values)
    return {"min": values[0], "median": values[len(values) // 2], "max": values[-1],
            "mean": sum(values) / len(values)}


def stage_serve(run, models: dict, prompts: list, max_news: list, pct_idle: float) -> None:
    """Idle power, then every variant at every load level in paired rounds."""
    from .. import timing
    from ..meters import select_meter
    from ..profile_stages import meter_warnings
    from .figures import Slo
    from .rounds import measure_serving_paired

    run.meter = select_meter(run.device, run.options)
    idle_s = float(run.options.get("idle_s") or 0.0)
    run.report("idle-baseline", pct_idle, f"measuring idle power for {idle_s:g} s")
    idle_w = timing.measure_idle(run.meter, idle_s)
    meter_warnings(run)
    slo = Slo(ttft_ms=run.options.get("slo_ttft_ms_p95"), tpot_ms=run.options.get("slo_tpot_ms_p95"))
    options = {**run.options, "idle_power_w": idle_w}
    measure_serving_paired(models, run.variants, prompts, max_news, run.scenario["load_levels"], meter=run.meter,
                           device=run.device, slo=slo, options=options, report=run.report, pct_start=pct_idle,
                           pct_end=run.pct_measured, timing=run.timing)  # windows: the steady windows
