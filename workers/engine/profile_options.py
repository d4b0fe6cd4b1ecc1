"""What a profiling run is asked to do, normalised: the option defaults merged with the
request's, each requested recipe spec resolved to a name and parameters (or a reason to skip
or fail it), the torch thread count, and the scenario (forward passes or generation)."""

from __future__ import annotations

from . import carbon as carbon_table
from .errors import LoadError
from .generation import GENERATIVE_TASKS
from .loaders import LoadedModel
from .recipes import RECIPES, RecipeSpecError, parse_recipe_spec


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
    "pue": 1.0,
    # None: the world average from the shipped table (carbon.py), with its provenance; the web
    # app passes the team's or the audit's grid region instead
    "grid_intensity_g_per_kwh": None,
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
    "rounds": None,  # paired rounds at least; None: rounds.DEFAULT_MIN_ROUNDS
    # the paired verdict (sequential.py): a saving or a cost is claimed beyond min_saving, "no
    # measurable difference" within the equivalence margin; between_run_rel None: the device
    # class's calibrated component (data/between_run.csv)
    "min_saving": 0.05,
    "equivalence_margin": 0.05,
    "between_run_rel": None,
    # the generation scenario (generation.py)
    "scenario": "auto",  # auto: generation for text-generation and seq2seq models
    "prompt_tokens": 64,
    "new_tokens": 32,
    "generation_backend": "transformers",  # or "vllm" where it is installed (vllm_backend.py)
    "slo_ttft_ms_p95": None,
    "slo_tpot_ms_p95": None,
    "min_fidelity": None,  # trade-off without labels: None = the default per kind of fidelity (constraints.py)
}

# Tasks whose models generate text: their audits measure the generation scenario by default.

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
    if merged.get("grid_intensity_g_per_kwh") is None:
        merged.update(carbon_table.lookup("WORLD"))
    merged.setdefault("carbon_source", "request")
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


def _resolve_scenario(loaded: LoadedModel, options: dict) -> dict:
    """Forward passes, or the generation scenario for models that generate (``generation.py``)."""
    wanted = (options.get("scenario") or "auto").strip().lower()
    if wanted not in ("auto", "forward", "generation"):
        raise LoadError(f"unknown scenario {wanted!r}; one of auto, forward, generation")
    forward = {"kind": "forward", "prompt_tokens": None, "new_tokens": None, "backend": None}
    if wanted == "forward" or (wanted == "auto" and loaded.task not in GENERATIVE_TASKS):
        return forward
    from . import generation

    if not generation.is_generative(loaded):
        if wanted == "generation":
            raise LoadError(f"the generation scenario needs a text-generation or seq2seq model; this one is "
                            f"{loaded.architecture} ({loaded.task})")
        return forward
    return generation.scenario(loaded, options)  # lengths checked, backend and prompt source resolved


