"""Profile a model: load it, count its FLOPs, measure every variant at every batch size.

``profile_model`` produces the result document of docs/ENGINE_INTERFACE.md;
``run_request`` maps a sandbox request onto it (the child process calls it).

Variants come from recipes. A recipe is a named, parameterised transformation of the loaded
model that declares which formats, model kinds and devices it applies to; ``baseline`` is the
identity. A recipe that does not apply gives a "skipped" variant with its reason; one that
raises gives a "failed" variant with the error; the other variants go on.

Measurements are interleaved: for each batch size every variant is measured in turn, so slow
drift (thermal, other tenants) spreads over the variants instead of landing on one.
"""

from __future__ import annotations

from typing import Callable

from . import ENGINE_VERSION, SCHEMA_VERSION
from .errors import EngineError, FormatError, LoadError
from .counting import count_model, count_params
from .loaders import LoadedModel, load_model
from .recipes import RECIPES, Recipe, RecipeContext, RecipeSpecError, parse_recipe_spec, recipe, spec_string

__all__ = ["RECIPES", "Recipe", "recipe", "profile_model", "run_request", "DEFAULT_OPTIONS"]

DEFAULT_OPTIONS = {
    "architecture": None,
    "architecture_config": {},
    "input_overrides": {},
    "threads": None,
    "warmup_iters": 10,
    "window_s": None,  # timing picks the device's default
    "time_cap_s": None,
    "target_rel_ci": 0.02,
    "idle_s": 2.0,
    "grid_intensity_g_per_kwh": 475.0,
    "pue": 1.0,
    "carbon_source": "world average (default)",
    "recipe_params": {},
    # evaluation on the audit's dataset
    "eval_max_samples": 512,
    "eval_batch_size": 32,
    "eval_train_fraction": 0.5,  # share held out for calibration / training when a recipe needs data
    # trade-off (see tradeoff.py)
    "max_accuracy_drop": 0.01,
    "max_metric_increase_rel": 0.01,
    "queries_per_day": 1_000_000,
    "electricity_price_per_kwh": 0.15,
    "currency": "USD",
    "remeasure_baseline": True,  # measure the baseline again at the end and report the drift
}

# Share of the progress bar each stage takes; measuring gets the rest.
_PCT_LOADED = 5.0
_PCT_COUNTED = 10.0
_PCT_IDLE = 15.0
_PCT_MEASURED = 99.0
_PCT_MEASURED_WITH_EVAL = 90.0
_MAX_LABEL = 60
_DRIFT_WARNING = 0.05


# --- recipes -------------------------------------------------------------------------------
# The framework and the recipes live in ``recipes/``; re-exported here because the web process
# imports ``workers.engine.profile.RECIPES`` to list them (neither module imports torch).

# --- progress ------------------------------------------------------------------------------


class _Progress:
    def __init__(self, callback, n_variants: int):
        self.callback = callback
        self.n_variants = n_variants

    def __call__(self, stage: str, percent: float, message: str, variant: int = 0) -> None:
        if self.callback is None:
            return
        self.callback(
            {
                "event": "progress",
                "stage": stage,
                "percent": round(max(0.0, min(100.0, percent)), 2),
                "message": message,
                "variant": variant,
                "n_variants": self.n_variants,
            }
        )


# --- the run -------------------------------------------------------------------------------


def _variant_doc(name: str, params: dict) -> dict:
    return {
        "recipe": name,
        "recipe_params": params,
        "status": "succeeded",
        "error": "",
        "params": 0,
        "nonzero_params": 0,
        "size_bytes": 0,
        "flops": 0,
        "macs": 0,
        "layer_profile": [],
        "measurements": [],
        "evaluation": None,
        "notes": [],
    }


def _fail(doc: dict, status: str, message: str) -> None:
    doc["status"] = status
    doc["error"] = message


def _set_threads(options: dict) -> int | None:
    import torch

    if options.get("threads"):
        torch.set_num_threads(int(options["threads"]))
    return torch.get_num_threads()


def _merge_options(options: dict | None) -> dict:
    merged = dict(DEFAULT_OPTIONS)
    merged.update({k: v for k, v in (options or {}).items()})
    for key in ("architecture_config", "input_overrides", "recipe_params"):
        merged[key] = dict(merged.get(key) or {})
    return merged


def _resolve_spec(spec: str, options: dict) -> tuple[str, dict, str | None, str | None]:
    """(name, params, skip reason, failure) for one requested recipe spec."""
    try:
        name, spec_params = parse_recipe_spec(spec)
    except RecipeSpecError as exc:
        name = spec.strip()
        if name in RECIPES:  # registered but refused by the parser (e.g. a test's own recipe)
            params = dict(RECIPES[name].defaults)
            params.update(options["recipe_params"].get(name) or {})
            return name, params, None, None
        unknown = "unknown recipe" in str(exc)
        return name, {}, (str(exc) if unknown else None), (None if unknown else str(exc))
    params = dict(RECIPES[name].defaults)
    params.update(options["recipe_params"].get(name) or {})
    params.update(spec_params)
    return name, params, None, None


