"""The stages of ``profile_model`` (profile.py), in the order it runs them, and what they share:
the run's state (``_Run``) and its progress events (``_Progress``). Load the reference, build
the variants from their recipes, count them, measure them in paired rounds, evaluate them;
profile_result.py assembles the result document."""

from __future__ import annotations

import time

from .errors import EngineError, FormatError
from .counting import count_model, count_params
from .loaders import LoadedModel
from .profile_options import _resolve_scenario
from .recipes import RECIPES, RecipeContext, spec_string
from .rounds import new_timing as rounds_timing

# Share of the progress bar each stage takes; measuring gets the rest.
_PCT_LOADED = 5.0
_PCT_COUNTED = 10.0
_PCT_IDLE = 15.0
_PCT_MEASURED = 99.0
_PCT_MEASURED_WITH_EVAL = 90.0
_PCT_MEASURED_WITHOUT_LABELS = 95.0  # fidelity on generated inputs follows
_MAX_LABEL = 60
_DRIFT_WARNING = 0.05


class _Progress:
    """Progress events (docs/ENGINE_INTERFACE.md); the percentage never goes down."""

    def __init__(self, callback, n_variants: int):
        self.callback = callback
        self.n_variants = n_variants
        self.percent = 0.0

    def __call__(self, stage: str, percent: float, message: str, variant: int = 0, *, batch_size=None,
                 phase=None, round_no=None, n_rounds=None, eta_s=None) -> None:
        self.percent = max(self.percent, max(0.0, min(100.0, percent)))
        if self.callback is None:
            return
        self.callback(
            {
                "event": "progress",
                "stage": stage,
                "percent": round(self.percent, 2),
                "message": message,
                "variant": variant,
                "n_variants": self.n_variants,
                "batch_size": batch_size,
                "phase": phase,
                "round": round_no,
                "n_rounds": n_rounds,
                # seconds of measuring left, from the windows and warm-ups measured so far
                "eta_s": None if eta_s is None else round(float(eta_s), 1),
            }
        )



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
        "comparison": [],
        "evaluation": None,
        "notes": [],
    }


def _fail(doc: dict, status: str, message: str) -> None:
    doc["status"] = status
    doc["error"] = message


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


class _Run:
    """What the stages share: the options, the progress, and what each stage adds."""

    def __init__(self, *, options, device, seq_len, batch_sizes, report, pct_measured):
        self.options = options
        self.device = device
        self.seq_len = seq_len
        self.batch_sizes = batch_sizes
        self.overrides = options["input_overrides"]
        self.report = report
        self.pct_measured = pct_measured
        self.warnings: list[str] = []
        self.variants: list[dict] = []
        self.meter = None
        self.drift = None
        self.threads = None
        self.reference = None  # reference.Reference when the request names one
        self.scenario = {"kind": "forward", "prompt_tokens": None, "new_tokens": None, "backend": None}
        self.started = time.perf_counter()
        self.timing = rounds_timing()  # warm-up and window seconds, for the result's run_timing


def _stage_reference(run: _Run, loaded: LoadedModel) -> None:
    """Load the reference version and check that both can be fed inputs that compare."""
    ref = run.reference
    run.report("loading", _PCT_LOADED, f"loading the reference {ref.label}")
    ref.load(run.device)
    if not ref.measurable:
        return
    run.warnings.extend(f"reference {ref.label}: {w}" for w in ref.loaded.warnings)
    ref.check_inputs(loaded, run.scenario, lambda: _resolve_scenario(ref.loaded, run.options), run.seq_len,
                     run.overrides)


def _baseline_doc(run: _Run) -> dict | None:
    return next((v for v in run.variants if v["recipe"] == "baseline"), None)


def _reference_fidelity(run: _Run, loaded: LoadedModel, eval_data) -> None:
    from .reference import measure_fidelity

    warning = measure_fidelity(run.reference, loaded, eval_data, int(run.options["eval_batch_size"]))
    if warning:
        run.warnings.append(warning)


