"""Small real models for the web tests: a digits MLP saved as safetensors for the
registered 'mlp' architecture, and a pickled module that must be refused."""
import io
import json

import torch
from safetensors.torch import save

from workers.engine.registry import get_architecture

MLP_CONFIG = {"in_features": 64, "hidden": [32], "num_classes": 10}


def mlp_safetensors_bytes(seed: int = 0, config: dict | None = None) -> bytes:
    config = config or MLP_CONFIG
    torch.manual_seed(seed)
    model = get_architecture("mlp").build(config)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    return save(state, metadata={"architecture": "mlp", "architecture_config": json.dumps(config)})


def pickled_module_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 2)), buffer)
    return buffer.getvalue()
