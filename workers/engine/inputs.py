"""Example inputs for a model, derived from what the model declares and overridable per request.

A loader describes what its model eats as an *input spec* (a small dict); ``build_inputs``
turns a spec plus a batch size, a sequence length and the request's ``input_overrides`` into
named tensors (torch models) or numpy arrays (ONNX). Values are random with a fixed seed:
zeros would let sparse or data-dependent kernels look cheaper than they are.

Two registries replace per-model branches:
- ``HF_FAMILIES`` (``@hf_family(main_input_name)``): how a Hugging Face model gets its spec, by
  its class's ``main_input_name``, from its config and ``preprocessor_config.json``
  (``hf_input_spec``);
- ``INPUT_KINDS`` (``@input_kind(kind)``): how a spec kind declares its inputs (name, per-sample
  shape, dtype, integer range), which ``build_inputs`` then overrides and draws.

Specs:
- ``{"kind": "text", "vocab_size", "max_positions", "low", "encoder_decoder"}``
- ``{"kind": "vision", "num_channels", "image_size", "input_name"?, "assumed"?}``
- ``{"kind": "audio-waveform", "input_name", "samples", "sampling_rate", "assumed"?}``
- ``{"kind": "audio-spectrogram", "input_name", "features_shape", "encoder_decoder", "vocab_size",
  "max_positions", "low", "assumed"?}`` (AST: [frames, mel]; Whisper: [mel, frames] + decoder ids)
- ``{"kind": "tensors", "inputs": [{"name", "shape" (one sample, no batch dim), "dtype"}]}``
- ``{"kind": "onnx", "inputs": [{"name", "dims" (ints or dim names), "dtype", "vocab_size"}]}``
``assumed`` says which size came from a family default; it becomes a warning.

``input_overrides`` keys: ``seq_len``, ``image_size``, ``num_channels``, ``vocab_size``,
``seed``, ``shape`` ({input name: per-sample shape}), ``dtype`` ({input name: dtype}),
``dims`` ({ONNX dim name: size}). ``parse_input_override`` reads the ``NAME=DIMS[:DTYPE]``
grammar the CLI's ``--input`` and the web form use into ``shape`` / ``dtype`` entries.

Where each part lives: this module builds the tensors (``build_inputs``) and re-exports every
public name below, so importers use ``workers.engine.inputs``; ``inputs_common.py`` holds the
default sizes, ``ModelInputs`` and the dtype names, ``inputs_kinds.py`` the ``INPUT_KINDS``
registry, ``inputs_hf.py`` the ``HF_FAMILIES`` registry, ``inputs_onnx.py`` the ONNX spec and
arrays, ``inputs_overrides.py`` the ``NAME=DIMS[:DTYPE]`` grammar.
"""

from __future__ import annotations

from .errors import LoadError
from .inputs_common import (DEFAULT_AUDIO_SAMPLES, DEFAULT_CHANNELS, DEFAULT_IMAGE_SIZE, DEFAULT_SEED, DEFAULT_SEQ_LEN,
                            SEQ_DIM_HINTS, ModelInputs, _TORCH_DTYPES, _check_dtype, default_seq_len)
from .inputs_hf import (DEFAULT_AUDIO_SECONDS, DEFAULT_FEATURE_FRAMES, FAMILY_IMAGE_SIZE, HF_FAMILIES, hf_family,
                        hf_input_spec, read_preprocessor_config)
from .inputs_kinds import INPUT_KINDS, input_kind
from .inputs_onnx import _onnx_inputs, onnx_input_spec, onnx_numpy_dtype
from .inputs_overrides import (INPUT_OVERRIDE_EXAMPLES, INPUT_OVERRIDE_GRAMMAR, InputOverrideError,
                               input_overrides_from, parse_input_override)

