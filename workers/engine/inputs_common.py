"""What every part of the example-input machinery (inputs.py) shares: the default sizes, the
``ModelInputs`` it returns, the default sequence length, and the dtype names a user may type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import LoadError

DEFAULT_SEQ_LEN = 128
DEFAULT_SEED = 0
SEQ_DIM_HINTS = ("seq", "len", "token", "position")
# Defaults for sizes nothing else fixes (recorded in the warnings when used)
DEFAULT_IMAGE_SIZE = 224  # the ImageNet crop most vision models are trained at
DEFAULT_AUDIO_SAMPLES = 16000  # one second at 16 kHz, the rate of most speech models
DEFAULT_CHANNELS = 3


@dataclass
class ModelInputs:
    """Named inputs and their shapes (as reported in a measurement's ``input_shape``)."""

    values: dict[str, Any]
    input_shape: dict[str, list[int]]
    warnings: list[str] = field(default_factory=list)
    # inputs whose shape the engine assumed (dynamic ONNX dims it had no size for): name -> why
    assumed: dict[str, str] = field(default_factory=dict)


def default_seq_len(max_positions: int | None, requested: int | None = None) -> tuple[int, list[str]]:
    """``requested`` or min(128, max positions); clamped to what the model supports."""
    warnings: list[str] = []
    limit = int(max_positions) if max_positions else None
    if requested is None:
        seq_len = min(DEFAULT_SEQ_LEN, limit) if limit else DEFAULT_SEQ_LEN
    else:
        seq_len = int(requested)
        if seq_len < 1:
            raise LoadError(f"sequence length must be at least 1, got {seq_len}")
        if limit and seq_len > limit:
            warnings.append(f"seq_len {seq_len} exceeds the model's {limit} positions; using {limit}")
            seq_len = limit
    return seq_len, warnings


_TORCH_DTYPES = {
    "float32": "float32", "float": "float32", "float16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "float64": "float64", "int64": "long", "long": "long", "int32": "int32",
    "bool": "bool", "uint8": "uint8", "int8": "int8",
}


_DTYPE_ALIASES = {"float": "float32", "half": "float16", "long": "int64"}


def _check_dtype(name: str) -> str:
    """The canonical (numpy) name of a dtype a user typed; aliases float, half, long accepted."""
    name = str(name).strip().lower()
    name = _DTYPE_ALIASES.get(name, name)
    if name not in _TORCH_DTYPES:
        canonical = sorted(set(_TORCH_DTYPES) - set(_DTYPE_ALIASES))
        raise LoadError(f"unknown input dtype {name!r}; one of {', '.join(canonical)}")
    return name


