"""Example inputs for a model, derived from what the model declares and overridable per request.

A loader describes what its model eats as an *input spec* (a small dict); ``build_inputs``
turns a spec plus a batch size, a sequence length and the request's ``input_overrides`` into
named tensors (torch models) or numpy arrays (ONNX). Values are random with a fixed seed:
zeros would let sparse or data-dependent kernels look cheaper than they are.

Specs:
- ``{"kind": "text", "vocab_size", "max_positions", "low", "encoder_decoder"}``
- ``{"kind": "vision", "num_channels", "image_size"}``
- ``{"kind": "tensors", "inputs": [{"name", "shape" (one sample, no batch dim), "dtype"}]}``
- ``{"kind": "onnx", "inputs": [{"name", "dims" (ints or dim names), "dtype", "vocab_size"}]}``

``input_overrides`` keys: ``seq_len``, ``image_size``, ``num_channels``, ``vocab_size``,
``seed``, ``shape`` ({input name: per-sample shape}), ``dims`` ({ONNX dim name: size}).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import LoadError

DEFAULT_SEQ_LEN = 128
DEFAULT_SEED = 0
SEQ_DIM_HINTS = ("seq", "len", "token", "position")


@dataclass
class ModelInputs:
    """Named inputs and their shapes (as reported in a measurement's ``input_shape``)."""

    values: dict[str, Any]
    input_shape: dict[str, list[int]]
    warnings: list[str] = field(default_factory=list)


def default_seq_len(max_positions: int | None, requested: int | None = None) -> tuple[int, list[str]]:
    """``requested`` or min(128, max positions); clamped to what the model supports."""
    warnings: list[str] = []
    limit = int(max_positions) if max_positions else None
    if requested is None:
        seq_len = min(DEFAULT_SEQ_LEN, limit) if limit else DEFAULT_SEQ_LEN
    else:
        seq_len = int(requested)
        if seq_len < 1:
            raise LoadError(f"sequence length must be at least 1, got {seq_len}")
        if limit and seq_len > limit:
            warnings.append(f"seq_len {seq_len} exceeds the model's {limit} positions; using {limit}")
            seq_len = limit
    return seq_len, warnings


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
    if overrides.get("shape") and kind in ("text", "vision"):
        kind = "tensors-override"
    if kind == "text":
        return _text_inputs(spec, batch_size, seq_len, overrides, device)
    if kind == "vision":
        return _vision_inputs(spec, batch_size, overrides, device)
    if kind in ("tensors", "tensors-override"):
        return _tensor_inputs(spec, batch_size, overrides, device)
    if kind == "onnx":
        return _onnx_inputs(spec, batch_size, seq_len, overrides)
    raise LoadError(
        "cannot derive example inputs for this model; give request option input_overrides "
        "{'shape': {'<input name>': [per-sample dims]}}"
    )


def _generator(overrides: dict):
    import torch

    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(overrides.get("seed", DEFAULT_SEED)))
    return gen


def _text_inputs(spec, batch_size, seq_len, overrides, device) -> ModelInputs:
    import torch

    seq_len, warnings = default_seq_len(spec.get("max_positions"), seq_len)
    vocab = int(overrides.get("vocab_size") or spec.get("vocab_size") or 0)
    if vocab < 2:
        raise LoadError("the model's config has no usable vocab_size; give input_overrides {'vocab_size': N}")
    low = int(spec.get("low") or 0)
    if low >= vocab:
        low = 0
    gen = _generator(overrides)
    ids = torch.randint(low, vocab, (batch_size, seq_len), generator=gen, dtype=torch.long)
    values = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if spec.get("encoder_decoder"):
        values["decoder_input_ids"] = torch.randint(low, vocab, (batch_size, seq_len), generator=gen, dtype=torch.long)
    values = {k: v.to(device) for k, v in values.items()}
    return ModelInputs(values, {k: list(v.shape) for k, v in values.items()}, warnings)


def _as_hw(size) -> tuple[int, int]:
    if isinstance(size, (list, tuple)):
        return (int(size[0]), int(size[-1]))
    return (int(size), int(size))


def _vision_inputs(spec, batch_size, overrides, device) -> ModelInputs:
    import torch

    channels = int(overrides.get("num_channels") or spec.get("num_channels") or 3)
    h, w = _as_hw(overrides.get("image_size") or spec.get("image_size") or 224)
    gen = _generator(overrides)
    pixels = torch.randn((batch_size, channels, h, w), generator=gen).to(device)
    return ModelInputs({"pixel_values": pixels}, {"pixel_values": list(pixels.shape)})


_TORCH_DTYPES = {
    "float32": "float32", "float": "float32", "float16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "float64": "float64", "int64": "long", "long": "long", "int32": "int32",
    "bool": "bool",
}


def _random_tensor(shape, dtype_name: str, gen, high: int = 2):
    import torch

    dtype = getattr(torch, _TORCH_DTYPES.get(dtype_name, dtype_name))
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    if dtype == torch.bool:
        return torch.ones(shape, dtype=torch.bool)
    return torch.randint(0, max(int(high), 1), shape, generator=gen, dtype=dtype)


def _tensor_inputs(spec, batch_size, overrides, device) -> ModelInputs:
    declared = list(spec.get("inputs") or [])
    shape_overrides = dict(overrides.get("shape") or {})
    if shape_overrides:
        by_name = {d["name"]: d for d in declared}
        declared = [
            {"name": name, "shape": list(shape), "dtype": by_name.get(name, {}).get("dtype", "float32")}
            for name, shape in shape_overrides.items()
        ]
    if not declared:
        raise LoadError(
            "this model does not declare its input shape; give request option input_overrides "
            "{'shape': {'input': [per-sample dims]}}"
        )
    gen = _generator(overrides)
    values = {}
    for item in declared:
        shape = (batch_size, *(int(d) for d in item["shape"]))
        high = int(overrides.get("vocab_size") or item.get("vocab_size") or 2)
        values[item["name"]] = _random_tensor(shape, item.get("dtype", "float32"), gen, high).to(device)
    return ModelInputs(values, {k: list(v.shape) for k, v in values.items()})


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


# Defaults for dynamic dimensions nothing else fixes, by what the input looks like.
DEFAULT_IMAGE_SIZE = 224  # the ImageNet crop most vision models are trained at
DEFAULT_AUDIO_SAMPLES = 16000  # one second at 16 kHz, the rate of most speech models
DEFAULT_CHANNELS = 3


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
                warnings.append(
                    f"ONNX input {item['name']!r} has dynamic dimensions the graph does not fix; assumed "
                    f"{', '.join(assumed)}, per sample {list(shape[1:])}; set them with "
                    f"--input {item['name']}=<dims> (input_overrides {{'shape': {{'{item['name']}': [...]}}}})"
                )
        dtype = dtype_overrides.get(item["name"]) or item["dtype"]
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
    return ModelInputs(values, {k: list(v.shape) for k, v in values.items()}, warnings)
