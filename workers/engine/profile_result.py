"""The last stage of ``profile_model``: the result document of docs/ENGINE_INTERFACE.md,
assembled from what the stages (profile_stages.py) left in the run, with its trade-off summary,
energy/latency frontier, carbon section and quality grade."""

from __future__ import annotations

from . import ENGINE_VERSION, SCHEMA_VERSION
from .loaders import LoadedModel
from .profile_stages import _Run


def _stage_result(run: _Run, loaded: LoadedModel) -> dict:
    from .fingerprint import host_fingerprint
    from .frontier import build_frontier
    from .tradeoff import audit_quality, build_tradeoff

    fingerprint = dict(host_fingerprint(run.device))
    fingerprint["threads"] = run.threads
    if loaded.kind == "onnx":
        # 0 means onnxruntime's own default (one thread per physical core)
        fingerprint["onnxruntime_intra_op_threads"] = int(run.options.get("threads") or 0)
    run.report("done", 100.0, "done")
    result = {
        "schema_version": SCHEMA_VERSION,
        "engine_version": ENGINE_VERSION,
        "model": {
            "format": loaded.format,
            "architecture": loaded.architecture,
            "task": loaded.task,
            "detail": loaded.detail,
        },
        "device": run.device,
        "scenario": run.scenario,
        "fingerprint": fingerprint,
        "carbon": _carbon(run.options),
        "variants": run.variants,
        "drift": run.drift,
        "warnings": run.warnings,
    }
    if run.reference is not None:
        result["reference"] = run.reference.section()
    result["run_timing"] = run_timing(run)
    try:
        result["tradeoff"] = build_tradeoff(result, run.options)
    except Exception as exc:  # the measurements stand on their own; a summary bug must not lose them
        result["tradeoff"] = None
        result["warnings"].append(f"the trade-off summary could not be built: {type(exc).__name__}: {exc}")
    try:
        # energy against latency over batch sizes per variant, and the cheapest setting within the
        # latency target (a GPU power-limit sweep adds its steps: workers/power.py)
        result["frontier"] = build_frontier(result, run.options)
    except Exception as exc:  # noqa: BLE001 - same rule as the trade-off
        result["frontier"] = None
        result["warnings"].append(f"the energy/latency frontier could not be built: {type(exc).__name__}: {exc}")
    result["quality"] = audit_quality(result)
    return result


WINDOWS_SHARE_GOAL = 0.8


def run_timing(run: _Run) -> dict:
    """Where the run's wall time went: inside measurement windows (the serving scenario: its
    steady windows), warming up, and the rest (loading, counting, idle power, evaluating,
    ramp-up and drain). The goal is windows >= WINDOWS_SHARE_GOAL of the wall time."""
    import time

    wall = time.perf_counter() - run.started
    t = run.timing
    return {"wall_s": wall, "windows_s": t["windows_s"], "warmup_s": t["warmup_s"], "warmup_calls": t["warmup_calls"],
            "windows_share": t["windows_s"] / wall if wall > 0 else None, "windows_share_goal": WINDOWS_SHARE_GOAL,
            "warmups_unstable": t["warmups_unstable"][:50]}


_CARBON_KEYS = ("region", "year", "kind", "licence", "source_url")


def _carbon(options: dict) -> dict:
    carbon = {
        "intensity_g_per_kwh": float(options["grid_intensity_g_per_kwh"]),
        "pue": float(options["pue"]),
        "source": str(options["carbon_source"]),
        # whether a PUE was set (the grams then rest on the facility figure), as the worker says it
        "pue_known": bool(options.get("pue_known", float(options.get("pue") or 1.0) != 1.0)),
    }
    for key in _CARBON_KEYS:
        if options.get(f"carbon_{key}") is not None:
            carbon[key] = options[f"carbon_{key}"]
    return carbon


