"""Hugging Face folders: ``trust_remote_code=False``, ``use_safetensors=True``, model classes that
ship inside ``transformers`` only."""

from __future__ import annotations

import json
from pathlib import Path

from .. import archive, formats, inputs
from ..errors import FormatError, LoadError
from .common import _extract_if_zip
from .model import (
    _HALF,
    LoadedModel,
    _precision_warning,
    baseline_dtype_option,
    module_float_dtype,
    safetensors_float_dtype,
)

_TASK_SUFFIXES = (
    ("ForSequenceClassification", "text-classification"),
    ("ForImageClassification", "image-classification"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForMaskedLM", "fill-mask"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForConditionalGeneration", "text2text-generation"),
)


def _hf_task(class_name: str) -> str:
    for suffix, task in _TASK_SUFFIXES:
        if class_name.endswith(suffix):
            return task
    return "feature-extraction"


def _hf_model_class(config):
    """The class named in ``config.architectures`` if transformers itself ships it, else AutoModel."""
    import transformers

    for name in getattr(config, "architectures", None) or []:
        if not isinstance(name, str) or not name.isidentifier():
            continue
        try:
            cls = getattr(transformers, name, None)
        except Exception:
            cls = None
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            continue
        config_class = getattr(cls, "config_class", None)
        if config_class is None or isinstance(config, config_class):
            return cls
    return transformers.AutoModel


def _hf_root(folder: Path) -> Path:
    if (folder / "config.json").is_file():
        return folder
    candidates = [p.parent for p in folder.glob("*/config.json")]
    if len(candidates) == 1:
        return candidates[0]
    raise FormatError("no config.json found at the top of the Hugging Face upload")


def _load_hf(path: Path, options: dict, device: str) -> LoadedModel:
    folder, workdir = _extract_if_zip(path)
    try:
        root = _hf_root(folder)
        from transformers import AutoConfig
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the engine draws its own progress; tqdm bars garble it

        try:
            config = AutoConfig.from_pretrained(str(root), trust_remote_code=False, local_files_only=True)
        except Exception as exc:
            raise LoadError(
                f"transformers cannot read this config.json without running the upload's own code "
                f"(trust_remote_code is off) or it is invalid: {exc}"
            ) from None
        cls = _hf_model_class(config)
        for index in root.glob("*.safetensors.index.json"):
            try:
                formats.check_weight_map(json.loads(index.read_text()), index.name)
            except FormatError as exc:
                raise LoadError(str(exc)) from None
            except ValueError:
                raise LoadError(f"{index.name} is not valid JSON") from None
        import torch

        stored = safetensors_float_dtype(sorted(root.rglob("*.safetensors")))
        keep = baseline_dtype_option(options) == "stored" or getattr(config, "quantization_config", None)
        try:
            model, info = cls.from_pretrained(
                str(root),
                config=config,
                use_safetensors=True,
                local_files_only=True,
                output_loading_info=True,
                # transformers 5 loads the stored dtype by default ("auto"); the baseline is float32
                dtype="auto" if keep else torch.float32,
            )
        except Exception as exc:
            raise LoadError(f"could not load the Hugging Face model as {cls.__name__}: {exc}") from None
        warnings = []
        missing = list(info.get("missing_keys") or [])
        if missing:
            warnings.append(
                f"{len(missing)} weight(s) missing from the upload were randomly initialised "
                f"(e.g. {missing[0]}); FLOPs and energy are unaffected, accuracy would be"
            )
        model = model.to(device).eval()
        arch = cls.__name__ if cls.__name__ != "AutoModel" else type(model).__name__
        size = sum(p.stat().st_size for p in root.rglob("*.safetensors"))
        computes = module_float_dtype(model)
        warnings += _precision_warning(stored, computes, device)
        return LoadedModel(
            module=model,
            format="hf",
            architecture=arch,
            task=_hf_task(arch),
            config=config.to_dict(),
            input_spec=inputs.hf_input_spec(config, model=model, folder=root),
            device=device,
            size_bytes=size,
            warnings=warnings,
            workdir=workdir,
            source_dir=root,
            stored_dtype=stored,
            # inputs follow a half-precision model kept as stored (baseline_dtype "stored")
            input_dtype=computes if computes in _HALF else None,
        )
    except BaseException:
        if workdir is not None:
            archive.remove_tree(workdir)
        raise
