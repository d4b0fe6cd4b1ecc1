"""Recipes for torch models (Hugging Face, registered architectures, TorchScript / torch.export
where the transformation allows). torch, torchao and torch_pruning are imported inside the
functions: the web process imports this module to list recipe names.

Libraries: torchao ``quantize_`` (int8 weight-only everywhere, int8 dynamic on CUDA);
``torch.ao.quantization`` only where torchao has no fast path on the target (int8 dynamic and
static on CPU in eager mode: torchao's int8 tensors run as reference code there, measured
several times slower than fp32); ``torch.nn.utils.prune``; Torch-Pruning; ``torch.sparse``.
"""

from __future__ import annotations

import copy
import re

from .registry import recipe
from .common import derive, distill_steps, saved_size_torch

MASKED_PRUNING_NOTE = (
    "masked pruning saves nothing on dense kernels: the zeroed weights are still stored and "
    "multiplied, so latency and energy stay those of the dense model (within noise); it only pays "
    "with sparse kernels or a sparse storage format"
)
CPU_HALF_NOTE = (
    "fp16 on CPU: most CPUs have no fast fp16 matrix kernels, so expect it slower than fp32 here; "
    "it is a GPU recipe"
)
TORCHAO_CPU_SLOW = (
    "torchao's int8 tensors have no fast eager CPU kernel (they run as reference code, measured "
    "~3x slower than fp32 on a Linear stack)"
)
_FORWARD_FORMATS = ("hf", "safetensors", "state-dict", "torchscript", "torch-export")
_MODULE_FORMATS = ("hf", "safetensors", "state-dict")  # real nn.Modules we can copy and rewrite


def _quiet():
    import warnings

    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")
    return ctx


def _copy(loaded):
    return copy.deepcopy(loaded.module)


def _float32_copy(loaded):
    """A copy of the model in float32: torch.ao's int8 kernels take float32 activations and
    weights only, so a baseline kept in its stored half precision (``baseline_dtype`` "stored")
    is widened first. The variant's inputs are then float32 (``input_dtype`` None)."""
    module = _copy(loaded)
    if loaded.input_dtype in ("float16", "bfloat16"):
        module = module.float()
    return module


def _conv1d_as_linear(module) -> list[str]:
    """GPT-2-family models (GPT-2, DistilGPT-2, GPT-J's ancestors ...) use transformers' ``Conv1D``,
    a Linear whose weight is stored transposed; int8 kernels (torch.ao, torchao) take ``nn.Linear``
    only and would leave every transformer layer in float. Swap each for the same ``nn.Linear``
    (weight transposed, same bias) in place; the note says how many."""
    try:
        from transformers.pytorch_utils import Conv1D
    except Exception:
        return []
    from torch import nn

    swapped = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                n_in, n_out = child.weight.shape
                linear = nn.Linear(n_in, n_out, bias=child.bias is not None, device=child.weight.device,
                                   dtype=child.weight.dtype)
                linear.weight.data = child.weight.data.t().contiguous()
                if child.bias is not None:
                    linear.bias.data = child.bias.data
                setattr(parent, name, linear)
                swapped += 1
    return ([f"{swapped} transformers Conv1D layers (GPT-2 style) turned into the equivalent nn.Linear so that "
             "the int8 kernels apply to them"] if swapped else [])


def _variant(loaded, module, notes=(), **changes):
    return derive(loaded, module, notes=notes, size_bytes=saved_size_torch(module), **changes)


