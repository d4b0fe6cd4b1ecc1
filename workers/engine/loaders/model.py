"""``LoadedModel``, what every loader returns, and the precision it records (stored, baseline,
computed dtype)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import archive, formats, inputs
from ..errors import FormatError, LoadError


@dataclass
class LoadedModel:
    """A model ready to run, and what the engine needs to feed, count and describe it.

    ``kind`` is "torch" (``module`` is an nn.Module or callable) or "onnx" (``module`` is an
    onnxruntime InferenceSession, ``model_path`` its .onnx file). ``input_spec`` is read by
    ``inputs.build_inputs``; ``call`` says how inputs are passed ("kwargs" or "positional").
    """

    module: Any
    format: str
    architecture: str
    task: str
    config: dict
    input_spec: dict
    kind: str = "torch"
    call: str = "kwargs"
    device: str = "cpu"
    size_bytes: int = 0
    detail: str = ""
    model_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    workdir: Path | None = None
    # Set by recipes: what the variant's reader should know (which library ran, caveats).
    notes: list[str] = field(default_factory=list)
    # Floating-point inputs are cast to this dtype ("float16", "bfloat16") for half-precision variants.
    input_dtype: str | None = None
    # Folder the model was loaded from (Hugging Face: where its tokenizer lives).
    source_dir: Path | None = None
    # Floating-point dtype of the checkpoint's weights as uploaded ("float16", "float32", ...).
    stored_dtype: str | None = None
    # Weights the uploaded model shares between two names (a language model's LM head tied to its
    # embedding): alias name -> the name counted. Set on variants by ``recipes.common.derive``, so
    # that a recipe which gives the alias its own copy (int8 packing) does not count it twice.
    tied_weights: dict = field(default_factory=dict)

    def compute_dtype(self) -> str | None:
        """The floating-point dtype this model computes in: its inputs' cast dtype, else that of
        most of its floating-point weights (torch), or of its float initializers / inputs (ONNX)."""
        if self.input_dtype:
            return self.input_dtype
        if self.kind == "onnx":
            if self.model_path is None:
                return self.stored_dtype
            try:  # a variant's graph (ort-fp16, int8) is its own file
                return _onnx_file_float_dtype(self.model_path)
            except Exception:
                return self.stored_dtype
        return module_float_dtype(self.module)

    def make_inputs(self, batch_size: int, seq_len: int | None = None, overrides: dict | None = None):
        """``inputs.ModelInputs`` for one forward call of ``batch_size`` samples."""
        built = inputs.build_inputs(
            self.input_spec, batch_size, seq_len=seq_len, overrides=overrides, device=self.device
        )
        if self.input_dtype and self.kind == "torch":
            built.values = self.cast_inputs(built.values)
        return built

    def cast_inputs(self, values: dict) -> dict:
        """Floating-point tensors in ``values`` cast to ``input_dtype`` (others unchanged)."""
        if not self.input_dtype:
            return values
        import torch

        dtype = getattr(torch, self.input_dtype)
        return {k: (v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
                for k, v in values.items()}

    def forward(self, values: dict):
        """One inference: one forward call of one batch."""
        if self.kind == "onnx":
            return self.module.run(None, values)
        if self.call == "positional":
            return self.module(*values.values())
        return self.module(**values)

    def close(self) -> None:
        if self.workdir is not None:
            archive.remove_tree(self.workdir)
            self.workdir = None


BASELINE_DTYPES = ("float32", "stored")
_HALF = ("float16", "bfloat16")
# safetensors header dtype codes and ONNX TensorProto data types of floating-point tensors
_SAFETENSORS_FLOAT = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
_ONNX_FLOAT = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


def _dominant(counts: dict) -> str | None:
    """The dtype holding most elements (None when there is no floating-point tensor)."""
    return max(counts, key=counts.get) if counts else None


def tensors_float_dtype(tensors) -> str | None:
    """Floating-point dtype of most elements among ``tensors`` (torch tensors)."""
    counts: dict = {}
    for t in tensors:
        if getattr(t, "is_floating_point", lambda: False)():
            name = str(t.dtype).removeprefix("torch.")
            counts[name] = counts.get(name, 0) + int(t.numel())
    return _dominant(counts)


def module_float_dtype(module) -> str | None:
    """Floating-point dtype of most of a torch module's parameters and buffers (None for a
    module without any, or a callable that is no nn.Module)."""
    try:
        tensors = list(module.parameters()) + list(module.buffers())
    except Exception:
        return None
    found = tensors_float_dtype(tensors)
    if found is None and tensors == []:  # e.g. every layer quantised: packed weights, float biases
        try:
            from ..recipes.common import storable_tensors

            found = tensors_float_dtype(storable_tensors(module).values())
        except Exception:
            found = None
    return found


def safetensors_float_dtype(paths) -> str | None:
    """Floating-point dtype of most elements in safetensors files, read from their JSON headers
    (nothing is loaded)."""
    counts: dict = {}
    for path in paths:
        try:
            header = formats.read_safetensors_header(path)
        except (FormatError, OSError):
            continue
        for name, entry in header.items():
            if name == "__metadata__" or not isinstance(entry, dict):
                continue
            dtype = _SAFETENSORS_FLOAT.get(str(entry.get("dtype")))
            if dtype is None:
                continue
            n = 1
            for d in entry.get("shape") or []:
                n *= int(d)
            counts[dtype] = counts.get(dtype, 0) + n
    return _dominant(counts)


def onnx_float_dtype(proto) -> str | None:
    """Floating-point dtype of most initializer elements of an ONNX graph (its float inputs'
    when it has no float initializer)."""
    counts: dict = {}
    for t in proto.graph.initializer:
        dtype = _ONNX_FLOAT.get(int(t.data_type))
        if dtype is not None:
            n = 1
            for d in t.dims:
                n *= int(d)
            counts[dtype] = counts.get(dtype, 0) + n
    if not counts:
        for value in proto.graph.input:
            dtype = _ONNX_FLOAT.get(int(value.type.tensor_type.elem_type))
            if dtype is not None:
                counts[dtype] = counts.get(dtype, 0) + 1
    return _dominant(counts)


_ONNX_DTYPES: dict = {}  # (path, size, mtime) -> dtype: a large graph is parsed once


def _onnx_file_float_dtype(path: Path) -> str | None:
    import onnx

    stat = Path(path).stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _ONNX_DTYPES:
        _ONNX_DTYPES[key] = onnx_float_dtype(onnx.load(str(path), load_external_data=False))
    return _ONNX_DTYPES[key]


def baseline_dtype_option(options: dict) -> str:
    """``options["baseline_dtype"]``: "float32" (default) or "stored"; LoadError otherwise."""
    wanted = str(options.get("baseline_dtype") or "float32").strip().lower()
    if wanted not in BASELINE_DTYPES:
        raise LoadError(f"unknown baseline_dtype {wanted!r}; one of {', '.join(BASELINE_DTYPES)} "
                        "(half precision is measured by the fp16 / bf16 recipes)")
    return wanted


def _precision_warning(stored: str | None, baseline: str | None, device: str) -> list[str]:
    if stored in _HALF and baseline == "float32":
        return [f"the checkpoint is stored in {stored}; the baseline runs in float32 on {device} (the fp16 and "
                "bf16 recipes measure half precision against it)"]
    return []


def precision_keys(loaded: LoadedModel, variant: LoadedModel | None) -> dict:
    """The precision keys of a variant's result entry (docs/ENGINE_INTERFACE.md, schema 2):
    ``stored_dtype`` (the checkpoint's), ``baseline_dtype`` (what the baseline computes in) and
    ``dtype`` (what this variant computes in; None when it did not run)."""
    baseline = loaded.compute_dtype()
    return {"stored_dtype": loaded.stored_dtype, "baseline_dtype": baseline,
            "dtype": None if variant is None else baseline if variant is loaded else variant.compute_dtype()}
