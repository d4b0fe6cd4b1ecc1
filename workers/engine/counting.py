"""Counting a loaded model: parameters (nonzero too), size, FLOPs and MACs, per-layer profile.

Pure of measurement: nothing here times or meters anything.
"""

from __future__ import annotations

from .loaders import LoadedModel


def torch_params(module, tied: dict | None = None) -> tuple[int, int]:
    """(parameters, nonzero parameters); every weight once. Quantised weights count as the
    weights they replace: torch.ao's packed modules hold them outside ``parameters()``, torchao's
    int8 tensors are counted from their dequantised values.

    Once: a tensor reached under two names (tied weights: the same Parameter, or two Parameters
    over one storage) counts once; and ``tied`` (alias name -> counted name, the original model's
    ties, see ``tied_aliases``) drops what a recipe made of an alias when the name it was tied to
    is counted too: int8 packing gives a tied LM head its own copy of the embedding, but it is
    still the embedding's parameters, not new ones."""
    import inspect

    import torch

    tied = tied or {}
    entries = []  # (normalised name, tensor)
    alive = []  # tensors made by weight() must outlive the loop, or their ids get reused
    with torch.no_grad():
        for prefix, m in _named_modules(module):
            tensors = list(m.named_parameters(recurse=False))
            for attr in ("weight", "bias"):
                method = getattr(m, attr, None)
                if inspect.ismethod(method) and hasattr(m, "_packed_params"):
                    value = method()
                    if isinstance(value, torch.Tensor):
                        tensors.append((attr, value))
                        alive.append(value)
            entries.extend((_normal_name(f"{prefix}.{name}" if prefix else name), t) for name, t in tensors)
        names = {name for name, _ in entries}
        params = 0
        nonzero = 0
        seen: set = set()
        for name, t in entries:
            if tied.get(name) in names:
                continue  # the copy a recipe made of a tied weight: counted under the name it was tied to
            keys = {("id", id(t))}
            storage = _storage_key(t)
            if storage is not None:
                keys.add(storage)
            if keys & seen:
                continue
            seen |= keys
            params += t.numel()
            nonzero += _nonzero(t)
    return params, nonzero


def tied_aliases(module) -> dict[str, str]:
    """The weights ``module`` holds under two names or more: {alias: the first name}, the first
    being the one ``torch_params`` counts (GPT-2's ``lm_head.weight`` -> ``transformer.wte.weight``)."""
    named = getattr(module, "named_parameters", None)
    if named is None:
        return {}
    try:
        pairs = list(named(remove_duplicate=False))
    except TypeError:  # TorchScript modules take no remove_duplicate
        return {}
    first: dict = {}
    aliases: dict[str, str] = {}
    for name, t in pairs:
        name = _normal_name(name)
        keys = [("id", id(t))] + [k for k in [_storage_key(t)] if k is not None]
        owner = next((first[k] for k in keys if k in first), None)
        if owner is not None and owner != name:
            aliases[name] = owner
        for k in keys:
            first.setdefault(k, name)
    return aliases


def _named_modules(module):
    named = getattr(module, "named_modules", None)
    if named is None:
        return []
    return list(named())


def _normal_name(name: str) -> str:
    """A weight's name as the uploaded model has it: without torch.compile's ``_orig_mod.``,
    pruning's ``_orig`` (``weight_orig`` is the weight the mask multiplies) or parametrize's
    ``parametrizations.weight.original``."""
    name = name.replace("_orig_mod.", "")
    if name.endswith("_orig"):
        name = name[: -len("_orig")]
    if ".parametrizations." in f".{name}" and name.endswith(".original"):
        head, _, rest = f".{name}".rpartition(".parametrizations.")
        name = (head + "." + rest[: -len(".original")]).lstrip(".")
    return name


def _storage_key(t):
    """Where a plain tensor's values live, so two Parameters over one storage count once."""
    import torch

    if type(t) not in (torch.Tensor, torch.nn.Parameter) or t.is_quantized or t.numel() == 0:
        return None
    try:
        return ("storage", t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()), str(t.device))
    except RuntimeError:  # meta or otherwise storage-less tensors
        return None


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
    """(parameters, nonzero parameters) of an ONNX graph: its initializers and the tensors its
    ``Constant`` nodes hold (paddle2onnx and some other exporters store every weight that way),
    in subgraphs too.

    Not parameters: integer tensors (shapes, indices), except int8/uint8 quantised weights;
    scalars; quantisation scales and zero points; tensors used only where an op takes a
    setting rather than a weight (Resize scales, Clip bounds, Pad / Slice / Reshape arguments);
    and one-element constants that feed no weight input (hard-swish's 6). Normalisation scales
    named ``*_scale`` (Paddle's batch-norm gamma) are parameters."""
    import onnx

    model = onnx.load(str(model_path))  # external data already checked to stay in the folder
    params = 0
    nonzero = 0
    for tensor, uses in _onnx_stored_tensors(model.graph):
        counted = _onnx_weight_count(tensor, uses)
        if counted:
            params += counted[0]
            nonzero += counted[1]
    return params, nonzero


# ops whose inputs after the first are weights (a one-element bias still counts there)
_WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "LayerNormalization",
               "InstanceNormalization", "GroupNormalization", "Gather", "PRelu", "LSTM", "GRU", "RNN")
