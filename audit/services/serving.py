"""Checks of a serving audit before it is queued (issue 20): the model serves text, and the
workload fits its context where that can be known without running the model.

A request given as ``prompt_tokens`` (a length or ids) has a known token count, checked here
against the model's context (``n_positions`` / ``max_position_embeddings`` ... in its config.json)
with its ``max_new_tokens``; a text prompt's count depends on the model's tokenizer, which the
engine applies: there a request that does not fit fails the audit at once, with its line.
"""
from __future__ import annotations

import json
import zipfile

from django.core.exceptions import ValidationError

from workers.engine.formats import _hf_root
from workers.engine.serving.workload import (DEFAULT_REQUESTS, MAX_BYTES, WorkloadError, context_positions,
                                     parse_workload)

from ..models import Dataset, ModelVersion, Task

MAX_CONFIG_BYTES = 10 * 1024 * 1024


def is_workload(dataset: Dataset | None) -> bool:
    return dataset is not None and dataset.format == "workload"


def model_config(version: ModelVersion) -> dict | None:
    """The upload's config.json (a Hugging Face zip), or None when there is none to read."""
    try:
        with zipfile.ZipFile(version.file.path) as archive:
            names = archive.namelist()
            root = _hf_root(names)
            if root is None:
                return None
            info = archive.getinfo(root + "config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                return None
            config = json.loads(archive.read(info))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return config if isinstance(config, dict) else None


def check_serving(model_version: ModelVersion, dataset: Dataset | None, measurement: dict) -> None:
    """Refuse (ValidationError, with the reason) a serving audit the model cannot run."""
    serving = is_workload(dataset) or bool(measurement.get("load_levels")) or measurement.get("scenario") == "serving"
    if not serving:
        return
    task = model_version.asset.task
    if task != Task.LANGUAGE_MODELING:
        what = "a serving workload" if is_workload(dataset) else "serving load levels (concurrency, request rate)"
        raise ValidationError(f"{what} need a language model (task language modelling); {model_version.asset.name} is "
                              f"{Task(task).label.lower() if task in Task.values else task}.")
    if measurement.get("scenario") in ("forward", "generation"):
        raise ValidationError(f"the {measurement['scenario']} scenario and a serving workload or load levels "
                              "exclude each other: choose the scenario serving (or auto).")
    _check_levels(measurement.get("load_levels") or [], dataset.n_samples if is_workload(dataset) else DEFAULT_REQUESTS,
                  dataset.name if is_workload(dataset) else "the shipped default workload")
    if not is_workload(dataset):
        return
    config = model_config(model_version)
    context = context_positions(config or {})
    if context is None:
        return
    key, positions = context
    try:
        requests = parse_workload(dataset.file.read(MAX_BYTES + 1).decode("utf-8"))
    except (WorkloadError, UnicodeDecodeError) as exc:
        raise ValidationError(f"the workload {dataset.name} cannot be served: {exc}") from None
    finally:
        dataset.file.close()
    for r in requests:
        known = r.prompt_length or (len(r.prompt_ids) if r.prompt_ids is not None else None)
        tokens = (known or 1) + r.max_new_tokens
        if tokens > positions:
            prompt = f"prompt {known} + " if known else "at least 1 prompt token + "
            raise ValidationError(
                f"the workload {dataset.name} does not fit {model_version.asset.name}: line {r.line} asks for "
                f"{prompt}{r.max_new_tokens} new tokens = {tokens} positions, over the model's context of "
                f"{positions} ({key} in config.json).")


def _check_levels(levels: list[dict], n: int, name: str) -> None:
    """A closed-loop level needs its ramp-up and its drain (as many requests as the concurrency
    each) and a steady window between them; the engine checks the same (serving._check_level)."""
    from workers.engine.serving.load import DEFAULT_OPTIONS, _check_level, _ramp

    for level in levels:
        try:
            _check_level(level, n, _ramp(level, n, DEFAULT_OPTIONS))
        except WorkloadError as exc:
            raise ValidationError(f"{name} holds {n} requests: {exc}") from None
