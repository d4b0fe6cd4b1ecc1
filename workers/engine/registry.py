"""Trusted architecture builders for weights-only uploads (safetensors, state dicts).

An upload brings weights; the code that builds the network comes from here, installed on
the workers, never from the upload. A deployment adds its own builders in modules named
in ``AUDIT_ARCHITECTURE_MODULES`` (comma-separated import paths), which call ``register``.

Listing names imports no torch: built-in builders import it inside their bodies.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import LoadError

ENV_MODULES = "AUDIT_ARCHITECTURE_MODULES"


@dataclass(frozen=True)
class Architecture:
    """A named builder and what the engine needs to feed the model it builds.

    ``builder(config) -> nn.Module``; ``input_shape(config) -> tuple`` is the shape of one
    sample (no batch dimension); ``defaults`` fill config keys the upload leaves out.
    """

    name: str
    builder: Callable[[dict], Any]
    input_shape: Callable[[dict], tuple]
    task: str = "classification"
    input_name: str = "input"
    input_dtype: str = "float32"
    defaults: dict = field(default_factory=dict)

    def full_config(self, config: dict | None) -> dict:
        merged = dict(self.defaults)
        merged.update(config or {})
        return merged

    def build(self, config: dict | None):
        return self.builder(self.full_config(config))

    def example_shape(self, config: dict | None, batch_size: int) -> tuple[int, ...]:
        return (int(batch_size), *(int(d) for d in self.input_shape(self.full_config(config))))


_REGISTRY: dict[str, Architecture] = {}
_imported_modules: set[str] = set()


def _shape_from_config(config: dict) -> tuple:
    if "input_shape" not in config:
        raise LoadError("the architecture declares no input shape and its config has no 'input_shape'")
    return tuple(config["input_shape"])


def register(
    name: str,
    *,
    input_shape: Callable[[dict], tuple] | None = None,
    task: str = "classification",
    input_name: str = "input",
    input_dtype: str = "float32",
    defaults: dict | None = None,
):
    """Decorator: ``@register("my-net", input_shape=lambda c: (c["in"],))`` over ``builder(config)``.

    Without ``input_shape`` the config must carry ``input_shape`` (one sample, no batch dim).
    """

    def decorate(builder: Callable[[dict], Any]):
        _REGISTRY[name] = Architecture(
            name=name,
            builder=builder,
            input_shape=input_shape or _shape_from_config,
            task=task,
            input_name=input_name,
            input_dtype=input_dtype,
            defaults=dict(defaults or {}),
        )
        return builder

    return decorate


def _import_deployment_modules() -> None:
    for module in filter(None, (m.strip() for m in os.environ.get(ENV_MODULES, "").split(","))):
        if module in _imported_modules:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise LoadError(f"could not import architecture module {module!r} named in {ENV_MODULES}: {exc}") from exc
        _imported_modules.add(module)


def architecture_names() -> list[str]:
    """Names of every registered architecture, built-in and the deployment's own."""
    _import_deployment_modules()
    return sorted(_REGISTRY)


def get_architecture(name: str) -> Architecture:
    """The registered architecture ``name``; LoadError listing the known names otherwise."""
    _import_deployment_modules()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise LoadError(
            f"unknown architecture {name!r}; registered architectures: {known}. A deployment adds "
            f"its own through {ENV_MODULES}."
        ) from None


def resolve_architecture(metadata: dict | None, options: dict | None) -> tuple[str, dict]:
    """Architecture name and config: request options win over the safetensors ``__metadata__``.

    Metadata keys: ``architecture`` (name) and ``architecture_config`` (a JSON string).
    """
    metadata = metadata or {}
    options = options or {}
    name = options.get("architecture") or metadata.get("architecture")
    if not name:
        raise LoadError(
            "weights-only upload without an architecture: set the request option 'architecture' "
            "(one of: " + ", ".join(architecture_names()) + ") or save the file with "
            "metadata={'architecture': ..., 'architecture_config': json.dumps(config)}"
        )
    config: dict = {}
    raw = metadata.get("architecture_config")
    if name != metadata.get("architecture"):
        raw = None  # the metadata's config belongs to a different architecture
    if raw:
        try:
            config = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except ValueError:
            raise LoadError("the safetensors metadata 'architecture_config' is not valid JSON") from None
        if not isinstance(config, dict):
            raise LoadError("the safetensors metadata 'architecture_config' is not a JSON object")
    override = options.get("architecture_config")
    if override:
        config = {**config, **dict(override)}
    return str(name), config


# --- built-in architectures ----------------------------------------------------------------


def _activation(name: str):
    from torch import nn

    table = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "silu": nn.SiLU}
    try:
        return table[str(name).lower()]()
    except KeyError:
        raise LoadError(f"unknown activation {name!r}; one of {', '.join(table)}") from None


@register(
    "mlp",
    input_shape=lambda c: (c["in_features"],),
    defaults={"in_features": 64, "hidden": [128], "num_classes": 10, "activation": "relu"},
)
def build_mlp(config: dict):
    """Linear layers ``in_features -> hidden... -> num_classes`` with ``activation`` between."""
    from torch import nn

    layers = []
    width = int(config["in_features"])
    for h in config["hidden"]:
        layers += [nn.Linear(width, int(h)), _activation(config["activation"])]
        width = int(h)
    layers.append(nn.Linear(width, int(config["num_classes"])))
    return nn.Sequential(*layers)


@register(
    "small-cnn",
    input_shape=lambda c: (c["in_channels"], c["image_size"], c["image_size"]),
    defaults={"in_channels": 3, "image_size": 32, "num_classes": 10, "channels": [16, 32]},
)
def build_small_cnn(config: dict):
    """Conv(3x3)-BN-ReLU-MaxPool(2) per entry of ``channels``, then global average pool and a Linear."""
    from torch import nn

    layers = []
    width = int(config["in_channels"])
    for c in config["channels"]:
        layers += [
            nn.Conv2d(width, int(c), kernel_size=3, padding=1),
            nn.BatchNorm2d(int(c)),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        width = int(c)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, int(config["num_classes"]))]
    return nn.Sequential(*layers)