_NORM_OPS = ("BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization")
# input slots where an op takes a setting or a quantisation parameter, never a weight
_SETTING_SLOTS = {
    "Resize": (1, 2, 3), "Upsample": (1,), "Clip": (1, 2), "Pad": (1, 2, 3), "Slice": (1, 2, 3, 4),
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Range": (0, 1, 2), "Squeeze": (1,), "Unsqueeze": (1,),
    "ConstantOfShape": (0,), "TopK": (1,), "Split": (1,), "ReduceMean": (1,), "ReduceSum": (1,),
    "QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2), "DynamicQuantizeLinear": (),
    "QLinearConv": (1, 2, 4, 5, 6, 7), "QLinearMatMul": (1, 2, 4, 5, 6, 7),
    "MatMulInteger": (2, 3), "ConvInteger": (2, 3),
}


def _onnx_stored_tensors(graph):
    """(TensorProto, [(op type, input slot) of each use in this graph]) for the graph's
    initializers and Constant-node values, recursing into subgraphs (If / Loop / Scan bodies)."""
    from .flops import constant_tensor

    uses: dict[str, list[tuple[str, int]]] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if name:
                uses.setdefault(name, []).append((node.op_type, slot))
    for tensor in graph.initializer:
        yield tensor, uses.get(tensor.name, [])
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            tensor = constant_tensor(node)
            if tensor is not None:
                yield tensor, uses.get(node.output[0], [])
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _onnx_stored_tensors(attr.g)
            for sub in attr.graphs:
                yield from _onnx_stored_tensors(sub)


def _is_weight_use(op: str, slot: int) -> bool:
    return op in _WEIGHT_OPS and (slot >= 1 or op == "Gather")


def _onnx_weight_count(tensor, uses: list[tuple[str, int]]) -> tuple[int, int] | None:
    import numpy as np
    from onnx import numpy_helper

    array = numpy_helper.to_array(tensor)
    quantised = array.dtype in (np.int8, np.uint8) or (
        array.dtype == np.int32 and tensor.name.endswith("_quantized"))  # onnxruntime's int32 biases
    if not (np.issubdtype(array.dtype, np.floating) or quantised):
        return None  # shape constants and indices (int32/int64) are not weights; int8 ones are quantised weights
    if array.ndim == 0:
        return None  # a scalar: a hyperparameter or a quantisation parameter
    if uses and all(slot in _SETTING_SLOTS.get(op, ()) for op, slot in uses):
        return None  # only ever a setting (Resize scales, Clip bounds) or a quantisation parameter
    if tensor.name.endswith(("_scale", "_zero_point")) and not any(op in _NORM_OPS for op, _ in uses):
        return None  # onnxruntime's quantisation parameters (per-channel scales dequantise via Mul)
    if array.size == 1 and array.ndim <= 1 and not any(_is_weight_use(op, slot) for op, slot in uses):
        return None  # a one-element literal (hard-swish's 6, a clip bound) is a hyperparameter
    return int(array.size), int(np.count_nonzero(array))


def count_model(loaded: LoadedModel, seq_len, overrides) -> dict:
    """Parameters, size, FLOPs, MACs and the per-layer profile of one forward call of batch 1.

    A FLOP count that fails does not fail the variant: FLOPs and MACs are then unknown (None),
    a warning says why, and latency and energy are still measured. Inputs that cannot be built
    do fail it (nothing could be measured either).
    """
    from . import flops

    sample = loaded.make_inputs(1, seq_len, overrides)
    warnings = list(sample.warnings)
    if loaded.kind == "onnx" and sample.assumed:
        _check_assumed_shapes_run(loaded, sample)
    try:
        if loaded.kind == "onnx":
            report = flops.count_onnx(loaded.model_path, sample.input_shape)
        else:
            report = flops.count_torch(loaded.module, sample.values, call=loaded.call)
    except Exception as exc:
        report = None
        warnings.append(f"FLOPs could not be counted ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
                        "FLOPs and MACs are unknown, latency and energy are still measured")
    params, nonzero = count_params(loaded)
    return {
        "params": params,
        "nonzero_params": nonzero,
        "size_bytes": int(loaded.size_bytes),
        "flops": int(report.flops) if report else None,
        "macs": int(report.macs) if report else None,
        "layer_profile": report.layer_profile if report else [],
        "_uncounted_ops": report.uncounted_ops if report else [],
        "_warnings": warnings,
    }


def _check_assumed_shapes_run(loaded: LoadedModel, sample) -> None:
    """One run at shapes the engine guessed, so a graph that needs other sizes (PP-OCR's
    recogniser: height 48) fails here with what to set, not deep in the measurement."""
    from .errors import LoadError

    try:
        loaded.forward(sample.values)
    except Exception as exc:
        shapes = "; ".join(f"{name}: {sample.input_shape[name][1:]} ({why})" for name, why in sample.assumed.items())
        example = next(iter(sample.assumed))
        raise LoadError(
            f"the ONNX graph does not run at the per-sample shapes the engine assumed for its dynamic "
            f"dimensions ({shapes}): {' '.join(str(exc).split())[:300]}; give the shapes it expects with "
            f"--input {example}=<dims> (input_overrides {{'shape': {{'{example}': [...]}}}})") from None


def count_params(model: LoadedModel) -> tuple[int, int]:
    if model.kind == "onnx":
        return onnx_params(model.model_path)
    return torch_params(model.module, model.tied_weights or tied_aliases(model.module))