def _needs_data(name: str, params: dict) -> bool:
    rec = RECIPES.get(name)
    return bool(rec is not None and rec.needs_dataset is not None and rec.needs_dataset(params))


def _prepare_dataset(dataset, loaded, seq_len, options, specs) -> tuple:
    """(evaluation split, training split or None, notes); (None, None, []) without a dataset."""
    from .evaluation import prepare_eval_data

    if not dataset:
        return None, None, []
    try:
        data = prepare_eval_data(dataset, loaded, seq_len=seq_len, max_samples=int(options["eval_max_samples"]))
    except FormatError as exc:
        raise FormatError(f"the dataset does not fit this model: {exc}") from None
    needs = [name for name, params, skip, fail in specs if not skip and not fail and _needs_data(name, params)]
    if not needs:
        return data, None, []
    if data.n < 4:
        return data, data, [f"the dataset has only {data.n} samples: calibration / training and evaluation share them"]
    train, held_out = data.split(float(options["eval_train_fraction"]))
    note = (f"{train.n} samples of the dataset were used for calibration / training by {', '.join(needs)}; "
            f"every variant is evaluated on the other {held_out.n}")
    held_out.notes.append(note)
    return held_out, train, [note]


def profile_model(
    path,
    *,
    format: str = "auto",
    device: str = "cpu",
    batch_sizes=(1,),
    seq_len: int | None = None,
    recipes=("baseline",),
    dataset=None,
    options: dict | None = None,
    progress: Callable[[dict], None] | None = None,
) -> dict:
    """Profile the model at ``path`` and return the contract's result document.

    ``recipes`` are specs (``"int8-dynamic"``, ``"prune-unstructured:0.5"``); ``dataset`` a file
    or a ``builtin:`` name. Raises FormatError / LoadError when the model cannot be detected or
    loaded or the dataset does not fit it; a variant that fails later is reported in the
    document instead.
    """
    from . import timing
    from .fingerprint import host_fingerprint
    from .meters import select_meter
    from .tradeoff import build_tradeoff

    options = _merge_options(options)
    batch_sizes = [int(b) for b in batch_sizes] or [1]
    if any(b < 1 for b in batch_sizes):
        raise LoadError(f"batch sizes must be positive, got {batch_sizes}")
    recipes = list(recipes) or ["baseline"]
    overrides = options["input_overrides"]
    report = _Progress(progress, len(recipes))
    warnings: list[str] = []
    pct_measured = _PCT_MEASURED_WITH_EVAL if dataset else _PCT_MEASURED

    report("loading", 0.0, f"loading {path}")
    threads = _set_threads(options)
    loaded = load_model(path, format, options, device)
    warnings.extend(loaded.warnings)
    report("loading", _PCT_LOADED, f"loaded {loaded.format} model {loaded.architecture}")

    variants: list[dict] = []
    models: dict[int, LoadedModel] = {}
    same_flops: set[int] = set()
    meter = None
    drift = None
    try:
        specs = [_resolve_spec(str(spec), options) for spec in recipes]
        eval_data, train_data, data_notes = _prepare_dataset(dataset, loaded, seq_len, options, specs)
        ctx = RecipeContext(device=device, seq_len=seq_len, overrides=overrides, options=options,
                            train_data=train_data)
        for k, (name, params, skip, failure) in enumerate(specs):
            rec = RECIPES.get(name)
            shown = {kk: vv for kk, vv in params.items() if rec is None or rec.defaults.get(kk) != vv
                     or kk == rec.positional}
            label = spec_string(name, shown) if rec is not None else name
            if len(label) > _MAX_LABEL:  # the web stores it in a 60-character column
                label = label[: _MAX_LABEL - 3] + "..."
            doc = _variant_doc(label, params)
            variants.append(doc)
            if skip or failure:
                _fail(doc, "skipped" if skip else "failed", skip or failure)
                continue
            reason = rec.not_applicable(loaded, device, params, has_dataset=train_data is not None)
            if reason:
                _fail(doc, "skipped", reason)
                continue
            try:
                models[k] = rec.run(loaded, params, ctx)
            except Exception as exc:  # a recipe's failure is its variant's, not the run's
                _fail(doc, "failed", f"{type(exc).__name__}: {exc}")
                continue
            doc["notes"] = list(models[k].notes)
            if rec.same_flops and models[k] is not loaded:
                same_flops.add(k)

        original_count = None
        for k, variant_model in list(models.items()):
            doc = variants[k]
            report("counting-flops", _PCT_LOADED + (_PCT_COUNTED - _PCT_LOADED) * k / len(recipes),
                   f"counting FLOPs of {doc['recipe']}", k)
            try:
                if k in same_flops:
                    if original_count is None:
                        original_count = count_model(loaded, seq_len, overrides)
                    counted = dict(original_count, _warnings=[], _uncounted_ops=[])
                    counted["params"], counted["nonzero_params"] = count_params(variant_model)
                    counted["size_bytes"] = int(variant_model.size_bytes)
                    doc["notes"].append("FLOPs and MACs are the original model's: the same multiply-adds, "
                                        "done by other kernels")
                else:
                    counted = count_model(variant_model, seq_len, overrides)
            except EngineError as exc:
                _fail(doc, "failed", str(exc))
                del models[k]
                continue
            except Exception as exc:
                _fail(doc, "failed", f"FLOP count failed: {type(exc).__name__}: {exc}")
                del models[k]
                continue
            for w in counted.pop("_warnings"):
                if w not in warnings:
                    warnings.append(w)
            uncounted = counted.pop("_uncounted_ops")
            if uncounted:
                warnings.append(f"{doc['recipe']}: FLOPs of ops {', '.join(uncounted)} are not counted")
            doc.update(counted)

        if models:
            meter = select_meter(device, options)
            idle_s = float(options.get("idle_s") or 0.0)
            report("idle-baseline", _PCT_COUNTED, f"measuring idle power for {idle_s:g} s")
            idle_w = timing.measure_idle(meter, idle_s)
            if getattr(meter, "estimated", False):
                warnings.append(
                    f"energy figures are estimates ({meter.method}); no hardware energy counter was readable"
                )
            drift = _measure_all(models, variants, batch_sizes, seq_len, overrides, device, meter, idle_w, options,
                                 report, pct_measured)
            _note_masked_pruning(variants)
            if drift and drift["max_abs_rel_change"] is not None and drift["max_abs_rel_change"] > _DRIFT_WARNING:
                warnings.append(
                    f"the baseline moved by up to {drift['max_abs_rel_change']:.0%} between its first and last "
                    "measurement (thermal state or other load); ratios between variants are uncertain by "
                    "about that much"
                )

        if eval_data is not None:
            _evaluate_all(loaded, models, variants, eval_data, options, report, pct_measured)
            warnings.extend(data_notes)
    finally:
        if meter is not None and hasattr(meter, "close"):
            meter.close()
        for model in {id(m): m for m in models.values()}.values():
            if model is not loaded:
                model.close()
        loaded.close()

    fingerprint = dict(host_fingerprint(device))
    fingerprint["threads"] = threads
    if loaded.kind == "onnx":
        # 0 means onnxruntime's own default (one thread per physical core)
        fingerprint["onnxruntime_intra_op_threads"] = int(options.get("threads") or 0)
    report("done", 100.0, "done")
    result = {
        "schema_version": SCHEMA_VERSION,
        "engine_version": ENGINE_VERSION,
        "model": {
            "format": loaded.format,
            "architecture": loaded.architecture,
            "task": loaded.task,
            "detail": loaded.detail,
        },
        "device": device,
        "fingerprint": fingerprint,
        "carbon": {
            "intensity_g_per_kwh": float(options["grid_intensity_g_per_kwh"]),
            "pue": float(options["pue"]),
            "source": str(options["carbon_source"]),
        },
        "variants": variants,
        "drift": drift,
        "warnings": warnings,
    }
    try:
        result["tradeoff"] = build_tradeoff(result, options)
    except Exception as exc:  # the measurements stand on their own; a summary bug must not lose them
        result["tradeoff"] = None
        result["warnings"].append(f"the trade-off summary could not be built: {type(exc).__name__}: {exc}")
    return result


