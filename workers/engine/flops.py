"""FLOPs and MACs of one forward call, with a per-layer breakdown.

Convention (the same for torch and ONNX so the two agree): one multiply-add is 2 FLOPs and
1 MAC; ``macs = flops // 2``. Only the ops that dominate inference are counted: matrix
products, convolutions and attention. Elementwise work (bias adds, activations, norms,
softmax, pooling) is counted as 0; it is typically well under 1% of a transformer's or CNN's
multiply-adds, and torch's FlopCounterMode leaves it out too.

- torch: ``torch.utils.flop_counter.FlopCounterMode`` (covers mm/addmm/bmm/conv and
  scaled-dot-product attention).
- ONNX: from the graph after ``onnx.shape_inference.infer_shapes`` with concrete input shapes:
  Conv, ConvTranspose, Gemm, MatMul (attention in exported graphs is MatMul). Einsum, fused and
  custom-domain ops, control flow, and any counted op whose shapes stay unknown or whose formula
  does not fit are not counted: they are reported in ``uncounted_ops`` and the count never
  fails a variant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_LAYER_ENTRIES = 50


@dataclass
class FlopReport:
    flops: int
    macs: int
    layer_profile: list[dict]
    uncounted_ops: list[str] = field(default_factory=list)


def _finish_profile(entries: list[dict], total: int) -> list[dict]:
    """Sort by FLOPs, keep the top entries, fold the rest into one '(other layers)' row."""
    entries = [e for e in entries if e["flops"] > 0]
    entries.sort(key=lambda e: e["flops"], reverse=True)
    if len(entries) > MAX_LAYER_ENTRIES:
        rest = entries[MAX_LAYER_ENTRIES - 1:]
        entries = entries[: MAX_LAYER_ENTRIES - 1]
        entries.append(
            {
                "name": f"(other {len(rest)} layers)",
                "type": "",
                "flops": sum(e["flops"] for e in rest),
                "params": sum(e["params"] for e in rest),
            }
        )
    for e in entries:
        e["macs"] = e["flops"] // 2
        e["share"] = round(e["flops"] / total, 6) if total else 0.0
    return [{k: e[k] for k in ("name", "type", "flops", "macs", "params", "share")} for e in entries]


# --- torch ---------------------------------------------------------------------------------


def count_torch(module, values, *, call: str = "kwargs") -> FlopReport:
    """Count one forward call of ``module`` on ``values`` (dict of named inputs).

    The breakdown lists leaf modules, plus a '(own ops)' row for a parent module whose own
    code does work its children do not (attention's matmuls in a self-attention block), so
    the rows add up to the total.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def run(grad_mode):
        counter = FlopCounterMode(display=False, depth=None, custom_mapping=_extra_torch_formulas())
        with grad_mode(), counter:
            if call == "positional":
                module(*values.values())
            else:
                module(**values)
        return counter

    try:
        counter = run(torch.inference_mode)
    except Exception:
        # weight-norm parametrizations (Wav2Vec2's positional convolution) lose their weight under
        # inference_mode + FlopCounterMode in torch 2.13; plain no_grad counts the same FLOPs
        counter = run(torch.no_grad)
    total = int(counter.get_total_flops())
    per_module = {name: int(sum(ops.values())) for name, ops in counter.get_flop_counts().items()}
    root = type(module).__name__
    inclusive: dict[str, int] = {}
    for name, flops in per_module.items():
        if name == "Global":
            continue
        if name == root:
            inclusive[""] = flops
        elif name.startswith(root + "."):
            inclusive[name[len(root) + 1:]] = flops
    return FlopReport(total, total // 2, _finish_profile(_torch_entries(module, inclusive), total))


def _extra_torch_formulas() -> dict:
    """Attention kernels FlopCounterMode's registry misses (the CPU flash kernel, torch 2.13).

    Without these, scaled_dot_product_attention on CPU would count as 0 FLOPs.
    """
    import torch
    from torch.utils import flop_counter

    def sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    extra = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable"):
        op = getattr(torch.ops.aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            extra[op] = sdpa
    return extra


def _tracked_descendants(prefix: str, sub, inclusive: dict[str, int]) -> list[str]:
    """The nearest descendants the counter saw run; containers never called (ModuleList) are
    looked through."""
    found = []
    for child_name, child in sub.named_children():
        full = f"{prefix}.{child_name}" if prefix else child_name
        if full in inclusive:
            found.append(full)
        else:
            found.extend(_tracked_descendants(full, child, inclusive))
    return found


def _torch_entries(module, inclusive: dict[str, int]) -> list[dict]:
    entries = []
    for name, sub in module.named_modules():
        flops = inclusive.get(name, 0)
        if not flops:
            continue
        children = _tracked_descendants(name, sub, inclusive)
        own = flops - sum(inclusive.get(c, 0) for c in children)
        params = sum(p.numel() for p in sub.parameters(recurse=False))
        if not children:
            entries.append({"name": name or "(model)", "type": type(sub).__name__, "flops": flops, "params": params})
        elif own > 0:
            entries.append(
                {"name": f"{name or '(model)'} (own ops)", "type": type(sub).__name__, "flops": own, "params": params}
            )
    return entries


# --- ONNX ----------------------------------------------------------------------------------


def count_onnx(model_path, input_shapes: dict[str, list[int]]) -> FlopReport:
    """Count one run of the ONNX model at ``model_path`` with inputs of ``input_shapes``.

    Never raises on a graph it does not understand: a node whose shapes cannot be resolved or
    whose formula fails (an unexpected rank, an op from a newer opset) is left out of the total
    and named in ``uncounted_ops``, so the total is then a lower bound and the caller says so.
    """
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    _fix_input_shapes(model, input_shapes)
    model, shapes = _infer(model)
    missing = _unresolved_names(model, shapes)
    if missing:
        shapes.update(_runtime_shapes(model_path, input_shapes, missing))
    params_of = {name: math.prod(dims) for name, dims in _weight_dims(model.graph).items()}
    entries = []
    uncounted: set[str] = set()
    for index, node in enumerate(model.graph.node):
        try:
            flops = _node_flops(node, shapes)
        except Exception:  # a formula that does not fit this node's shapes: unknown, not fatal
            flops = None
            uncounted.add(_op_name(node))
        if flops is None:
            if _may_hide_flops(node):
                # say so rather than let a model's matrix work read as 0 FLOPs
                uncounted.add(_op_name(node))
            continue
        params = sum(params_of.get(i, 0) for i in node.input)
        entries.append({"name": node.name or f"{node.op_type}_{index}", "type": node.op_type, "flops": flops,
                        "params": params})
    total = sum(e["flops"] for e in entries)
    return FlopReport(total, total // 2, _finish_profile(entries, total), sorted(uncounted))


def _op_name(node) -> str:
    return f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type


def _infer(model):
    """(model with inferred shapes, {tensor name: concrete shape}); the input model unchanged
    where both inferences fail."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # e.g. an op or opset onnx's inference rejects; fall back below
        inferred = model
    shapes = _known_shapes(inferred)
    if not _all_counted_ops_resolved(inferred, shapes):
        # onnx's inference loses dims through Reshape/Shape chains (exported transformers);
        # onnxruntime's symbolic inference carries the concrete input sizes through them.
        symbolic = _symbolic_shapes(model)
        if symbolic is not None:
            symbolic_shapes = _known_shapes(symbolic)
            if len(symbolic_shapes) >= len(shapes):
                return symbolic, symbolic_shapes
    return inferred, shapes


def _weight_dims(graph) -> dict[str, list[int]]:
    """Dims of the graph's stored tensors: initializers and the outputs of ``Constant`` nodes
    (exporters such as paddle2onnx store every weight as a Constant)."""
    dims = {t.name: [int(d) for d in t.dims] for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            tensor = constant_tensor(node)
            if tensor is not None:
                dims[node.output[0]] = [int(d) for d in tensor.dims]
    return dims


def constant_tensor(node):
    """The TensorProto a ``Constant`` node holds in its ``value`` attribute, else None."""
    for attr in node.attribute:
        if attr.name == "value" and attr.HasField("t"):
            return attr.t
    return None


_COUNTED_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")
_HEAVY_UNCOUNTED_OPS = ("Einsum", "Attention", "MultiHeadAttention", "ConvInteger", "MatMulInteger",
                        "QLinearConv", "QLinearMatMul")


def _may_hide_flops(node) -> bool:
    """A node this counter skipped that may do real arithmetic: a counted op whose shapes could
    not be resolved, a known heavy op without a formula, any op outside the default domain
    (com.microsoft's FusedMatMul...), or a control-flow node with subgraphs (If, Loop, Scan)."""
    return (
        node.op_type in _COUNTED_OPS
        or node.op_type in _HEAVY_UNCOUNTED_OPS
        or node.domain not in ("", "ai.onnx")
        or any(attr.type in (attr.GRAPH, attr.GRAPHS) for attr in node.attribute)
    )


def _all_counted_ops_resolved(model, shapes) -> bool:
    return not _unresolved_names(model, shapes)


def _unresolved_names(model, shapes) -> list[str]:
    """Tensors a counted op needs whose concrete shapes are still unknown."""
    missing = []
    for node in model.graph.node:
        if node.op_type in _COUNTED_OPS and node.domain in ("", "ai.onnx"):
            names = list(node.input[:2]) + (list(node.output[:1]) if node.op_type.startswith("Conv") else [])
            missing.extend(n for n in names if n and n not in shapes and n not in missing)
    return missing


_RUNTIME_SHAPES_MAX_BYTES = 1 << 30


def _runtime_shapes(model_path, input_shapes: dict[str, list[int]], names: list[str]) -> dict[str, list[int]]:
    """Shapes both static inferences lost (paddle2onnx's Shape/Slice/Concat chains into a
    Reshape, an axis onnxruntime's symbolic inference refuses), read by running the graph once
    on onnxruntime with those tensors exposed as extra outputs. Empty when that cannot be done."""
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        from onnx import helper

        from .inputs import onnx_numpy_dtype

        model = onnx.load(str(model_path))  # external data: the loader checked it stays in the folder
        if model.ByteSize() > _RUNTIME_SHAPES_MAX_BYTES:
            return {}
        outputs = {o.name for o in model.graph.output}
        for name in names:
            if name not in outputs:
                model.graph.output.append(helper.ValueInfoProto(name=name))
        initializers = {t.name for t in model.graph.initializer}
        feeds = {}
        for value in model.graph.input:
            if value.name in initializers:
                continue
            shape = input_shapes.get(value.name)
            if shape is None:
                return {}
            dtype = onnx_numpy_dtype(value.type.tensor_type.elem_type)
            feeds[value.name] = (np.zeros(shape, dtype=dtype) if np.dtype(dtype).kind in "iub"
                                 else np.random.default_rng(0).standard_normal(shape).astype(dtype))
        options = ort.SessionOptions()
        options.log_severity_level = 4  # a graph that cannot run at these shapes is not an error here
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        wanted = [n for n in names if n in {o.name for o in session.get_outputs()}]
        values = session.run(wanted, feeds)
        return {n: [int(d) for d in v.shape] for n, v in zip(wanted, values)}
    except Exception:
        return {}


def _symbolic_shapes(model):
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:
        return None


def _fix_input_shapes(model, input_shapes: dict[str, list[int]]) -> None:
    for value in model.graph.input:
        if value.name not in input_shapes:
            continue
        dims = value.type.tensor_type.shape.dim
        for dim, size in zip(dims, input_shapes[value.name]):
            dim.Clear()
            dim.dim_value = int(size)


def _known_shapes(model) -> dict[str, list[int]]:
    """Concrete shapes only: a value whose rank is unknown (no ``shape`` field) or with any
    symbolic dimension is left out, never read as a scalar."""
    shapes = {}
    for value in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        ttype = value.type.tensor_type
        if not (value.type.HasField("tensor_type") and ttype.HasField("shape")):
            continue
        dims = ttype.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [int(d.dim_value) for d in dims]
    shapes.update(_weight_dims(model.graph))
    return shapes


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            if a.type == a.INT:
                return a.i
            if a.type == a.INTS:
                return list(a.ints)
    return default


def _node_flops(node, shapes) -> int | None:
    op = node.op_type
    if op in ("MatMul", "Gemm"):
        a = shapes.get(node.input[0])
        b = shapes.get(node.input[1])
        if a is None or b is None:
            return None
        if op == "Gemm":
            m, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
            n = b[0] if _attr(node, "transB", 0) else b[1]
            return 2 * m * n * k
        if len(a) == 1:
            a = [1] + a
        if len(b) == 1:
            b = b + [1]
        m, k, n = a[-2], a[-1], b[-1]
        batch = math.prod(_broadcast(a[:-2], b[:-2]))
        return 2 * batch * m * n * k
    if op in ("Conv", "ConvTranspose"):
        x = shapes.get(node.input[0])
        w = shapes.get(node.input[1])
        y = shapes.get(node.output[0])
        if x is None or w is None or y is None:
            return None
        kernel = math.prod(w[2:])
        if op == "Conv":
            # w: [C_out, C_in/group, k...]; every output element takes C_in/group * kernel MACs
            return 2 * math.prod(y) * w[1] * kernel
        # ConvTranspose w: [C_in, C_out/group, k...]; every input element scatters C_out/group * kernel
        return 2 * math.prod(x) * w[1] * kernel
    return None


def _broadcast(a: list[int], b: list[int]) -> list[int]:
    n = max(len(a), len(b))
    a = [1] * (n - len(a)) + list(a)
    b = [1] * (n - len(b)) + list(b)
    return [max(x, y) for x, y in zip(a, b)]
