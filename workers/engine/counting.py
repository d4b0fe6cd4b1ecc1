"""Counting a loaded model: parameters (nonzero too), size, FLOPs and MACs, per-layer profile.

Pure of measurement: nothing here times or meters anything.
"""

from __future__ import annotations

from .loaders import LoadedModel


def torch_params(module) -> tuple[int, int]:
    """(parameters, nonzero parameters); tied weights once. Quantised weights count as the
    weights they replace: torch.ao's packed modules hold them outside ``parameters()``, torchao's
    int8 tensors are counted from their dequantised values."""
    import inspect

    import torch

    params = 0
    nonzero = 0
    seen: set[int] = set()
    alive = []  # tensors made by weight() must outlive the loop, or their ids get reused
    with torch.no_grad():
        for m in module.modules():
            tensors = list(m.parameters(recurse=False))
            for attr in ("weight", "bias"):
                method = getattr(m, attr, None)
                if inspect.ismethod(method) and hasattr(m, "_packed_params"):
                    value = method()
                    if isinstance(value, torch.Tensor):
                        tensors.append(value)
                        alive.append(value)
            for p in tensors:
                if id(p) in seen:
                    continue
                seen.add(id(p))
                params += p.numel()
                nonzero += _nonzero(p)
    return params, nonzero


def _nonzero(t) -> int:
    import torch

    t = t.detach()
    if t.is_quantized:
        return int(torch.count_nonzero(t.int_repr()).item())
    if type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter:
        # tensor subclasses: torchao's int8 tensors dequantise; 2:4 sparse tensors only densify
        for convert in ("dequantize", "to_dense"):
            if hasattr(t, convert):
                try:
                    return int(torch.count_nonzero(getattr(t, convert)()).item())
                except (NotImplementedError, RuntimeError, TypeError):
                    continue
        return int(t.numel())
    return int(torch.count_nonzero(t).item())


def onnx_params(model_path) -> tuple[int, int]:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))  # external data already checked to stay in the folder
    params = 0
    nonzero = 0
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        quantised = array.dtype in (np.int8, np.uint8) or (
            array.dtype == np.int32 and tensor.name.endswith("_quantized"))  # onnxruntime's int32 biases
        if not (np.issubdtype(array.dtype, np.floating) or quantised):
            continue  # shape constants and indices (int32/int64) are not weights; int8 ones are quantised weights
        if array.ndim == 0 or tensor.name.endswith(("_scale", "_zero_point")):
            continue  # quantisation parameters, not weights
        params += int(array.size)
        nonzero += int(np.count_nonzero(array))
    return params, nonzero


def count_model(loaded: LoadedModel, seq_len, overrides) -> dict:
    from . import flops

    sample = loaded.make_inputs(1, seq_len, overrides)
    if loaded.kind == "onnx":
        report = flops.count_onnx(loaded.model_path, sample.input_shape)
        params, nonzero = onnx_params(loaded.model_path)
    else:
        report = flops.count_torch(loaded.module, sample.values, call=loaded.call)
        params, nonzero = torch_params(loaded.module)
    return {
        "params": params,
        "nonzero_params": nonzero,
        "size_bytes": int(loaded.size_bytes),
        "flops": int(report.flops),
        "macs": int(report.macs),
        "layer_profile": report.layer_profile,
        "_uncounted_ops": report.uncounted_ops,
        "_warnings": sample.warnings,
    }


def count_params(model: LoadedModel) -> tuple[int, int]:
    if model.kind == "onnx":
        return onnx_params(model.model_path)
    return torch_params(model.module)
