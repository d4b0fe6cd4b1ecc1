"""Safetensors checks, from the header only (nothing is loaded): the header read and parsed, and
checked against the format's own rules (dtypes, shapes, offsets, a buffer covered exactly)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from .errors import FormatError

# A safetensors header bigger than this is not a header: refuse rather than read it all.
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def _safetensors_header(path: Path, size: int) -> dict | None:
    if size < 10:
        return None
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n < 2 or n > MAX_SAFETENSORS_HEADER or n > size - 8:
            return None
        first = fh.read(1)
        if first != b"{":
            return None
        raw = first + fh.read(n - 1)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if not (isinstance(entry, dict) and {"dtype", "shape", "data_offsets"} <= entry.keys()):
            return None
    return header


def read_safetensors_header(path) -> dict:
    """The JSON header of a safetensors file; FormatError if it is not one."""
    path = Path(path)
    header = _safetensors_header(path, path.stat().st_size)
    if header is None:
        raise FormatError(f"{path.name} is not a safetensors file")
    return header


def safetensors_metadata(path) -> dict:
    """The ``__metadata__`` string map of a safetensors file ({} when absent)."""
    meta = read_safetensors_header(path).get("__metadata__") or {}
    return dict(meta) if isinstance(meta, dict) else {}


def _describe_safetensors(header: dict) -> str:
    n = sum(1 for k in header if k != "__metadata__")
    meta = header.get("__metadata__") or {}
    arch = meta.get("architecture") if isinstance(meta, dict) else None
    suffix = f", architecture={arch}" if arch else ", no architecture in metadata"
    return f"safetensors weights: {n} tensor(s){suffix}"


# Every dtype the safetensors format defines, in bits per element (sub-byte ones pack
# several elements per byte). The same list as the installed safetensors library's Dtype
# enum (tests/engine/test_formats.py checks the two agree); any other name is refused.
SAFETENSORS_DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}


def _shown(value) -> str:
    """A header value for a message: short, whatever the uploader wrote."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# Far beyond any file's size: multiplying a shape's dimensions stops here, so a shape of
# a hundred thousand huge dimensions costs nothing to refuse.
_MAX_TENSOR_BITS = 2**80


def _tensor_bits(shape: list[int], bits: int) -> int | None:
    """Bits the tensor's elements take, or None when that is past any real file's size."""
    if 0 in shape:
        return 0
    total = bits
    for dim in shape:
        total *= dim
        if total > _MAX_TENSOR_BITS:
            return None
    return total


def safetensors_problem(header: dict, data_bytes: int) -> str | None:
    """What is wrong with a parsed safetensors header against its data buffer of
    ``data_bytes``, or None. The format's own rules (the safetensors library enforces them when
    it loads): every tensor's dtype one the format defines, its offsets inside the buffer, its
    byte length equal to its shape times its dtype's size, and the tensors covering the buffer
    exactly, without holes or overlaps (a file that is also something else, a polyglot, has
    holes)."""
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        return "__metadata__ must map strings to strings"
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str):
            return f"tensor {_shown(name)} has no dtype"
        if dtype not in SAFETENSORS_DTYPE_BITS:
            return (f"tensor {_shown(name)} has dtype {dtype[:40]!r}, which is not a safetensors dtype "
                    f"(one of {', '.join(SAFETENSORS_DTYPE_BITS)})")
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                for d in shape)):
            return f"tensor {_shown(name)} has an invalid shape {_shown(shape)}"
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            return f"tensor {_shown(name)} has invalid data offsets {_shown(offsets)}"
        begin, end = offsets
        if not 0 <= begin <= end <= data_bytes:
            return (f"tensor {_shown(name)} points at bytes {_shown(begin)}-{_shown(end)}, "
                    f"outside the {data_bytes}-byte buffer")
        bits = _tensor_bits(shape, SAFETENSORS_DTYPE_BITS[dtype])
        if bits is None or bits != 8 * (end - begin):
            needs = "more bytes than any file holds" if bits is None else (
                f"{bits // 8} bytes" if bits % 8 == 0 else f"{bits} bits, not a whole number of bytes")
            return (f"tensor {_shown(name)} ({dtype}, shape {_shown(shape)}) needs {needs} "
                    f"but its offsets span {end - begin}")
        spans.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            return (f"tensor {_shown(name)} starts at byte {_shown(begin)} where {position} was expected "
                    "(the tensors must cover the buffer without holes or overlaps)")
        position = end
    if position != data_bytes:
        return f"the data buffer has {data_bytes - position} byte(s) no tensor uses"
    return None


def _check_safetensors_member(name: str, head, size: int) -> None:
    """A safetensors file inside a folder or zip: the same checks, reading its header only."""
    raw = head(name, 8)
    if len(raw) < 8:
        raise FormatError(f"{name} is not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", raw)
    if n < 2 or n > MAX_SAFETENSORS_HEADER or n > size - 8:
        raise FormatError(f"{name} is not a safetensors file (header length {n})")
    try:
        header = json.loads(head(name, 8 + n)[8:].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise FormatError(f"{name} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict) or not all(
            isinstance(e, dict) for k, e in header.items() if k != "__metadata__"):
        raise FormatError(f"{name} is not a safetensors file (its header is not a tensor table)")
    problem = safetensors_problem(header, size - 8 - n)
    if problem:
        raise FormatError(f"{name} is a malformed safetensors file: {problem}")