def _note_masked_pruning(variants: list[dict]) -> None:
    """Say plainly, with the measured ratios, what masked pruning bought on dense kernels."""
    base = next((v for v in variants if v["recipe"] == "baseline" and v["measurements"]), None)
    if base is None:
        return
    by_bs = {m["batch_size"]: m for m in base["measurements"]}
    for v in variants:
        if not v["recipe"].startswith("prune-unstructured") or not v["measurements"]:
            continue
        parts = []
        for m in v["measurements"]:
            b = by_bs.get(m["batch_size"])
            if b and b["latency_ms_p50"] and b["energy_j_per_inference"]:
                parts.append(f"batch {m['batch_size']}: latency x{m['latency_ms_p50'] / b['latency_ms_p50']:.2f}, "
                             f"energy x{m['energy_j_per_inference'] / b['energy_j_per_inference']:.2f}")
        if parts:
            v["notes"].append("measured against the baseline (dense kernels, so any difference is noise): "
                              + "; ".join(parts))


def _evaluate_all(loaded, models, variants, eval_data, options, report, pct_start) -> None:
    from .evaluation import Evaluator

    evaluator = Evaluator(loaded, eval_data, batch_size=int(options["eval_batch_size"]))
    todo = [k for k in sorted(models) if variants[k]["status"] == "succeeded"]
    for i, k in enumerate(todo):
        doc = variants[k]
        report("evaluating", pct_start + (_PCT_MEASURED - pct_start) * i / max(len(todo), 1),
               f"evaluating {doc['recipe']} on {eval_data.source}", k)
        try:
            doc["evaluation"] = evaluator.evaluate(models[k])
            doc["evaluation"]["notes"] = list(eval_data.notes)
        except Exception as exc:  # the variant keeps its measurements; its accuracy is unknown
            doc["notes"].append(f"evaluation failed: {type(exc).__name__}: {exc}")


