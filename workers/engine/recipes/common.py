"""Helpers shared by the recipe implementations: deriving a variant, its size when saved, and
a short distillation loop. torch is imported inside the functions."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path


def derive(loaded, module, *, notes=(), size_bytes: int | None = None, **changes):
    """A new LoadedModel for a variant of ``loaded`` (its own notes; never the original's workdir),
    remembering which of the original's weights were one tensor under two names."""
    if "tied_weights" not in changes and loaded.kind == "torch":
        from ..counting import tied_aliases

        changes["tied_weights"] = {**tied_aliases(loaded.module), **(loaded.tied_weights or {})}
    return dataclasses.replace(
        loaded,
        module=module,
        workdir=changes.pop("workdir", None),
        warnings=[],
        notes=list(notes),
        size_bytes=int(size_bytes if size_bytes is not None else loaded.size_bytes),
        **changes,
    )


def _flatten(name: str, value, out: dict, seen: set) -> None:
    """What would be stored for ``value``: plain tensors (quantised -> int repr + scales,
    tensor subclasses -> their packed inner tensors), shared storage once."""
    import torch

    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _flatten(f"{name}.{i}", item, out, seen)
        return
    if not isinstance(value, torch.Tensor):
        return
    t = value.detach()
    if t.is_quantized:
        out[name] = t.int_repr().contiguous()
        if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            out[name + ".scale"] = torch.tensor([t.q_scale()], dtype=torch.float32)
            out[name + ".zero_point"] = torch.tensor([t.q_zero_point()], dtype=torch.int32)
        else:
            out[name + ".scale"] = t.q_per_channel_scales().float().contiguous()
            out[name + ".zero_point"] = t.q_per_channel_zero_points().int().contiguous()
        return
    if type(t) is not torch.Tensor and hasattr(t, "__tensor_flatten__"):
        inner, _ = t.__tensor_flatten__()
        for attr in inner:
            _flatten(f"{name}.{attr}", getattr(t, attr), out, seen)
        return
    key = (t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride())) if t.numel() else (name,)
    if key in seen:
        return
    seen.add(key)
    out[name] = t.cpu().contiguous().clone()


def storable_tensors(module) -> dict:
    """The module's state as plain tensors, as safetensors would store them."""
    out: dict = {}
    seen: set = set()
    for name, value in module.state_dict(keep_vars=False).items():
        _flatten(name, value, out, seen)
    return out


def saved_size_torch(module) -> int:
    """Bytes of the module's state written as a safetensors file (really written, then removed)."""
    from safetensors.torch import save_file

    tensors = storable_tensors(module)
    with tempfile.TemporaryDirectory(prefix="audit-variant-") as tmp:
        path = Path(tmp) / "variant.safetensors"
        save_file(tensors, str(path))
        return path.stat().st_size


def logits_of(output):
    """The main tensor of a model's output: ``.logits``, the first element of a tuple, or itself."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits
    if isinstance(output, dict):
        return next(iter(output.values()))
    if isinstance(output, (tuple, list)):
        return output[0]
    raise TypeError(f"cannot find the logits in a {type(output).__name__} output")


def call_module(loaded, module, values: dict):
    if loaded.call == "positional":
        return module(*values.values())
    return module(**values)


def distill_steps(student, teacher, loaded, data, *, steps: int, lr: float, temperature: float,
                  batch_size: int, seed: int = 0) -> list[float]:
    """Train ``student`` for ``steps`` steps on ``data``'s inputs against ``teacher``'s soft targets
    (KL divergence at ``temperature``; MSE for regression outputs). Returns the losses."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    student.train()
    teacher.eval()
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr)
    losses = []
    n = data.n
    for _ in range(int(steps)):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen).numpy()
        values = data.values_for(loaded, idx)
        with torch.no_grad():
            target = logits_of(call_module(loaded, teacher, values)).float()
        out = logits_of(call_module(loaded, student, values)).float()
        if data.task == "regression" or target.shape[-1] == 1:
            loss = F.mse_loss(out, target)
        else:
            t = temperature
            loss = F.kl_div(
                F.log_softmax(out.reshape(-1, out.shape[-1]) / t, dim=-1),
                F.softmax(target.reshape(-1, target.shape[-1]) / t, dim=-1),
                reduction="batchmean",
            ) * (t * t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    student.eval()
    return losses
