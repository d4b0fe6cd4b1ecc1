"""torch.save zips and pickles, inspected, never loaded: which members a torch.save archive may
hold, and which globals its data.pkl may reference (read with pickletools, nothing runs)."""

from __future__ import annotations

import pickletools
from pathlib import Path

from .errors import FormatError

# A state dict's data.pkl only indexes the tensors (their bytes are separate members).
MAX_PICKLE_BYTES = 256 * 1024 * 1024

PICKLED_MODULE_MESSAGE = (
    "pickled nn.Module is refused; export with "
    "`safetensors.torch.save_file(model.state_dict(), ...)` + a registered architecture, "
    "`save_pretrained(safe_serialization=True)`, or `torch.onnx.export`"
)

# What a torch.save(state_dict) pickle may reference: tensor rebuilders, storages, dtypes.
_ALLOWED_TORCH_UTILS = {
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_nested_tensor",
    "_rebuild_wrapper_subclass",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_meta_tensor_no_storage",
}
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.nn.parameter", "Parameter"),
    ("torch", "Tensor"),
    ("torch.serialization", "_get_layout"),
    ("builtins", "set"),
    ("__builtin__", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
}
_TORCH_DTYPE_NAMES = {
    "float16", "float32", "float64", "bfloat16", "half", "float", "double",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool",
    "complex64", "complex128", "float8_e4m3fn", "float8_e5m2", "qint8", "quint8", "qint32",
    "strided", "sparse_coo", "sparse_csr", "per_tensor_affine", "per_channel_affine",
}


# What torch.save writes under its one top-level folder (torch/serialization.py and
# caffe2/serialize/inline_container.cc, torch 2.13): the pickle, its storages data/<key>
# (torch.save numbers them), and small records. "version" moved to ".data/version" in newer
# archive formats; older torch versions leave some records out.
_TORCH_SAVE_RECORDS = frozenset({
    "data.pkl", "version", ".data/version", ".data/serialization_id", "byteorder", ".format_version",
    ".storage_alignment",
})
_TORCH_SAVE_FOLDERS = frozenset({"", "data", ".data"})


def _is_torch_save_member(rel: str) -> bool:
    """``rel``: a member's name below the top folder ('' for the folder itself)."""
    if rel.endswith("/") or rel == "":
        return rel.rstrip("/") in _TORCH_SAVE_FOLDERS
    if rel in _TORCH_SAVE_RECORDS:
        return True
    folder, _, key = rel.partition("/")
    return folder == "data" and key.isascii() and key.isdigit()


# --- pickles (inspected, never loaded) -----------------------------------------------------

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
               "SHORT_BINSTRING"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


def pickle_globals(data: bytes) -> list[tuple[str, str]]:
    """Every (module, name) a pickle would import, read with pickletools.genops (nothing runs).

    STACK_GLOBAL takes its two strings from the stack; they are tracked through the memo,
    which is how protocol 4 pickles usually supply them.
    """
    found: list[tuple[str, str]] = []
    recent: list[object] = []
    memo: dict[object, object] = {}
    try:
        for opcode, arg, _pos in pickletools.genops(data):
            name = opcode.name
            if name == "GLOBAL" or name == "INST":
                module, _, attr = str(arg).partition(" ")
                found.append((module, attr))
                recent.append(None)
            elif name == "STACK_GLOBAL":
                if len(recent) >= 2 and isinstance(recent[-1], str) and isinstance(recent[-2], str):
                    found.append((recent[-2], recent[-1]))
                else:
                    found.append(("?", "?"))
                recent.append(None)
            elif name in _STRING_OPS:
                recent.append(arg if isinstance(arg, str) else arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
            elif name in _PUT_OPS:
                memo[arg] = recent[-1] if recent else None
            elif name == "MEMOIZE":
                # the unpickler stores at len(memo), whatever PUTs came before: mirror it exactly,
                # or a crafted pickle makes this reader see other strings than the unpickler does
                memo[len(memo)] = recent[-1] if recent else None
            elif name in _GET_OPS:
                recent.append(memo.get(arg))
            else:
                recent.append(None)
            if len(recent) > 64:
                del recent[:32]
    except Exception as exc:  # genops raises ValueError and friends on garbage
        raise FormatError(f"the pickle inside the archive is malformed ({exc})") from None
    return found


def _allowed_global(module: str, name: str) -> bool:
    if (module, name) in _ALLOWED_GLOBALS:
        return True
    if module == "torch._utils" and name in _ALLOWED_TORCH_UTILS:
        return True
    if module == "torch" and (name.endswith("Storage") or name in _TORCH_DTYPE_NAMES):
        return True
    return module == "torch.storage" and name in {"UntypedStorage", "TypedStorage"}


def _looks_like_pickle(path: Path) -> bool:
    with open(path, "rb") as fh:
        data = fh.read(1024 * 1024)
    try:
        ops = 0
        for _ in pickletools.genops(data):
            ops += 1
            if ops >= 4:
                return True
        return ops > 0
    except Exception:
        return ops >= 4
