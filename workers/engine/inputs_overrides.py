"""The ``NAME=DIMS[:DTYPE]`` grammar of input overrides, shared by the CLI's ``--input``, the
web form and the API: one entry parsed (``parse_input_override``), or several merged into a
request's ``input_overrides`` (``input_overrides_from``). Re-exported by inputs.py."""

from __future__ import annotations

from .errors import LoadError
from .inputs_common import _check_dtype

INPUT_OVERRIDE_GRAMMAR = "NAME=DIMS[:DTYPE]"
INPUT_OVERRIDE_EXAMPLES = ("pixel_values=3x224x224", "x=3x48x320:float32", "input_values=48000")


class InputOverrideError(ValueError):
    """A ``NAME=DIMS[:DTYPE]`` entry that does not parse; the message says how to write it."""


def parse_input_override(text: str) -> tuple[str, list[int], str | None]:
    """``"pixel_values=3x224x224:float32"`` -> ``("pixel_values", [3, 224, 224], "float32")``.

    DIMS are one sample's dimensions (no batch dimension; the engine puts the batch size in
    front), positive integers separated by ``x`` or ``,``. DTYPE is optional: float32, float16,
    bfloat16, float64, int64, int32, int8, uint8 or bool. The name may itself hold ``:`` or
    ``.`` (ONNX names such as ``input:0``): everything before the last ``=`` is the name.
    """
    raw = str(text).strip()
    name, sep, rest = raw.rpartition("=")
    name = name.strip()
    if not sep or not name:
        raise InputOverrideError(
            f"input override {raw!r}: expected {INPUT_OVERRIDE_GRAMMAR}, e.g. {INPUT_OVERRIDE_EXAMPLES[0]}")
    dims_text, colon, dtype = rest.partition(":")
    parts = [p.strip() for p in dims_text.replace(",", "x").replace("X", "x").split("x")]
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise InputOverrideError(
            f"input override {raw!r}: dimensions must be whole numbers separated by 'x', e.g. "
            f"{name}=3x224x224") from None
    if any(d < 1 for d in dims):
        raise InputOverrideError(f"input override {raw!r}: every dimension must be at least 1")
    if colon:
        try:
            dtype = _check_dtype(dtype)
        except LoadError as exc:
            raise InputOverrideError(f"input override {raw!r}: {exc}") from None
    return name, dims, (dtype if colon else None)


def input_overrides_from(entries, base: dict | None = None) -> dict:
    """``input_overrides`` with the parsed entries merged into its ``shape`` and ``dtype``
    (a later entry for the same name wins). ``entries``: an iterable of strings, or one string
    holding several separated by whitespace, newlines or ``;``."""
    if isinstance(entries, str):
        entries = entries.replace(";", " ").split()
    overrides = dict(base or {})
    shapes = dict(overrides.get("shape") or {})
    dtypes = dict(overrides.get("dtype") or {})
    for entry in entries:
        if not str(entry).strip():
            continue
        name, dims, dtype = parse_input_override(entry)
        shapes[name] = dims
        if dtype:
            dtypes[name] = dtype
    if shapes:
        overrides["shape"] = shapes
    if dtypes:
        overrides["dtype"] = dtypes
    return overrides
