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
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import LoadError
from .inputs_common import (DEFAULT_AUDIO_SAMPLES, DEFAULT_CHANNELS, DEFAULT_IMAGE_SIZE, DEFAULT_SEED, DEFAULT_SEQ_LEN,
                            SEQ_DIM_HINTS, ModelInputs, _TORCH_DTYPES, _check_dtype, default_seq_len)
from .inputs_kinds import INPUT_KINDS, _as_hw, input_kind
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


# --- Hugging Face: a spec from the config, the preprocessor config and the model class --------

# Image sizes by model type where neither the config nor a preprocessor config gives one: the
# resolution the family's published checkpoints are preprocessed to.
FAMILY_IMAGE_SIZE = {
    "detr": 800, "conditional_detr": 800, "deformable_detr": 800, "table-transformer": 800,
    "dab-detr": 800, "rt_detr": 640, "rt_detr_v2": 640, "d_fine": 640, "yolos": (512, 864),
    "efficientnet": 600, "mobilevit": 256, "mobilevitv2": 256, "segformer": 512, "dpt": 384,
}
DEFAULT_AUDIO_SECONDS = 1.0
# Speech2Text-style feature inputs: 100 frames per second (10 ms hop)
DEFAULT_FEATURE_FRAMES = 300

HF_FAMILIES: dict[str, Callable[[Any, dict], dict]] = {}


def hf_family(main_input_name: str):
    """Register how a Hugging Face model whose ``main_input_name`` is this gets its input spec."""

    def register(fn):
        HF_FAMILIES[main_input_name] = fn
        return fn

    return register


def read_preprocessor_config(folder) -> dict:
    """``preprocessor_config.json`` of a Hugging Face folder as a dict ({} when absent or bad).
    Plain JSON: nothing in it is run."""
    import json
    from pathlib import Path

    if folder is None:
        return {}
    path = Path(folder) / "preprocessor_config.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def hf_input_spec(config, model=None, folder=None) -> dict:
    """The input spec of a Hugging Face model built into transformers.

    Dispatched on the model class's ``main_input_name`` (``input_ids``, ``pixel_values``,
    ``input_values``, ``input_features``) through ``HF_FAMILIES``; sizes come from the config,
    then ``preprocessor_config.json`` in ``folder``, then a default by model family, recorded
    as an assumption when used.
    """
    main = getattr(model, "main_input_name", None) if model is not None else None
    if main is None:
        main = "input_ids" if getattr(config, "vocab_size", None) else (
            "pixel_values" if getattr(config, "image_size", None) is not None else None)
    family = HF_FAMILIES.get(main)
    if family is None:
        return {"kind": "unknown", "input_name": main}
    return family(config, read_preprocessor_config(folder))