def _variant_label(name: str, params: dict, rec) -> str:
    shown = {k: v for k, v in params.items() if rec is None or rec.defaults.get(k) != v or k == rec.positional}
    label = spec_string(name, shown) if rec is not None else name
    if len(label) > _MAX_LABEL:  # the web stores it in a 60-character column
        label = label[: _MAX_LABEL - 3] + "..."
    return label


def _stage_variants(run: _Run, loaded: LoadedModel, specs, train_data) -> dict[int, LoadedModel]:
    """Apply each recipe; a recipe that does not apply is skipped, one that fails fails its variant."""
    ctx = RecipeContext(device=run.device, seq_len=run.seq_len, overrides=run.overrides, options=run.options,
                        train_data=train_data)
    models: dict[int, LoadedModel] = {}
    run.same_flops = set()
    for k, (name, params, skip, failure) in enumerate(specs):
        rec = RECIPES.get(name)
        doc = _variant_doc(_variant_label(name, params, rec), params)
        run.variants.append(doc)
        if skip or failure:
            _fail(doc, "skipped" if skip else "failed", skip or failure)
            continue
        reason = rec.not_applicable(loaded, run.device, params, has_dataset=train_data is not None)
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
            run.same_flops.add(k)
    return models


def _stage_count(run: _Run, loaded: LoadedModel, models: dict) -> None:
    """Parameters, size, FLOPs and MACs of every variant; a count that fails fails its variant."""
    original_count = None
    for k, variant_model in list(models.items()):
        doc = run.variants[k]
        run.report("counting-flops", _PCT_LOADED + (_PCT_COUNTED - _PCT_LOADED) * k / len(run.variants),
                   f"counting FLOPs of {doc['recipe']}", k)
        try:
            if k in run.same_flops:
                if original_count is None:
                    original_count = count_model(loaded, run.seq_len, run.overrides)
                counted = dict(original_count, _warnings=[], _uncounted_ops=[])
                counted["params"], counted["nonzero_params"] = count_params(variant_model)
                counted["size_bytes"] = int(variant_model.size_bytes)
                doc["notes"].append("FLOPs and MACs are the original model's: the same multiply-adds, "
                                    "done by other kernels")
            else:
                counted = count_model(variant_model, run.seq_len, run.overrides)
        except EngineError as exc:
            _fail(doc, "failed", str(exc))
            del models[k]
            continue
        except Exception as exc:
            _fail(doc, "failed", f"FLOP count failed: {type(exc).__name__}: {exc}")
            del models[k]
            continue
        for w in counted.pop("_warnings"):
            if w not in run.warnings:
                run.warnings.append(w)
        uncounted = counted.pop("_uncounted_ops")
        if uncounted:
            run.warnings.append(f"{doc['recipe']}: FLOPs of ops {', '.join(uncounted)} are not counted; the FLOPs "
                                "figure is a lower bound and their share of it is unknown")
        doc.update(counted)