def _measure_one(model, bs, seq_len, overrides, device, meter, idle_w, options) -> dict:
    import torch

    from . import timing

    sample = model.make_inputs(bs, seq_len, overrides)
    values = sample.values
    forward = model.forward

    def fn(values=values, forward=forward):
        return forward(values)

    with torch.inference_mode():
        measured = timing.measure(fn, batch_size=bs, device=device, meter=meter, idle_power_w=idle_w, options=options)
    return {"batch_size": bs, "input_shape": sample.input_shape, **measured}


def _measure_all(models, variants, batch_sizes, seq_len, overrides, device, meter, idle_w, options, report,
                 pct_end=_PCT_MEASURED):
    """Interleaved: for each batch size every variant in turn; then the baseline once more per
    batch size. Returns the drift entry (None without a measured baseline)."""
    base_k = next((k for k in sorted(models) if variants[k]["recipe"] == "baseline"), None)
    remeasure = base_k is not None and bool(options.get("remeasure_baseline", True))
    steps = [(bs, k) for bs in batch_sizes for k in sorted(models)]
    if remeasure:
        steps += [(bs, None) for bs in batch_sizes]
    last: dict[int, dict] = {}
    for i, (bs, k) in enumerate(steps):
        again = k is None
        k = base_k if again else k
        doc = variants[k]
        if doc["status"] != "succeeded":
            continue
        report("measuring", _PCT_IDLE + (pct_end - _PCT_IDLE) * i / len(steps),
               f"measuring {doc['recipe']}{' again' if again else ''} at batch size {bs}", k)
        try:
            measured = _measure_one(models[k], bs, seq_len, overrides, device, meter, idle_w, options)
        except Exception as exc:
            if not again:
                _fail(doc, "failed", f"measuring at batch size {bs} failed: {type(exc).__name__}: {exc}")
            continue
        if again:
            last[bs] = measured
        else:
            doc["measurements"].append(measured)
    report("measuring", pct_end, "measurements finished")
    return _drift(variants[base_k], last) if remeasure else None


def _rel(a, b):
    return (a - b) / b if a is not None and b else None


def _drift(baseline_doc: dict, last: dict) -> dict:
    """Baseline measured first vs last, per batch size: relative change of latency and energy."""
    rows = []
    for first in baseline_doc["measurements"]:
        again = last.get(first["batch_size"])
        if again is None:
            continue
        rows.append({
            "batch_size": first["batch_size"],
            "latency_ms_p50_first": first["latency_ms_p50"],
            "latency_ms_p50_last": again["latency_ms_p50"],
            "latency_rel_change": _rel(again["latency_ms_p50"], first["latency_ms_p50"]),
            "energy_j_per_inference_first": first["energy_j_per_inference"],
            "energy_j_per_inference_last": again["energy_j_per_inference"],
            "energy_rel_change": _rel(again["energy_j_per_inference"], first["energy_j_per_inference"]),
        })
    worst = max((abs(r[key]) for r in rows for key in ("latency_rel_change", "energy_rel_change")
                 if r[key] is not None), default=None)
    return {"recipe": "baseline", "per_batch_size": rows, "max_abs_rel_change": worst}


def run_request(request: dict, progress: Callable[[dict], None]) -> dict:
    """Run one sandbox request (see docs/ENGINE_INTERFACE.md) and return the result document."""
    command = request.get("command", "profile")
    if command != "profile":
        raise LoadError(f"unknown engine command {command!r}; only 'profile' is supported")
    if not request.get("path"):
        raise LoadError("the request names no model path")
    return profile_model(
        request["path"],
        format=request.get("format") or "auto",
        device=request.get("device") or "cpu",
        batch_sizes=request.get("batch_sizes") or (1,),
        seq_len=request.get("seq_len"),
        recipes=request.get("recipes") or ("baseline",),
        dataset=request.get("dataset"),
        options=request.get("options") or {},
        progress=progress,
    )
