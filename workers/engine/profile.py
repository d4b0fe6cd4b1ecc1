"""Profile a model: load it, count its FLOPs, measure every variant at every batch size.

``profile_model`` produces the result document of docs/ENGINE_CONTRACT.md;
``run_request`` maps a sandbox request onto it (the child process calls it).

Variants come from recipes. A recipe is a named, parameterised transformation of the loaded
model that declares which formats, model kinds and devices it applies to; ``baseline`` is the
identity. A recipe that does not apply gives a "skipped" variant with its reason; one that
raises gives a "failed" variant with the error; the other variants go on.

Measurements are interleaved: for each batch size every variant is measured in turn, so slow
drift (thermal, other tenants) spreads over the variants instead of landing on one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import ENGINE_VERSION, SCHEMA_VERSION
from .errors import EngineError, LoadError
from .loaders import LoadedModel, load_model

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
}

# Share of the progress bar each stage takes; measuring gets the rest.
_PCT_LOADED = 5.0
_PCT_COUNTED = 10.0
_PCT_IDLE = 15.0
_PCT_MEASURED = 99.0


# --- recipes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """``apply(loaded, params) -> LoadedModel`` builds the variant; it may return ``loaded`` itself.

    ``formats`` / ``kinds`` / ``devices``: where it applies (None means everywhere); ``devices``
    holds "cpu" and/or "cuda". ``defaults`` are its parameters, overridable per request through
    ``options["recipe_params"][name]``.
    """

    name: str
    apply: Callable[[LoadedModel, dict], LoadedModel]
    description: str = ""
    formats: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    defaults: dict = field(default_factory=dict)

    def not_applicable(self, loaded: LoadedModel, device: str) -> str | None:
        """Why this recipe cannot run on ``loaded`` on ``device``; None when it can."""
        if self.formats is not None and loaded.format not in self.formats:
            return f"recipe {self.name!r} applies to {', '.join(self.formats)} models, not {loaded.format}"
        if self.kinds is not None and loaded.kind not in self.kinds:
            return f"recipe {self.name!r} applies to {', '.join(self.kinds)} models, not {loaded.kind}"
        device_kind = "cuda" if device.startswith("cuda") else "cpu"
        if self.devices is not None and device_kind not in self.devices:
            return f"recipe {self.name!r} runs on {', '.join(self.devices)}, not {device_kind}"
        return None


RECIPES: dict[str, Recipe] = {}


def recipe(name: str, *, description: str = "", formats=None, kinds=None, devices=None, defaults=None):
    """Decorator registering ``fn(loaded, params) -> LoadedModel`` as recipe ``name``."""

    def decorate(fn):
        RECIPES[name] = Recipe(
            name=name,
            apply=fn,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            formats=tuple(formats) if formats else None,
            kinds=tuple(kinds) if kinds else None,
            devices=tuple(devices) if devices else None,
            defaults=dict(defaults or {}),
        )
        return fn

    return decorate


@recipe("baseline")
def baseline(loaded: LoadedModel, params: dict) -> LoadedModel:
    """The model as uploaded."""
    return loaded


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


# --- counting ------------------------------------------------------------------------------


def _torch_params(module) -> tuple[int, int]:
    import torch

    params = 0
    nonzero = 0
    with torch.no_grad():
        for p in module.parameters():
            params += p.numel()
            nonzero += int(torch.count_nonzero(p).item())
    return params, nonzero


def _onnx_params(model_path) -> tuple[int, int]:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))  # external data already checked to stay in the folder
    params = 0
    nonzero = 0
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if not np.issubdtype(array.dtype, np.floating):
            continue  # shape constants and indices are not weights
        params += int(array.size)
        nonzero += int(np.count_nonzero(array))
    return params, nonzero


def _count(loaded: LoadedModel, seq_len, overrides) -> dict:
    from . import flops

    sample = loaded.make_inputs(1, seq_len, overrides)
    if loaded.kind == "onnx":
        report = flops.count_onnx(loaded.model_path, sample.input_shape)
        params, nonzero = _onnx_params(loaded.model_path)
    else:
        report = flops.count_torch(loaded.module, sample.values, call=loaded.call)
        params, nonzero = _torch_params(loaded.module)
    return {
        "params": params,
        "nonzero_params": nonzero,
        "size_bytes": int(loaded.size_bytes),
        "flops": int(report.flops),
        "macs": int(report.macs),
        "layer_profile": report.layer_profile,
        "_uncounted_ops": report.uncounted_ops,
        "_warnings": sample.warnings,
    }


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

    Raises FormatError / LoadError when the model cannot be detected or loaded; a variant that
    fails later is reported in the document instead.
    """
    from . import timing
    from .fingerprint import host_fingerprint
    from .meters import select_meter

    options = _merge_options(options)
    batch_sizes = [int(b) for b in batch_sizes] or [1]
    if any(b < 1 for b in batch_sizes):
        raise LoadError(f"batch sizes must be positive, got {batch_sizes}")
    recipes = list(recipes) or ["baseline"]
    overrides = options["input_overrides"]
    report = _Progress(progress, len(recipes))
    warnings: list[str] = []

    report("loading", 0.0, f"loading {path}")
    threads = _set_threads(options)
    loaded = load_model(path, format, options, device)
    warnings.extend(loaded.warnings)
    report("loading", _PCT_LOADED, f"loaded {loaded.format} model {loaded.architecture}")

    variants: list[dict] = []
    models: dict[int, LoadedModel] = {}
    meter = None
    try:
        for k, name in enumerate(recipes):
            params = dict(RECIPES[name].defaults) if name in RECIPES else {}
            params.update(options["recipe_params"].get(name) or {})
            doc = _variant_doc(name, params)
            variants.append(doc)
            rec = RECIPES.get(name)
            if rec is None:
                _fail(doc, "skipped", f"unknown recipe {name!r}; known recipes: {', '.join(sorted(RECIPES))}")
                continue
            reason = rec.not_applicable(loaded, device)
            if reason:
                _fail(doc, "skipped", reason)
                continue
            try:
                models[k] = rec.apply(loaded, params)
            except Exception as exc:  # a recipe's failure is its variant's, not the run's
                _fail(doc, "failed", f"{type(exc).__name__}: {exc}")

        for k, variant_model in list(models.items()):
            doc = variants[k]
            report("counting-flops", _PCT_LOADED + (_PCT_COUNTED - _PCT_LOADED) * k / len(recipes),
                   f"counting FLOPs of {doc['recipe']}", k)
            try:
                counted = _count(variant_model, seq_len, overrides)
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
            _measure_all(models, variants, batch_sizes, seq_len, overrides, device, meter, idle_w, options, report)
    finally:
        if meter is not None and hasattr(meter, "close"):
            meter.close()
        for model in {id(m): m for m in models.values()}.values():
            if model is not loaded:
                model.close()
        loaded.close()

    if dataset:
        warnings.append("evaluation on a dataset is not available yet; 'evaluation' is null")
    fingerprint = dict(host_fingerprint(device))
    fingerprint["threads"] = threads
    if loaded.kind == "onnx":
        # 0 means onnxruntime's own default (one thread per physical core)
        fingerprint["onnxruntime_intra_op_threads"] = int(options.get("threads") or 0)
    report("done", 100.0, "done")
    return {
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
        "warnings": warnings,
    }


