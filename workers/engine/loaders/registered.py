"""safetensors files and state dicts: weights into a builder from the trusted registry (state
dicts read with ``torch.load(weights_only=True)``)."""

from __future__ import annotations

from pathlib import Path

from .. import formats, registry
from ..errors import LoadError
from .common import _first_lines
from .model import (
    _HALF,
    LoadedModel,
    _precision_warning,
    baseline_dtype_option,
    module_float_dtype,
    tensors_float_dtype,
)


def _registered_module(name: str, config: dict, state_dict: dict, device: str, fmt: str,
                       options: dict | None = None) -> LoadedModel:
    arch = registry.get_architecture(name)
    full = arch.full_config(config)
    try:
        module = arch.build(full)
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"architecture {name!r} could not be built from config {full}: {exc}") from None
    try:
        result = module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise LoadError(
            f"the weights do not fit architecture {name!r} with config {full}: {_first_lines(exc)}"
        ) from None
    del result
    # load_state_dict copied the weights into the builder's float32 parameters
    stored = tensors_float_dtype(state_dict.values())
    keep = baseline_dtype_option(options or {}) == "stored" and stored in _HALF
    if keep:
        import torch

        module = module.to(getattr(torch, stored))
    module = module.to(device).eval()
    spec = {
        "kind": "tensors",
        "inputs": [{"name": arch.input_name, "shape": list(arch.input_shape(full)), "dtype": arch.input_dtype}],
    }
    return LoadedModel(
        module=module,
        format=fmt,
        architecture=name,
        task=arch.task,
        config=full,
        input_spec=spec,
        call="positional",
        device=device,
        stored_dtype=stored,
        input_dtype=stored if keep else None,
        warnings=_precision_warning(stored, module_float_dtype(module), device),
    )



def _load_safetensors(path: Path, options: dict, device: str) -> LoadedModel:
    from safetensors.torch import load_file

    name, config = registry.resolve_architecture(formats.safetensors_metadata(path), options)
    try:
        state_dict = load_file(str(path), device="cpu")
    except Exception as exc:
        raise LoadError(f"the safetensors file could not be read: {exc}") from None
    loaded = _registered_module(name, config, state_dict, device, "safetensors", options)
    loaded.size_bytes = path.stat().st_size
    return loaded


def _load_state_dict(path: Path, options: dict, device: str) -> LoadedModel:
    import torch

    name, config = registry.resolve_architecture({}, options)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LoadError(f"the state dict could not be read with weights_only=True: {_first_lines(exc)}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LoadError("the file does not hold a state dict (a mapping of names to tensors)")
    loaded = _registered_module(name, config, obj, device, "state-dict", options)
    loaded.size_bytes = sum(t.numel() * t.element_size() for t in obj.values())
    return loaded