def _device_kind(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


@recipe("baseline")
def baseline(loaded, params):
    """The model as uploaded."""
    return loaded


# --- precision -----------------------------------------------------------------------------


@recipe("fp16", formats=_MODULE_FORMATS, kinds=("torch",))
def fp16(loaded, params):
    """Weights and activations in float16."""
    module = _copy(loaded).half()
    notes = [CPU_HALF_NOTE] if _device_kind(loaded.device) == "cpu" else []
    return _variant(loaded, module, notes, input_dtype="float16")


def _bf16_supported(loaded, device, params):
    import torch

    if _device_kind(device) == "cuda":
        return None if torch.cuda.is_bf16_supported() else "this GPU has no bfloat16 support"
    try:
        ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        ok = False
    return None if ok else "this CPU has no native bfloat16 instructions (AVX512-BF16 / AMX); bf16 would be emulated"


@recipe("bf16", formats=_MODULE_FORMATS, kinds=("torch",), check=_bf16_supported)
def bf16(loaded, params):
    """Weights and activations in bfloat16 (on CPU only where the CPU has native bf16)."""
    return _variant(loaded, _copy(loaded).to(__import__("torch").bfloat16), [], input_dtype="bfloat16")


# --- int8 quantisation ---------------------------------------------------------------------


def _torchao_quantize(module, config):
    from torchao.quantization import quantize_

    quantize_(module, config)
    return module


def _compile_torchao(module, params, device, notes):
    """torchao's int8 tensors are fast only once inductor fuses them (its documented usage);
    eager they run reference code. ``compile``: auto (on CUDA), true or false."""
    import torch

    choice = params.get("compile", "auto")
    if choice == "auto":
        choice = _device_kind(device) == "cuda"
    params["compile"] = bool(choice)
    if not choice:
        return module
    notes.append("compiled with torch.compile after quantize_ (torchao's int8 kernels are fused by inductor; "
                 "compilation happens during warm-up and is not in the figures)")
    return torch.compile(module, dynamic=False)


@recipe("int8-dynamic", formats=_MODULE_FORMATS, kinds=("torch",), defaults={"backend": "auto", "compile": "auto"},
        same_flops=True)
def int8_dynamic(loaded, params):
    """int8 weights, activations quantised on the fly per batch."""
    import torch
    from torch import nn

    backend = params.get("backend", "auto")
    if backend == "auto":
        backend = "torchao" if _device_kind(loaded.device) == "cuda" else "torch.ao"
    module = _copy(loaded) if backend == "torchao" else _float32_copy(loaded)
    swapped = _conv1d_as_linear(module)
    ctx = _quiet()
    try:
        if backend == "torchao":
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig

            module = _torchao_quantize(module, Int8DynamicActivationInt8WeightConfig())
            note = "ran torchao quantize_(Int8DynamicActivationInt8WeightConfig)"
        elif backend == "torch.ao":
            if _device_kind(loaded.device) == "cuda":
                raise ValueError("torch.ao dynamic quantisation has CPU kernels only; use backend=torchao on CUDA")
            module = torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
            note = ("ran torch.ao.quantization.quantize_dynamic (nn.Linear, qint8, fbgemm/x86): the "
                    "documented fallback, because " + TORCHAO_CPU_SLOW)
        else:
            raise ValueError(f"unknown backend {backend!r}; auto, torchao or torch.ao")
    finally:
        ctx.__exit__(None, None, None)
    params["backend"] = backend
    notes = [note] + swapped
    size = saved_size_torch(module)
    if backend == "torchao":
        module = _compile_torchao(module, params, loaded.device, notes)
    else:
        params["compile"] = False
        return derive(loaded, module, notes=notes, size_bytes=size, input_dtype=None)
    return derive(loaded, module, notes=notes, size_bytes=size)


@recipe("int8-weight-only", formats=_MODULE_FORMATS, kinds=("torch",), defaults={"compile": "auto"}, same_flops=True)
def int8_weight_only(loaded, params):
    """int8 weights dequantised at use; activations stay in floating point (torchao)."""
    from torchao.quantization import Int8WeightOnlyConfig

    ctx = _quiet()
    try:
        module = _copy(loaded)
        swapped = _conv1d_as_linear(module)
        module = _torchao_quantize(module, Int8WeightOnlyConfig())
    finally:
        ctx.__exit__(None, None, None)
    notes = ["ran torchao quantize_(Int8WeightOnlyConfig)"] + swapped
    if _device_kind(loaded.device) == "cpu":
        notes.append("weight-only int8 saves memory and disk; on CPU in eager mode it is not faster "
                     "than fp32 (" + TORCHAO_CPU_SLOW + ")")
    params["backend"] = "torchao"
    size = saved_size_torch(module)
    module = _compile_torchao(module, params, loaded.device, notes)
    return derive(loaded, module, notes=notes, size_bytes=size)


def _static_check(loaded, device, params):
    if loaded.format == "hf":
        return ("int8-static needs a graph FX can trace; Hugging Face models are not traceable by "
                "it here: export the model to ONNX and use ort-int8-static")
    return None


@recipe("int8-static", formats=("safetensors", "state-dict"), kinds=("torch",), devices=("cpu",),
        defaults={"calibration_samples": 128}, needs_dataset=True, check=_static_check, same_flops=True)
def int8_static(loaded, params, ctx):
    """Post-training static int8: activation ranges calibrated on samples of the audit's dataset."""
    import numpy as np
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping, quantize_fx

    data = ctx.train_data
    n = min(int(params.get("calibration_samples", 128)), data.n)
    example = tuple(loaded.make_inputs(1, ctx.seq_len, ctx.overrides).values.values())
    warn = _quiet()
    try:
        example = tuple(t.float() if t.is_floating_point() else t for t in example)
        prepared = quantize_fx.prepare_fx(_float32_copy(loaded), get_default_qconfig_mapping("x86"), example)
        with torch.no_grad():
            for start in range(0, n, 32):
                values = data.values_for(loaded, np.arange(start, min(n, start + 32)))
                prepared(*(v.float() if v.is_floating_point() else v for v in values.values()))
        module = quantize_fx.convert_fx(prepared)
    finally:
        warn.__exit__(None, None, None)
    params["backend"] = "torch.ao.quantization.quantize_fx"
    note = (f"calibrated on {n} samples of the dataset; ran torch.ao FX graph-mode quantisation (x86): "
            "torchao's static path (pt2e) produces a reference graph that is fast only after "
            "torch.compile, so on eager CPU torch.ao is the documented fallback")
    return _variant(loaded, module, [note], input_dtype=None)


# --- pruning -------------------------------------------------------------------------------


def _prunable(module):
    from torch import nn

    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    try:  # GPT-2-family layers: a Linear with its weight transposed
        from transformers.pytorch_utils import Conv1D

        kinds += (Conv1D,)
    except Exception:
        pass
    return [(m, "weight") for m in module.modules() if isinstance(m, kinds)]


@recipe("prune-unstructured", formats=_MODULE_FORMATS, kinds=("torch",), defaults={"sparsity": 0.5},
        positional="sparsity")
def prune_unstructured(loaded, params):
    """Global magnitude (L1) pruning of Linear/Conv weights to ``sparsity``, made permanent."""
    from torch.nn.utils import prune

    sparsity = float(params["sparsity"])
    module = _copy(loaded)
    targets = _prunable(module)
    if not targets:
        raise ValueError("the model has no Linear or Conv layers to prune")
    if sparsity > 0:
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
        for m, name in targets:
            prune.remove(m, name)  # fold the mask into the weight: no mask, no hook
    return _variant(loaded, module, [MASKED_PRUNING_NOTE, f"{len(targets)} Linear/Conv weight tensors pruned globally"])


def _output_layers(module, loaded):
    """Layers whose outputs are the model's outputs: never pruned (their width is the task's)."""
    from torch import nn

    linears = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    ignored = [linears[-1]] if linears else []
    for name, m in module.named_modules():
        if isinstance(m, nn.Embedding):
            ignored.append(m)
    return ignored


_FFN_IN = re.compile(r"(intermediate\.dense|mlp\.fc1|\.fc1$|mlp\.up_proj|mlp\.gate_proj|\.lin1$|mlp\.c_fc"
                     r"|DenseReluDense\.wi(_0|_1)?)$")


@recipe("prune-structured", formats=_MODULE_FORMATS, kinds=("torch",),
        defaults={"ratio": 0.3, "finetune_steps": 0, "lr": 1e-3, "batch_size": 16},
        positional="ratio", needs_dataset=lambda p: int(p.get("finetune_steps") or 0) > 0)
def prune_structured(loaded, params, ctx):
    """Channels (CNN), hidden units (MLP) or FFN channels (transformers) really removed with
    Torch-Pruning, so params and FLOPs drop; optionally fine-tuned against the original."""
    import torch
    import torch_pruning as tp
    from torch import nn

    ratio = float(params["ratio"])
    module = _copy(loaded)
    example = loaded.make_inputs(1, ctx.seq_len, ctx.overrides).values
    output_transform = None
    if loaded.format == "hf":
        swapped = _conv1d_as_linear(module)  # GPT-2's Conv1D: Torch-Pruning knows nn.Linear
        if loaded.task in ("text-generation", "text2text-generation"):
            # language models return their KV cache beside the logits; trace the logits alone
            example = dict(example, use_cache=False)
            output_transform = lambda out: out.logits if hasattr(out, "logits") else out  # noqa: E731
        # Attention heads and the residual width are coupled across the whole network; pruning
        # only the feed-forward inner channels keeps every attention shape valid.
        ignored = [m for name, m in module.named_modules()
                   if isinstance(m, nn.Linear) and not _FFN_IN.search(name)]
        ignored += [m for m in module.modules() if isinstance(m, nn.Embedding)]
        scope = "feed-forward inner channels of every transformer layer"
        example_inputs = dict(example)
    else:
        ignored = _output_layers(module, loaded)
        scope = "hidden units / conv channels"
        example_inputs = tuple(example.values())
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    warn = _quiet()  # Torch-Pruning warns about free parameters (cls tokens) it leaves alone here
    try:
        with torch.enable_grad():
            pruner = tp.pruner.MetaPruner(module, example_inputs, importance=importance, pruning_ratio=ratio,
                                          ignored_layers=ignored, output_transform=output_transform)
            pruner.step()
    finally:
        warn.__exit__(None, None, None)
    notes = [f"Torch-Pruning {tp.__version__}: removed {ratio:.0%} of the {scope} (L2 magnitude of each "
             "coupled group); the layers are really smaller"]
    if loaded.format == "hf":
        notes.append("attention heads and hidden size are kept")
        notes += swapped
    steps = int(params.get("finetune_steps") or 0)
    if steps > 0:
        losses = distill_steps(module, loaded.module, loaded, ctx.train_data, steps=steps, lr=float(params["lr"]),
                               temperature=2.0, batch_size=int(params["batch_size"]))
        notes.append(f"fine-tuned {steps} steps against the original's soft targets "
                     f"(loss {losses[0]:.4g} -> {losses[-1]:.4g})")
    config = dict(loaded.config)
    return _variant(loaded, module, notes, config=config)


# --- 2:4 semi-structured sparsity ----------------------------------------------------------


def two_four_mask(weight):
    """Boolean mask keeping the 2 largest-magnitude weights in every group of 4 along the input
    dimension (the pattern sparse tensor cores accelerate)."""
    import torch

    rows, cols = weight.shape
    if cols % 4:
        raise ValueError(f"input dimension {cols} is not a multiple of 4")
    groups = weight.detach().abs().reshape(rows, cols // 4, 4)
    keep = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(rows, cols)


def semi_structured_eligible(weight) -> bool:
    """Shapes the CUTLASS / cuSPARSELt 2:4 kernels accept (fp16: rows and cols multiples of 64)."""
    rows, cols = weight.shape
    return rows % 64 == 0 and cols % 64 == 0


def _sparse_check(loaded, device, params):
    import torch

    if not torch.cuda.is_available():
        return "2:4 semi-structured sparsity needs a CUDA GPU"
    index = int(str(device).split(":", 1)[1]) if ":" in str(device) else 0
    major, minor = torch.cuda.get_device_capability(index)
    if major < 8:
        return (f"2:4 semi-structured sparsity needs compute capability 8.0 or newer (Ampere+); "
                f"this GPU is {major}.{minor}")
    return None


@recipe("sparse-2:4", formats=_MODULE_FORMATS, kinds=("torch",), devices=("cuda",), check=_sparse_check,
        same_flops=True)
def sparse_two_four(loaded, params):
    """2:4 magnitude pruning of eligible Linear layers, stored as semi-structured sparse fp16
    tensors (``torch.sparse.to_sparse_semi_structured``) so sparse tensor cores skip the zeros."""
    import torch
    from torch import nn
    from torch.sparse import to_sparse_semi_structured

    module = _copy(loaded).half()
    swapped = _conv1d_as_linear(module)
    converted = skipped = 0
    with torch.no_grad():
        for m in module.modules():
            if not isinstance(m, nn.Linear):
                continue
            if not semi_structured_eligible(m.weight):
                skipped += 1
                continue
            dense = m.weight * two_four_mask(m.weight)
            m.weight = nn.Parameter(to_sparse_semi_structured(dense), requires_grad=False)
            converted += 1
    if converted == 0:
        raise ValueError("no Linear layer has a shape the 2:4 kernels accept (multiples of 64)")
    notes = [f"{converted} Linear layers in 2:4 semi-structured sparse fp16, {skipped} left dense (shape)"] + swapped
    return _variant(loaded, module, notes, input_dtype="float16")


# --- distillation --------------------------------------------------------------------------


def _distill_check(loaded, device, params):
    if loaded.format == "hf":
        if not any(k in loaded.config for k in ("num_hidden_layers", "n_layer", "num_layers")):
            return "this Hugging Face config has no layer count to reduce"
        return None
    if "hidden" in loaded.config or "channels" in loaded.config:
        return None
    return "distill builds a student with fewer layers from the same config family; this architecture has none"


def _keep_indices(n_layers: int, fraction: float) -> list[int]:
    n = max(1, min(n_layers, round(n_layers * fraction)))
    if n == 1:
        return [0]
    return sorted({round(i * (n_layers - 1) / (n - 1)) for i in range(n)})


_LAYER_KEY = re.compile(r"\.(layer|layers|h|block|blocks)\.(\d+)\.")


def _hf_student(loaded, fraction):
    config = copy.deepcopy(loaded.module.config)
    n_layers = int(config.num_hidden_layers)
    keep = _keep_indices(n_layers, fraction)
    config.num_hidden_layers = len(keep)
    student = type(loaded.module)(config)
    state = {}
    for key, value in loaded.module.state_dict().items():
        match = _LAYER_KEY.search(key)
        if match is None:
            state[key] = value
            continue
        index = int(match.group(2))
        if index in keep:
            new = f".{match.group(1)}.{keep.index(index)}."
            state[key[: match.start()] + new + key[match.end():]] = value
    student.load_state_dict(state, strict=False)
    student = student.to(loaded.device)
    cfg = dict(loaded.config, num_hidden_layers=len(keep))
    return student, cfg, f"{len(keep)} of {n_layers} layers, initialised from teacher layers {keep}"


def _registered_student(loaded, fraction):
    from ..registry import get_architecture

    arch = get_architecture(loaded.architecture)
    key = "hidden" if "hidden" in loaded.config else "channels"
    widths = list(loaded.config[key])
    keep = _keep_indices(len(widths), fraction) if len(widths) > 1 else [0]
    new_widths = [widths[i] for i in keep]
    if len(new_widths) == len(widths):  # one layer: make it narrower instead
        new_widths = [max(1, int(w * fraction)) for w in widths]
    cfg = dict(loaded.config, **{key: new_widths})
    student = arch.build(cfg).to(loaded.device)
    return student, cfg, f"{key} {widths} -> {new_widths} (randomly initialised)"


@recipe("distill", formats=_MODULE_FORMATS, kinds=("torch",),
        defaults={"steps": 100, "layers_fraction": 0.5, "temperature": 2.0, "lr": 5e-3, "batch_size": 32},
        positional="steps", needs_dataset=True, check=_distill_check)
def distill(loaded, params, ctx):
    """A student with fewer layers from the same config family, trained ``steps`` steps on the
    dataset's inputs against the teacher's soft targets (KL divergence at ``temperature``)."""
    import torch

    fraction = float(params["layers_fraction"])
    torch.manual_seed(0)
    if loaded.format == "hf":
        student, cfg, what = _hf_student(loaded, fraction)
    else:
        student, cfg, what = _registered_student(loaded, fraction)
    losses = distill_steps(student, loaded.module, loaded, ctx.train_data, steps=int(params["steps"]),
                           lr=float(params["lr"]), temperature=float(params["temperature"]),
                           batch_size=int(params["batch_size"]))
    notes = [f"student: {what}; trained {params['steps']} steps with KL on soft targets "
             f"(T={params['temperature']}), loss {losses[0]:.4g} -> {losses[-1]:.4g}",
             f"trained on {ctx.train_data.n} samples of the dataset held out from evaluation"]
    return _variant(loaded, student.eval(), notes, config=cfg)


# --- compile -------------------------------------------------------------------------------


@recipe("compile", formats=_MODULE_FORMATS, kinds=("torch",), defaults={"backend": "inductor", "mode": "default"},
        same_flops=True)
def compile_(loaded, params):
    """torch.compile: not compression, but often the cheapest energy win (compiled during warm-up)."""
    import torch

    mode = params.get("mode") or "default"
    compiled = torch.compile(loaded.module, backend=params.get("backend") or "inductor",
                             mode=None if mode == "default" else mode, dynamic=False)
    notes = ["torch.compile is not compression: same weights; compilation happens during warm-up "
             "(once per batch size) and is not in the measured figures"]
    return derive(loaded, compiled, notes=notes, size_bytes=saved_size_torch(loaded.module))
