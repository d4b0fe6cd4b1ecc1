"""Tiny models saved every way an upload can arrive, for the engine's tests.

Everything is built from configs (no downloads) and small enough to profile in well under a
second on a shared CPU.
"""

from __future__ import annotations

import json
import pickle
import stat
import warnings
import zipfile
from pathlib import Path

# Options that keep a profile run short: the timing loop stops at the cap.
FAST_OPTIONS = {"window_s": 0.05, "time_cap_s": 0.3, "idle_s": 0.05, "warmup_iters": 10}

MLP_CONFIG = {"in_features": 16, "hidden": [32, 16], "num_classes": 4, "activation": "relu"}
CNN_CONFIG = {"in_channels": 3, "image_size": 16, "num_classes": 5, "channels": [8, 16]}


def zip_folder(folder: Path, out: Path, *, top: str | None = None) -> Path:
    """Zip ``folder``'s files, optionally under one top-level folder name."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                name = p.relative_to(folder).as_posix()
                zf.write(p, f"{top}/{name}" if top else name)
    return out


# --- Hugging Face --------------------------------------------------------------------------


def tiny_bert(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=3,
    )
    BertForSequenceClassification(config).eval().save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_gpt2(folder: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=500, n_embd=32, n_layer=2, n_head=2, n_positions=48)
    GPT2LMHeadModel(config).eval().save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_vit(folder: Path) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
        patch_size=8, num_channels=3, num_labels=4,
    )
    ViTForImageClassification(config).eval().save_pretrained(folder, safe_serialization=True)
    return folder


# --- registered architectures --------------------------------------------------------------


def build(name: str, config: dict):
    import torch

    from workers.engine.registry import get_architecture

    torch.manual_seed(0)
    return get_architecture(name).build(config).eval()


def save_safetensors(path: Path, name: str, config: dict, *, with_metadata: bool = True) -> Path:
    from safetensors.torch import save_file

    module = build(name, config)
    metadata = {"architecture": name, "architecture_config": json.dumps(config)} if with_metadata else None
    save_file(module.state_dict(), str(path), metadata=metadata)
    return path


def save_state_dict(path: Path, name: str, config: dict) -> Path:
    import torch

    torch.save(build(name, config).state_dict(), path)
    return path


def export_onnx(path: Path, name: str, config: dict, *, dynamic_batch: bool = True, **kwargs) -> Path:
    """``torch.onnx.export(dynamo=False)``: the dynamo exporter needs onnxscript, not installed."""
    import torch

    from workers.engine.registry import get_architecture

    arch = get_architecture(name)
    module = build(name, config)
    example = torch.randn(arch.example_shape(config, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None, **kwargs,
        )
    return path


# --- things that must be refused -----------------------------------------------------------


class PickledNet:
    """Stands in for a user's own class: torch.save(model) pickles a reference to it."""

    def __init__(self):
        self.weight = [1.0, 2.0]


def save_pickled_module(path: Path) -> Path:
    import torch

    torch.save(build("mlp", MLP_CONFIG), path)
    return path


def save_pickled_custom_object(path: Path) -> Path:
    import torch

    torch.save({"net": PickledNet()}, path)
    return path


def save_raw_pickle(path: Path) -> Path:
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    return path


def make_zip(path: Path, members: dict[str, bytes], *, symlinks: dict[str, str] | None = None,
             compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            zf.writestr(info, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path

