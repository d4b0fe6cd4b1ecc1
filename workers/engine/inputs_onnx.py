"""ONNX example inputs: the spec read from a graph's inputs (``onnx_input_spec``), and numpy
arrays for it, every dynamic dimension resolved from the overrides, the other inputs, the
batch size, the sequence length or a default recorded as an assumption (``_onnx_inputs``,
which ``inputs.build_inputs`` calls for ``{"kind": "onnx"}`` specs)."""

from __future__ import annotations

from typing import Any

from .errors import LoadError
from .inputs_common import (DEFAULT_AUDIO_SAMPLES, DEFAULT_CHANNELS, DEFAULT_IMAGE_SIZE, DEFAULT_SEED, DEFAULT_SEQ_LEN,
                            SEQ_DIM_HINTS, ModelInputs, _check_dtype)

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
