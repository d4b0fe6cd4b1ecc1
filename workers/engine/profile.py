"""Profile a model: load it, count its FLOPs, measure every variant at every batch size.

``profile_model`` produces the result document of docs/ENGINE_INTERFACE.md;
``run_request`` maps a sandbox request onto it (the child process calls it).

Variants come from recipes. A recipe is a named, parameterised transformation of the loaded
model that declares which formats, model kinds and devices it applies to; ``baseline`` is the
identity. A recipe that does not apply gives a "skipped" variant with its reason; one that
raises gives a "failed" variant with the error; the other variants go on.

Measurements are paired (``rounds.py``): for each batch size the variants are measured in
interleaved rounds with the baseline, and each variant reports its ratios to the baseline with
95% intervals from the rounds. Every measurement, comparison and the audit carry a quality grade
(``quality.py``).

The run is a sequence of stages, each a function in ``profile_stages.py``: load, build the
variants, count them, measure them, evaluate them; then ``profile_result.py`` assembles the result.
"""

from __future__ import annotations

import os
from typing import Callable

from .errors import LoadError
from .loaders import LoadedModel, load_model
from .profile_options import DEFAULT_OPTIONS, _merge_options, _resolve_scenario, _resolve_spec, _set_threads
from .profile_stages import (_PCT_IDLE, _PCT_LOADED, _PCT_MEASURED_WITH_EVAL, _PCT_MEASURED_WITHOUT_LABELS, _Progress, _Run,
                             _baseline_doc, _prepare_dataset, _reference_fidelity, _stage_count, _stage_evaluate,
                             _stage_measure, _stage_reference, _stage_variants)
from .profile_result import _stage_result
from .recipes import RECIPES, Recipe, recipe
from .serving.stage import serving_scenario, stage_serve, wants_serving

__all__ = ["RECIPES", "Recipe", "recipe", "profile_model", "run_request", "DEFAULT_OPTIONS"]


# --- recipes -------------------------------------------------------------------------------
# The framework and the recipes live in ``recipes/``; re-exported here because the web process
# imports ``workers.engine.profile.RECIPES`` to list them (neither module imports torch).

# --- the run -------------------------------------------------------------------------------


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
    reference: dict | None = None,
    workload=None,
) -> dict:
    """Profile the model at ``path`` and return the contract's result document.

    ``recipes`` are specs (``"int8-dynamic"``, ``"prune-unstructured:0.5"``); ``dataset`` a file
    or a ``builtin:`` name; ``reference`` another version to compare the baseline with
    (``reference.py``); ``workload`` a serving workload (JSONL file or ``builtin:default``): with
    it, or with ``load_levels`` in the options, a language model is measured serving that workload
    at each load level (``serving/stage.py``). Raises FormatError / LoadError when the model cannot be detected or
    loaded or the dataset does not fit it; a variant or reference that fails later is reported
    in the document instead.
    """
    from .reference import Reference

    options = _merge_options(options)
    batch_sizes = [int(b) for b in batch_sizes] or [1]
    if any(b < 1 for b in batch_sizes):
        raise LoadError(f"batch sizes must be positive, got {batch_sizes}")
    recipes = list(recipes) or ["baseline"]
    run = _Run(options=options, device=device, seq_len=seq_len, batch_sizes=batch_sizes,
               report=_Progress(progress, len(recipes)),
               pct_measured=_PCT_MEASURED_WITH_EVAL if dataset else _PCT_MEASURED_WITHOUT_LABELS)
    run.reference = Reference.from_request(reference, options, seq_len)

    if options.get("carbon_warning"):  # e.g. a live intensity provider failed and the table stood in
        run.warnings.append(str(options["carbon_warning"]))
    # The upload's name only: the path is the server's storage path, which pages must not show.
    run.report("loading", 0.0, f"loading {os.path.basename(str(path).rstrip('/')) or 'the model'}")
    run.threads = _set_threads(options)
    loaded = load_model(path, format, options, device)
    run.warnings.extend(loaded.warnings)
    run.report("loading", _PCT_LOADED, f"loaded {loaded.format} model {loaded.architecture}")

    models: dict[int, LoadedModel] = {}
    try:
        serving = None
        if wants_serving(workload, options):
            run.scenario, *serving = serving_scenario(loaded, workload, options)
            if run.reference is not None:
                run.warnings.append(f"the reference {run.reference.label} was not measured: release comparison "
                                    "runs in the forward and generation scenarios, not yet in serving")
                run.reference.close()
                run.reference = None
        else:
            run.scenario = _resolve_scenario(loaded, options)
        if run.reference is not None:
            _stage_reference(run, loaded)
        specs = [_resolve_spec(str(spec), options) for spec in recipes]
        eval_data, train_data, data_notes = _prepare_dataset(dataset, loaded, seq_len, options, specs)
        models = _stage_variants(run, loaded, specs, train_data)
        _stage_count(run, loaded, models)
        if models and serving is not None:
            stage_serve(run, models, *serving, _PCT_IDLE)
        elif models:
            _stage_measure(run, models)
        if run.reference is not None:
            run.reference.settle(_baseline_doc(run))
        eval_data = _stage_evaluate(run, loaded, models, eval_data)
        if run.reference is not None:
            _reference_fidelity(run, loaded, eval_data)
        if eval_data is not None:
            run.warnings.extend(data_notes)
    finally:
        if run.meter is not None and hasattr(run.meter, "close"):
            run.meter.close()
        for model in {id(m): m for m in models.values()}.values():
            if model is not loaded:
                model.close()
        loaded.close()
        if run.reference is not None:
            run.reference.close()
    return _stage_result(run, loaded)


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
        reference=request.get("reference") or None,
        workload=request.get("workload") or None,
    )
