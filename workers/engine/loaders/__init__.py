"""Load a detected model without running code from the upload.

- Hugging Face: ``trust_remote_code=False``, ``use_safetensors=True``, model classes that ship
  inside ``transformers`` only.
- safetensors / state dict: weights into a builder from the trusted registry; state dicts with
  ``torch.load(weights_only=True)``.
- ONNX: onnxruntime; external data must live inside the upload's own folder.
- TorchScript / torch.export: both unpickle code, so only when ``AUDIT_ALLOW_UNSAFE_FORMATS``
  is on, and only ever inside the sandboxed child.

Precision: the dtype a checkpoint is stored in does not decide the baseline's. Torch models are
loaded in float32 on every device (``options["baseline_dtype"]``: ``"float32"``, the default, or
``"stored"`` to keep the checkpoint's dtype); half precision is what the ``fp16`` / ``bf16``
recipes measure. ``LoadedModel.stored_dtype`` records the checkpoint's floating-point dtype and
``compute_dtype()`` what a model (or variant) computes in. ONNX graphs run as stored (their
dtypes are part of the graph).

Zips are extracted with ``archive.safe_extract`` into a private temporary folder that
``LoadedModel.close()`` removes.
"""

from __future__ import annotations

from pathlib import Path

from .. import formats
from ..errors import FormatError, LoadError
from .hf import _load_hf
from .model import (  # noqa: F401 - imported from workers.engine.loaders
    BASELINE_DTYPES,
    LoadedModel,
    baseline_dtype_option,
    module_float_dtype,
    onnx_float_dtype,
    precision_keys,
    safetensors_float_dtype,
    tensors_float_dtype,
)
from .onnx_graph import _load_onnx, check_onnx_external_data  # noqa: F401
from .registered import _load_safetensors, _load_state_dict
from .unpickled import UNSAFE_ENV, _load_torch_export, _load_torchscript, unsafe_formats_allowed  # noqa: F401


def load_model(path, format: str = "auto", options: dict | None = None, device: str = "cpu") -> LoadedModel:
    """Load ``path`` (file, folder or zip) as ``format`` ("auto" detects it) onto ``device``."""
    options = dict(options or {})
    path = Path(path)
    detail = ""
    if format in (None, "", "auto"):
        info = formats.detect_format(path)
        format, detail = info.format, info.detail
    elif format not in formats.FORMATS:
        raise FormatError(f"unknown format {format!r}; one of: auto, {', '.join(formats.FORMATS)}")
    _check_device(device)
    loader = _LOADERS[format]
    loaded = loader(path, options, device)
    loaded.detail = loaded.detail or detail
    return loaded


def _check_device(device: str) -> None:
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise LoadError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    import torch

    if not torch.cuda.is_available():
        raise LoadError(f"device {device!r} was requested but CUDA is not available on this machine")



_LOADERS = {
    "hf": _load_hf,
    "safetensors": _load_safetensors,
    "state-dict": _load_state_dict,
    "onnx": _load_onnx,
    "torchscript": _load_torchscript,
    "torch-export": _load_torch_export,
}
