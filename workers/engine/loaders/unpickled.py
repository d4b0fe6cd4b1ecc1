"""TorchScript and torch.export: both unpickle code, so only when ``AUDIT_ALLOW_UNSAFE_FORMATS`` is
on, and only ever inside the sandboxed child."""

from __future__ import annotations

from pathlib import Path

from ..errors import LoadError
from ..formats import UNSAFE_ENV, unsafe_formats_allowed  # noqa: F401 - re-exported by loaders
from .common import _first_lines
from .model import _HALF, LoadedModel, _precision_warning, baseline_dtype_option, module_float_dtype

def _require_unsafe(fmt: str) -> None:
    if not unsafe_formats_allowed():
        raise LoadError(
            f"{fmt} models are off by default: loading one unpickles code from the upload, which "
            f"could run anything. The deployment can allow them (inside the sandbox) with "
            f"{UNSAFE_ENV}=1; otherwise export to ONNX, or safetensors + a registered architecture."
        )


def _shape_spec_from_overrides(options: dict) -> dict:
    shapes = (options.get("input_overrides") or {}).get("shape") or {}
    return {"kind": "tensors", "inputs": [{"name": n, "shape": list(s), "dtype": "float32"} for n, s in shapes.items()]}


def _load_torchscript(path: Path, options: dict, device: str) -> LoadedModel:
    _require_unsafe("TorchScript")
    import torch

    try:
        module = torch.jit.load(str(path), map_location=device).eval()
    except Exception as exc:
        raise LoadError(f"the TorchScript archive could not be loaded: {_first_lines(exc)}") from None
    module, stored, input_dtype = _to_baseline_dtype(module, options)
    return LoadedModel(
        module=module,
        format="torchscript",
        architecture=getattr(module, "original_name", "torchscript"),
        task=str(options.get("task") or "unknown"),
        config={},
        input_spec=_shape_spec_from_overrides(options),
        call="positional",
        device=device,
        size_bytes=path.stat().st_size,
        stored_dtype=stored,
        input_dtype=input_dtype,
        warnings=_precision_warning(stored, module_float_dtype(module), device),
    )


def _to_baseline_dtype(module, options: dict):
    """(module in the baseline's dtype, stored dtype, dtype its float inputs are cast to or None)
    for a loaded program (TorchScript, torch.export) whose weights may be stored in half precision."""
    stored = module_float_dtype(module)
    if stored not in _HALF:
        return module, stored, None
    if baseline_dtype_option(options) == "stored":
        return module, stored, stored
    return module.float(), stored, None


def _load_torch_export(path: Path, options: dict, device: str) -> LoadedModel:
    _require_unsafe("torch.export")
    import torch

    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise LoadError(f"the torch.export program could not be loaded: {_first_lines(exc)}") from None
    spec = _shape_spec_from_overrides(options)
    example = getattr(program, "example_inputs", None)
    if not spec["inputs"] and example:
        args = example[0] if isinstance(example, tuple) else ()
        spec["inputs"] = [
            {"name": f"arg{i}", "shape": list(a.shape[1:]), "dtype": str(a.dtype).removeprefix("torch.")}
            for i, a in enumerate(args)
            if isinstance(a, torch.Tensor)
        ]
    module, stored, input_dtype = _to_baseline_dtype(program.module().to(device), options)
    if stored in _HALF and input_dtype is None:  # its example inputs were half; the baseline takes float32
        for item in spec["inputs"]:
            if item["dtype"] in _HALF:
                item["dtype"] = "float32"
    return LoadedModel(
        module=module,
        format="torch-export",
        architecture="torch.export program",
        task=str(options.get("task") or "unknown"),
        config={},
        input_spec=spec,
        call="positional",
        device=device,
        size_bytes=path.stat().st_size,
        stored_dtype=stored,
        input_dtype=input_dtype,
        warnings=_precision_warning(stored, module_float_dtype(module), device),
    )