@hf_family("input_ids")
def _hf_text(config, pre: dict) -> dict:
    vocab = getattr(config, "vocab_size", None)
    if not vocab:
        return {"kind": "unknown", "input_name": "input_ids"}
    special = [
        getattr(config, attr, None)
        for attr in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id",
                     "unk_token_id", "mask_token_id")
    ]
    special = [i for i in special if isinstance(i, int) and not isinstance(i, bool) and i < int(vocab) // 2]
    return {
        "kind": "text",
        "vocab_size": int(vocab),
        "max_positions": getattr(config, "max_position_embeddings", None),
        "low": (max(special) + 1) if special else 0,
        "encoder_decoder": bool(getattr(config, "is_encoder_decoder", False)),
    }


def _size_from_preprocessor(pre: dict):
    """(height, width) or a square size from an image processor's crop_size / size."""
    for key in ("crop_size", "size"):
        value = pre.get(key)
        if isinstance(value, int) and value > 0:
            return value
        if isinstance(value, dict):
            if value.get("height") and value.get("width"):
                return (int(value["height"]), int(value["width"]))
            if value.get("shortest_edge"):
                return int(value["shortest_edge"])
    return None


@hf_family("pixel_values")
def _hf_vision(config, pre: dict) -> dict:
    model_type = getattr(config, "model_type", "")
    spec = {"kind": "vision", "num_channels": int(getattr(config, "num_channels", None) or DEFAULT_CHANNELS)}
    size = getattr(config, "image_size", None)  # position embeddings may be tied to it: first
    if size is None:
        size = _size_from_preprocessor(pre)
    if size is None:
        size = FAMILY_IMAGE_SIZE.get(model_type, DEFAULT_IMAGE_SIZE)
        h, w = _as_hw(size)
        spec["assumed"] = (f"the {type(config).__name__} gives no image size and there is no preprocessor_config.json "
                           f"with one; assumed {h}x{w} (the {model_type or 'vision'} default)")
    spec["image_size"] = list(size) if isinstance(size, (list, tuple)) else int(size)
    return spec


@hf_family("input_values")
def _hf_input_values(config, pre: dict) -> dict:
    """Raw waveforms (Wav2Vec2, HuBERT, WavLM, ...) or, where the config has mel bins and a
    length, a spectrogram (Audio Spectrogram Transformer)."""
    mel = getattr(config, "num_mel_bins", None)
    frames = getattr(config, "max_length", None)
    if mel and frames:
        return {"kind": "audio-spectrogram", "input_name": "input_values", "features_shape": [int(frames), int(mel)]}
    rate = int(pre.get("sampling_rate") or 16000)
    if pre.get("max_length"):
        return {"kind": "audio-waveform", "input_name": "input_values", "samples": int(pre["max_length"]),
                "sampling_rate": rate}
    samples = int(rate * DEFAULT_AUDIO_SECONDS)
    return {"kind": "audio-waveform", "input_name": "input_values", "samples": samples, "sampling_rate": rate,
            "assumed": f"audio length assumed {DEFAULT_AUDIO_SECONDS:g} s ({samples} samples at {rate} Hz)"}


@hf_family("input_features")
def _hf_input_features(config, pre: dict) -> dict:
    """Log-mel features: Whisper-style [mel bins, frames] (frames fixed by the encoder's
    positions), or Speech2Text-style [frames, features]."""
    spec = {"kind": "audio-spectrogram", "input_name": "input_features",
            "encoder_decoder": bool(getattr(config, "is_encoder_decoder", False)),
            "vocab_size": getattr(config, "vocab_size", None),
            "max_positions": getattr(config, "max_target_positions", None)}
    special = [getattr(config, a, None) for a in ("pad_token_id", "bos_token_id", "eos_token_id",
                                                  "decoder_start_token_id")]
    special = [i for i in special if isinstance(i, int) and spec["vocab_size"] and i < int(spec["vocab_size"]) // 2]
    spec["low"] = (max(special) + 1) if special else 0
    mel = getattr(config, "num_mel_bins", None) or pre.get("feature_size")
    positions = getattr(config, "max_source_positions", None)
    if mel and positions and getattr(config, "model_type", "") == "whisper":
        # the encoder's two convolutions halve the frames; it refuses any other length
        spec["features_shape"] = [int(mel), 2 * int(positions)]
        return spec
    features = getattr(config, "input_feat_per_channel", None) or pre.get("feature_size") or mel
    if not features:
        return {"kind": "unknown", "input_name": "input_features"}
    channels = int(getattr(config, "input_channels", 1) or 1)
    spec["features_shape"] = [DEFAULT_FEATURE_FRAMES, int(features) * channels]
    spec["assumed"] = f"audio length assumed {DEFAULT_FEATURE_FRAMES} feature frames (3 s at a 10 ms hop)"
    return spec


# --- ONNX ----------------------------------------------------------------------------------

_ONNX_NUMPY = {1: "float32", 10: "float16", 11: "float64", 7: "int64", 6: "int32", 9: "bool", 2: "uint8", 3: "int8"}


def onnx_input_spec(model) -> dict:
    """Spec from an ``onnx.ModelProto``'s graph inputs (initializers excluded).

    An integer input that feeds a Gather on an embedding table gets that table's row count as
    its vocabulary, so random token ids stay in range.
    """
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    vocab_of: dict[str, int] = {}
    for node in graph.node:
        if node.op_type == "Gather" and len(node.input) >= 2 and node.input[0] in initializers:
            vocab_of[node.input[1]] = int(initializers[node.input[0]].dims[0])
    inputs = []
    for value in graph.input:
        if value.name in initializers:
            continue
        ttype = value.type.tensor_type
        dims: list[int | str] = []
        for i, d in enumerate(ttype.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or f"{value.name}_dim{i}")
        inputs.append(
            {
                "name": value.name,
                "dims": dims,
                "dtype": onnx_numpy_dtype(ttype.elem_type),
                "vocab_size": vocab_of.get(value.name),
            }
        )
    return {"kind": "onnx", "inputs": inputs}




def onnx_numpy_dtype(elem_type: int) -> str:
    """numpy dtype name of an ONNX ``TensorProto`` element type (float32 when unknown)."""
    return _ONNX_NUMPY.get(int(elem_type), "float32")


def _guess_dim(dim: str, axis: int, item: dict, seq_len: int | None) -> tuple[int, str | None]:
    """(size, what was assumed or None when it is the engine's documented convention)."""
    rank = len(item["dims"])
    lowered = dim.lower()
    floating = item["dtype"] in ("float32", "float16", "float64")
    if any(hint in lowered for hint in SEQ_DIM_HINTS) or (axis == 1 and item["dtype"] in ("int64", "int32")):
        return int(seq_len or DEFAULT_SEQ_LEN), None
    if floating and rank == 4 and axis == 1:
        return DEFAULT_CHANNELS, "channels"
    if floating and rank == 4 and axis in (2, 3):
        size = item.get("image_size") or DEFAULT_IMAGE_SIZE
        return int(size), "image height" if axis == 2 else "image width"
    if floating and rank == 2 and axis == 1:
        return DEFAULT_AUDIO_SAMPLES, "audio samples (1 s at 16 kHz)"
    return int(seq_len or DEFAULT_SEQ_LEN), "sequence length"


def _onnx_shape(item: dict, batch_size: int, seq_len: int | None, overrides: dict,
                resolved: dict[str, int]) -> tuple[tuple[int, ...], list[str]]:
    """Concrete shape of one ONNX input and the assumptions made for it.

    A dimension is, in order: fixed in the graph; set by ``dims`` overrides; the size another
    input's dimension of the same name took; the batch size on axis 0; the sequence length for
    sequence-like dims; else a default by the input's look (NCHW image: 224; [batch, samples]
    audio: 16000; otherwise 128), recorded as an assumption.
    """
    dims_override = overrides.get("dims") or {}
    shape: list[int] = []
    assumed: list[str] = []
    for axis, dim in enumerate(item["dims"]):
        if isinstance(dim, int):
            if axis == 0 and batch_size > 1 and dim != batch_size:
                # feeding it anyway would time one sample and divide by batch_size samples
                raise LoadError(
                    f"ONNX input {item['name']!r} has a fixed first dimension of {dim} (the graph was exported "
                    f"for that batch size), so batch size {batch_size} cannot be fed; measure batch size 1, or "
                    "re-export the model with a dynamic batch axis")
            shape.append(dim)
            continue
        named = dim not in ("?", "") and not dim.startswith(f"{item['name']}_dim")
        if dim in dims_override and named:
            size = int(dims_override[dim])
        elif named and dim in resolved:
            size = resolved[dim]
        elif axis == 0:
            size = batch_size
        else:
            size, what = _guess_dim(dim, axis, item, seq_len)
            if what:
                assumed.append(f"axis {axis} {dim!r} = {size} ({what})")
        if named and axis != 0:
            resolved.setdefault(dim, size)
        shape.append(int(size))
    return tuple(shape), assumed


def _override_shape(item: dict, per_sample: list, batch_size: int) -> tuple[tuple[int, ...], list[str]]:
    """A ``shape`` override: per-sample dims (the batch size is put in front), or, when it has
    as many dims as the input itself, the whole shape as given."""
    dims = [int(d) for d in per_sample]
    rank = len(item.get("dims") or [])
    if rank and len(dims) == rank:
        note = []
        if dims[0] != batch_size and not isinstance(item["dims"][0], int):
            note = [f"ONNX input {item['name']!r}: the override gives its whole shape {dims}, so the batch "
                    f"size {batch_size} does not apply to it"]
        return tuple(dims), note
    return (batch_size, *dims), []


def _onnx_inputs(spec, batch_size, seq_len, overrides) -> ModelInputs:
    import numpy as np

    rng = np.random.default_rng(int(overrides.get("seed", DEFAULT_SEED)))
    shape_overrides = dict(overrides.get("shape") or {})
    dtype_overrides = dict(overrides.get("dtype") or {})
    values: dict[str, Any] = {}
    warnings: list[str] = []
    resolved: dict[str, int] = {}
    assumed_inputs: dict[str, str] = {}
    names = {item["name"] for item in spec["inputs"]}
    unknown = sorted(set(shape_overrides) - names)
    if unknown:
        raise LoadError(f"input override(s) for {', '.join(map(repr, unknown))}: the model has no such input; "
                        f"its inputs are {', '.join(sorted(names))}")
    for item in spec["inputs"]:
        if item["name"] in shape_overrides:
            shape, notes = _override_shape(item, shape_overrides[item["name"]], batch_size)
            warnings.extend(notes)
        else:
            shape, assumed = _onnx_shape(item, batch_size, seq_len, overrides, resolved)
            if assumed:
                assumed_inputs[item["name"]] = ", ".join(assumed)
                warnings.append(
                    f"ONNX input {item['name']!r} has dynamic dimensions the graph does not fix; assumed "
                    f"{', '.join(assumed)}, per sample {list(shape[1:])}; set them with "
                    f"--input {item['name']}=<dims> (input_overrides {{'shape': {{'{item['name']}': [...]}}}})"
                )
        dtype = _check_dtype(dtype_overrides[item["name"]]) if item["name"] in dtype_overrides else item["dtype"]
        name = item["name"].lower()
        if dtype in ("float32", "float16", "float64"):
            values[item["name"]] = rng.standard_normal(shape).astype(dtype)
        elif dtype == "bool" or "mask" in name:
            values[item["name"]] = np.ones(shape, dtype=dtype)
        elif "token_type" in name or "position" in name:
            values[item["name"]] = np.zeros(shape, dtype=dtype)
        else:
            vocab = overrides.get("vocab_size") or item.get("vocab_size")
            if not vocab:
                warnings.append(
                    f"ONNX input {item['name']!r}: vocabulary unknown, token ids drawn from [0, 2); "
                    "set input_overrides vocab_size"
                )
                vocab = 2
            values[item["name"]] = rng.integers(0, int(vocab), size=shape).astype(dtype)
    return ModelInputs(values, {k: list(v.shape) for k, v in values.items()}, warnings, assumed_inputs)