def _stage_measure(run: _Run, models: dict) -> None:
    """Idle baseline, then every variant in paired rounds with the baseline (``rounds.py``)."""
    from . import rounds, timing
    from .meters import select_meter

    run.meter = select_meter(run.device, run.options)
    idle_s = float(run.options.get("idle_s") or 0.0)
    run.report("idle-baseline", _PCT_COUNTED, f"measuring idle power for {idle_s:g} s")
    idle_w = timing.measure_idle(run.meter, idle_s)
    meter_warnings(run)
    ref = run.reference
    if run.scenario["kind"] == "generation":
        from .generation import prompt_warning

        if prompt_warning(run.scenario):
            run.warnings.append(prompt_warning(run.scenario))

        def make_workload(model, bs):
            return rounds.GenerationWorkload(model, bs, run.options)
    else:
        def make_workload(model, bs):
            if ref is not None and model is ref.loaded:  # the reference with its own lengths and shapes
                return rounds.ForwardWorkload(model, bs, ref.seq_len, ref.overrides)
            return rounds.ForwardWorkload(model, bs, run.seq_len, run.overrides)
    measured, variants, comparators = models, run.variants, ()
    if ref is not None:  # refused or failed already when the new version's baseline is not measured
        ref.settle(_baseline_doc(run), after_rounds=False)
    if ref is not None and ref.measurable:  # one more subject in the rounds, read baseline / it
        k = len(run.variants)
        measured, variants, comparators = {**models, k: ref.loaded}, run.variants + [ref.doc], (k,)
    run.drift = rounds.measure_paired(
        measured, variants, run.batch_sizes, make_workload=make_workload, device=run.device, meter=run.meter,
        idle_w=idle_w, options=run.options, report=run.report, pct_start=_PCT_IDLE, pct_end=run.pct_measured,
        comparators=comparators, timing=run.timing)
    _note_masked_pruning(run.variants)
    worst = (run.drift or {}).get("max_abs_rel_change")
    if worst is not None and worst > _DRIFT_WARNING:
        run.warnings.append(
            f"the baseline moved by up to {worst:.0%} between its first and last round (thermal state or "
            "other load); absolute figures are uncertain by about that much, the paired ratios much less"
        )


def meter_warnings(run: _Run) -> None:
    """Say which energy figures are estimates: all of them without a counter; on a measured
    device, the host and facility boundaries when the host's CPU and DRAM could not be read."""
    meter = run.meter
    if getattr(meter, "estimated", False):
        run.warnings.append(f"energy figures are estimates ({meter.method}); no hardware energy counter was readable")
        return
    describe = getattr(meter, "describe", None)
    host = (describe() if callable(describe) else {}).get("host") or {}
    if host.get("host_estimated"):
        run.warnings.append(f"the device's energy is measured ({meter.method}); the host's CPU and DRAM share is "
                            f"estimated ({host.get('host_reading')}), so the host and facility figures are estimates")


def _stage_evaluate(run: _Run, loaded: LoadedModel, models: dict, eval_data):
    """Each variant's precision (``stored_dtype``, ``baseline_dtype``, ``dtype``) and its fidelity to
    the baseline, on the dataset or, without one, on generated inputs (``evaluation.py``); returns
    the inputs evaluated on (None when none could be built)."""
    from .loaders import precision_keys

    for k, doc in enumerate(run.variants):
        doc.update(precision_keys(loaded, models.get(k)))
    if eval_data is None:
        from .evaluation import DEFAULT_FIDELITY_SAMPLES, generated_eval_data

        try:
            eval_data = generated_eval_data(loaded, seq_len=run.seq_len, overrides=run.overrides,
                                            n_samples=int(run.options.get("fidelity_samples") or DEFAULT_FIDELITY_SAMPLES))
        except Exception as exc:  # the measurements stand; fidelity is unknown
            run.warnings.append(f"no inputs could be generated to measure fidelity: {type(exc).__name__}: {exc}")
            return None
    _evaluate_all(loaded, models, run.variants, eval_data, run.options, run.report, run.pct_measured)
    return eval_data


def _note_masked_pruning(variants: list[dict]) -> None:
    """Say plainly, with the paired ratios, what masked pruning bought on dense kernels."""
    for v in variants:
        if not v["recipe"].startswith("prune-unstructured") or not v.get("comparison"):
            continue
        parts = []
        for c in v["comparison"]:
            lat, en = c.get("latency_ratio_ci95"), c.get("energy_ratio_ci95")
            if lat and en:
                parts.append(f"batch {c['batch_size']}: latency x{lat[0]:.2f}-{lat[1]:.2f}, "
                             f"energy x{en[0]:.2f}-{en[1]:.2f} ({c['verdict']})")
        if parts:
            v["notes"].append("masked weights are still multiplied on dense kernels, so no saving is expected; "
                              "paired with the baseline (95% intervals): " + "; ".join(parts))


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