# The public names, wherever they are defined: importers use ``workers.engine.inputs``.
__all__ = [
    "DEFAULT_AUDIO_SAMPLES", "DEFAULT_CHANNELS", "DEFAULT_IMAGE_SIZE", "DEFAULT_SEED", "DEFAULT_SEQ_LEN", "SEQ_DIM_HINTS",
    "ModelInputs", "default_seq_len", "build_inputs",
    "INPUT_KINDS", "input_kind",
    "FAMILY_IMAGE_SIZE", "DEFAULT_AUDIO_SECONDS", "DEFAULT_FEATURE_FRAMES", "HF_FAMILIES", "hf_family",
    "read_preprocessor_config", "hf_input_spec",
    "onnx_input_spec", "onnx_numpy_dtype",
    "INPUT_OVERRIDE_GRAMMAR", "INPUT_OVERRIDE_EXAMPLES", "InputOverrideError", "parse_input_override",
    "input_overrides_from",
]


def build_inputs(
    spec: dict,
    batch_size: int,
    *,
    seq_len: int | None = None,
    overrides: dict | None = None,
    device: str = "cpu",
) -> ModelInputs:
    """Inputs for one forward call of ``batch_size`` samples, as described by ``spec``."""
    overrides = dict(overrides or {})
    if batch_size < 1:
        raise LoadError(f"batch size must be at least 1, got {batch_size}")
    if seq_len is None and overrides.get("seq_len") is not None:
        seq_len = int(overrides["seq_len"])
    kind = spec.get("kind")
    if kind == "onnx":
        return _onnx_inputs(spec, batch_size, seq_len, overrides)
    family = INPUT_KINDS.get(kind)
    if family is None and not overrides.get("shape"):
        raise LoadError(
            "cannot derive example inputs for this model; give its inputs' per-sample shapes with "
            "--input NAME=DIMS[:DTYPE] (e.g. --input pixel_values=3x224x224), or request option "
            "input_overrides {'shape': {'<input name>': [per-sample dims]}}"
        )
    declared, warnings = family(spec, seq_len, overrides) if family else ([], [])
    declared = _apply_overrides(declared, kind, overrides)
    return _materialise(declared, batch_size, overrides, device, warnings)


def _apply_overrides(declared: list[dict], kind, overrides: dict) -> list[dict]:
    """``shape`` overrides replace a declared input's per-sample shape or add an input; ``dtype``
    overrides its dtype. For declared tensor lists (registered builders, exported programs),
    overrides naming inputs the spec does not declare replace the whole list (the model takes
    them positionally)."""
    shapes = dict(overrides.get("shape") or {})
    dtypes = dict(overrides.get("dtype") or {})
    by_name = {d["name"]: dict(d) for d in declared}
    if kind in ("tensors", None) and shapes and not set(shapes) <= set(by_name):
        by_name = {name: {"name": name, "shape": [], "dtype": by_name.get(name, {}).get("dtype", "float32")}
                   for name in shapes}
    for name, shape in shapes.items():
        item = by_name.setdefault(name, {"name": name, "dtype": "float32"})
        item["shape"] = [int(d) for d in shape]
    for name, dtype in dtypes.items():
        if name in by_name:
            by_name[name]["dtype"] = _check_dtype(dtype)
    if not by_name:
        raise LoadError(
            "this model does not declare its input shape; give --input NAME=DIMS (request option "
            "input_overrides {'shape': {'input': [per-sample dims]}})"
        )
    return list(by_name.values())


def _materialise(declared: list[dict], batch_size: int, overrides: dict, device: str, warnings) -> ModelInputs:
    import torch

    gen = _generator(overrides)
    values = {}
    for item in declared:
        shape = (batch_size, *(int(d) for d in item["shape"]))
        dtype = getattr(torch, _TORCH_DTYPES.get(item.get("dtype", "float32"), "float32"))
        if item.get("fill") == "ones" or dtype == torch.bool:
            tensor = torch.ones(shape, dtype=dtype)
        elif dtype.is_floating_point:
            tensor = torch.randn(shape, generator=gen).to(dtype)
        else:
            high = int(overrides.get("vocab_size") or item.get("high") or 2)
            low = int(item.get("low") or 0)
            tensor = torch.randint(low if low < high else 0, max(high, 1), shape, generator=gen, dtype=dtype)
        values[item["name"]] = tensor.to(device)
    return ModelInputs(values, {k: list(v.shape) for k, v in values.items()}, list(warnings))


def _generator(overrides: dict):
    import torch

    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(overrides.get("seed", DEFAULT_SEED)))
    return gen