def _measure_all(models, variants, batch_sizes, seq_len, overrides, device, meter, idle_w, options, report):
    import torch

    from . import timing

    steps = [(bs, k) for bs in batch_sizes for k in sorted(models)]
    for i, (bs, k) in enumerate(steps):
        doc = variants[k]
        if doc["status"] != "succeeded":
            continue
        model = models[k]
        report("measuring", _PCT_IDLE + (_PCT_MEASURED - _PCT_IDLE) * i / len(steps),
               f"measuring {doc['recipe']} at batch size {bs}", k)
        try:
            sample = model.make_inputs(bs, seq_len, overrides)
            values = sample.values
            forward = model.forward

            def fn(values=values, forward=forward):
                return forward(values)

            with torch.inference_mode():
                measured = timing.measure(
                    fn, batch_size=bs, device=device, meter=meter, idle_power_w=idle_w, options=options
                )
        except Exception as exc:
            _fail(doc, "failed", f"measuring at batch size {bs} failed: {type(exc).__name__}: {exc}")
            continue
        doc["measurements"].append({"batch_size": bs, "input_shape": sample.input_shape, **measured})
    report("measuring", _PCT_MEASURED, "measurements finished")


def run_request(request: dict, progress: Callable[[dict], None]) -> dict:
    """Run one sandbox request (see docs/ENGINE_CONTRACT.md) and return the result document."""
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
