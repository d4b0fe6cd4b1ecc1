"""What kind of model an upload is, decided from its bytes, never from its name.

Imported by the web process: nothing here imports torch, transformers or onnx at
module import time (onnx is imported inside ``_check_onnx`` only, to confirm a
file that already looks like an ONNX protobuf).
"""

from __future__ import annotations

import json
import posixpath
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .archive import check_archive
from .errors import FormatError
from .safetensors_check import (  # noqa: F401 - also imported from workers.engine.formats
    MAX_SAFETENSORS_HEADER,
    SAFETENSORS_DTYPE_BITS,
    _check_safetensors_member,
    _describe_safetensors,
    _safetensors_header,
    read_safetensors_header,
    safetensors_metadata,
    safetensors_problem,
)
from .torchzip import (  # noqa: F401
    MAX_PICKLE_BYTES,
    PICKLED_MODULE_MESSAGE,
    _allowed_global,
    _is_torch_save_member,
    _looks_like_pickle,
    pickle_globals,
)

FORMATS = ("hf", "onnx", "safetensors", "state-dict", "torchscript", "torch-export")

MAX_CONFIG_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class FormatInfo:
    """``format`` is one of FORMATS; ``detail`` is a short human description of what was found."""

    format: str
    detail: str


# Formats whose loaders unpickle code: refused at upload and by the loader unless allowed.
UNSAFE_FORMATS = {"torchscript": "TorchScript", "torch-export": "torch.export"}
UNSAFE_ENV = "AUDIT_ALLOW_UNSAFE_FORMATS"


def unsafe_formats_allowed(environ=None) -> bool:
    import os  # noqa: PLC0415

    environ = os.environ if environ is None else environ
    return str(environ.get(UNSAFE_ENV, "")).strip().lower() in ("1", "true", "yes", "on")


def check_allowed(info: FormatInfo, environ=None) -> None:
    """Refuse, at upload, a format the workers will refuse to load (the loader's own words)."""
    name = UNSAFE_FORMATS.get(info.format)
    if name and not unsafe_formats_allowed(environ):
        raise FormatError(
            f"{name} models are off by default: loading one unpickles code from the upload, which "
            f"could run anything. The deployment can allow them (inside the sandbox) with "
            f"{UNSAFE_ENV}=1; otherwise export to ONNX, or safetensors + a registered architecture."
        )


def detect_format(path) -> FormatInfo:
    """Tell what model ``path`` (a file or a folder) holds; raise FormatError if it is not loadable."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"no file or folder at {path}")
    if path.is_dir():
        return _detect_folder(path)
    size = path.stat().st_size
    if size == 0:
        raise FormatError("the file is empty")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _detect_zip(path)
    st = _safetensors_header(path, size)
    if st is not None:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
        problem = safetensors_problem(st, size - 8 - n)
        if problem:
            raise FormatError(f"the safetensors file is malformed: {problem}")
        return FormatInfo("safetensors", _describe_safetensors(st))
    if head[:1] == b"\x80" or head[:1] in (b"(", b"]", b"}", b"c"):
        if _looks_like_pickle(path):
            raise FormatError(
                "the file is a raw pickle stream (legacy torch.save or pickle.dump); unpickling runs "
                "code, so it is refused. " + _export_advice()
            )
    if head[:1] == b"\x08":
        info = _check_onnx(path)
        if info is not None:
            return info
    raise FormatError(
        "unknown model format: the file is not a Hugging Face folder or zip, ONNX, safetensors, "
        "or a torch state dict. " + _export_advice()
    )


def _export_advice() -> str:
    return (
        "Export with `safetensors.torch.save_file(model.state_dict(), ...)` + a registered "
        "architecture, `save_pretrained(safe_serialization=True)`, or `torch.onnx.export`."
    )


# --- folders -------------------------------------------------------------------------------


def _detect_folder(path: Path) -> FormatInfo:
    names = [str(p.relative_to(path).as_posix()) for p in path.rglob("*") if p.is_file()]

    def head(name: str, n: int) -> bytes:
        with open(path / name, "rb") as fh:
            return fh.read(n)

    info = _classify_members(
        names, lambda name: (path / name).read_bytes(), lambda name: (path / name).stat().st_size, "folder",
        head=head,
    )
    if info is None:
        raise FormatError(
            "the folder holds no model this service can load: expected config.json with "
            "*.safetensors weights (Hugging Face), or one .onnx file. " + _export_advice()
        )
    return info


def _hf_root(names: list[str]) -> str | None:
    """The prefix ('' or 'top/') under which config.json sits, at most one folder deep."""
    for name in sorted(names, key=len):
        parts = PurePosixPath(name).parts
        if parts[-1] == "config.json" and len(parts) <= 2:
            return "" if len(parts) == 1 else parts[0] + "/"
    return None


def check_weight_map(index: dict, where: str) -> None:
    """A sharded checkpoint's index names the files its tensors live in; transformers joins
    those names onto the model's folder, so an absolute path or a '..' would load weights from
    anywhere the worker can read (another team's upload). Only plain file names in the folder."""
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise FormatError(f"{where} has no weight_map object")
    for tensor, filename in weight_map.items():
        name = str(filename)
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if not name or name.startswith(("/", "\\")) or ":" in name or ".." in parts or len(parts) != 1:
            raise FormatError(
                f"{where} maps {tensor!r} to {name!r}: weight files must sit beside it, named without a folder"
            )


def _classify_members(names, read, size_of, container: str, head=None) -> FormatInfo | None:
    """Shared by folders and zips: HF layout or ONNX with external data; None if neither.
    ``head(name, n)`` reads a member's first n bytes (the safetensors headers are checked)."""
    root = _hf_root(names)
    if root is not None:
        weights = [n for n in names if n.startswith(root) and n.endswith(".safetensors")]
        if weights:
            if head is not None:
                for weight in weights:
                    _check_safetensors_member(weight, head, size_of(weight))
            if size_of(root + "config.json") > MAX_CONFIG_BYTES:
                raise FormatError("config.json is larger than 10 MB; that is not a model config")
            try:
                config = json.loads(read(root + "config.json"))
            except (ValueError, UnicodeDecodeError):
                raise FormatError("config.json is not valid JSON") from None
            if not isinstance(config, dict):
                raise FormatError("config.json does not hold a JSON object")
            for index in (n for n in names if n.startswith(root) and n.endswith(".safetensors.index.json")):
                if size_of(index) > MAX_CONFIG_BYTES:
                    raise FormatError(f"{index} is larger than 10 MB; that is not a weight index")
                try:
                    check_weight_map(json.loads(read(index)), index)
                except (ValueError, UnicodeDecodeError):
                    raise FormatError(f"{index} is not valid JSON") from None
            arch = ", ".join(config.get("architectures") or []) or "no architectures listed"
            return FormatInfo(
                "hf",
                f"Hugging Face {container}: model_type={config.get('model_type', '?')}, {arch}, "
                f"{len(weights)} safetensors file(s)",
            )
        if any(n.endswith((".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")) for n in names):
            raise FormatError(
                "the Hugging Face model has no .safetensors weights; only safetensors are loaded "
                "(pickled .bin weights can run code). Save it with "
                "`model.save_pretrained(folder, safe_serialization=True)`."
            )
    onnx_files = [n for n in names if n.lower().endswith(".onnx")]
    if len(onnx_files) == 1:
        if size_of(onnx_files[0]) <= ONNX_EXTERNAL_CHECK_MAX_BYTES:
            model = _parse_onnx_bytes(read(onnx_files[0]), onnx_files[0])
            problem = onnx_external_data_problem(model, posixpath.dirname(onnx_files[0]), set(names))
            if problem:
                raise FormatError(problem)
        return FormatInfo("onnx", f"ONNX {container} with {onnx_files[0]} and {len(names) - 1} other file(s)")
    if len(onnx_files) > 1:
        raise FormatError(f"the {container} holds {len(onnx_files)} .onnx files; upload one model at a time")
    return None


# --- zips ----------------------------------------------------------------------------------


def _detect_zip(path: Path) -> FormatInfo:
    infos = check_archive(path)
    names = [i.filename for i in infos if not i.is_dir()]
    if not names:
        raise FormatError("the zip archive is empty")
    with zipfile.ZipFile(path) as zf:
        info = _classify_torch_zip(zf, names)
        if info is not None:
            return info
        def head(name: str, n: int) -> bytes:
            with zf.open(name) as fh:
                return fh.read(n)

        info = _classify_members(names, zf.read, lambda name: zf.getinfo(name).file_size, "zip", head=head)
        if info is not None:
            return info
    raise FormatError(
        "the zip archive holds no model this service can load: expected config.json with "
        "*.safetensors (Hugging Face), an .onnx file, or a torch.save state dict. " + _export_advice()
    )


def _check_torch_save_members(zf: zipfile.ZipFile, top: str) -> None:
    """Refuse what torch.save never writes: a member nothing reads (a second data.pkl in a
    subfolder, say) is a place for a payload that some other reader may pick up."""
    prefix = top + "/"
    unexpected = [n for n in zf.namelist()
                  if not (n.startswith(prefix) and _is_torch_save_member(n[len(prefix):]))]
    if unexpected:
        shown = ", ".join(repr(n) for n in unexpected[:3]) + (", ..." if len(unexpected) > 3 else "")
        raise FormatError(
            f"the torch.save archive holds {shown}, which torch.save never writes (only data.pkl, "
            "data/<n> storages and version records under one folder); refused. " + _export_advice()
        )


def _classify_torch_zip(zf: zipfile.ZipFile, names: list[str]) -> FormatInfo | None:
    """torch.save, torch.jit.save and torch.export.save all write '<top>/...' zips."""
    tops = {PurePosixPath(n).parts[0] for n in names}
    if len(tops) != 1:
        if any(PurePosixPath(n).name == "data.pkl" for n in names):
            raise FormatError(
                f"the archive holds a data.pkl but {len(tops)} top-level entries; a torch.save "
                "archive has exactly one folder. " + _export_advice()
            )
        return None
    top = next(iter(tops))
    rel = {n[len(top) + 1:] for n in names if "/" in n}
    if "archive_format" in rel or "models/model.json" in rel or any(
        r.startswith("serialized_exported_program") for r in rel
    ):
        return FormatInfo("torch-export", "torch.export program (.pt2)")
    if "constants.pkl" in rel and any(r.startswith("code/") for r in rel):
        return FormatInfo("torchscript", "TorchScript archive (torch.jit.save)")
    if "data.pkl" in rel:
        if zf.getinfo(f"{top}/data.pkl").file_size > MAX_PICKLE_BYTES:
            raise FormatError("the archive's data.pkl is too large to be a state dict's index")
        _check_torch_save_members(zf, top)
        data = zf.read(f"{top}/data.pkl")
        refs = pickle_globals(data)
        bad = [ref for ref in refs if not _allowed_global(*ref)]
        if bad:
            shown = ", ".join(f"{m}.{n}" for m, n in bad[:3])
            raise FormatError(f"{PICKLED_MODULE_MESSAGE} (the pickle references {shown})")
        n_storages = sum(1 for r in rel if r.startswith("data/"))
        return FormatInfo("state-dict", f"torch.save state dict ({n_storages} storage(s))")
    return None


# --- ONNX ----------------------------------------------------------------------------------

# ModelProto's top-level fields: number -> protobuf wire type (0 varint, 2 length-delimited).
_MODELPROTO_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
# Below this size the graph is described (node count, operators).
ONNX_FULL_PARSE_MAX_BYTES = 64 * 1024 * 1024
# Up to this size an .onnx file is parsed at upload to check its external data references
# (above it, past any upload limit, the worker's loader checks them in the sandbox).
ONNX_EXTERNAL_CHECK_MAX_BYTES = 1024 * 1024 * 1024


def _read_varint(fh) -> int | None:
    value = 0
    for shift in range(0, 70, 7):
        byte = fh.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
    return None


def _walk_modelproto(path: Path, size: int) -> dict | None:
    """Walk the top-level protobuf fields by seeking over them (a multi-GB model costs a few
    reads); None unless the whole file is a well-formed ModelProto with a graph."""
    found: dict = {}
    with open(path, "rb") as fh:
        while fh.tell() < size:
            tag = _read_varint(fh)
            if tag is None:
                return None
            number, wire = tag >> 3, tag & 7
            if _MODELPROTO_FIELDS.get(number) != wire:
                return None
            if wire == 0:
                value = _read_varint(fh)
                if value is None:
                    return None
                found[number] = value
                continue
            length = _read_varint(fh)
            if length is None or fh.tell() + length > size:
                return None
            if number == 2 and length <= 256:
                found[2] = fh.read(length).decode("utf-8", "replace")
            else:
                found.setdefault(number, 0)
                fh.seek(length, 1)
    if not found.get(1) or 7 not in found:
        return None
    return found


def _onnx_tensors(model):
    """(where, TensorProto) for every tensor of an ONNX model: initializers (sparse ones
    too), tensors in node attributes, at any depth of subgraph (If, Loop, Scan bodies), and
    those in the model's local functions."""

    def sparse(where, st):
        yield where, st.values
        yield where, st.indices

    def nodes(node_list, where):
        for node in node_list:
            for attr in node.attribute:
                at = f"{where}/{node.op_type}:{attr.name}"
                if attr.HasField("t"):
                    yield at, attr.t
                for t in attr.tensors:
                    yield at, t
                if attr.HasField("sparse_tensor"):
                    yield from sparse(at, attr.sparse_tensor)
                for st in attr.sparse_tensors:
                    yield from sparse(at, st)
                if attr.HasField("g"):
                    yield from graph(attr.g, at)
                for g in attr.graphs:
                    yield from graph(g, at)

    def graph(g, where):
        for t in g.initializer:
            yield where, t
        for st in g.sparse_initializer:
            yield from sparse(where, st)
        yield from nodes(g.node, where)

    yield from graph(model.graph, "graph")
    for function in model.functions:
        yield from nodes(function.node, f"function {function.name}")


def onnx_external_data_problem(model, onnx_dir: str, available) -> str | None:
    """Why the external data an ONNX model refers to is not safely inside the upload, or
    None. ``onnx_dir`` is the .onnx file's folder inside the upload, ``available`` tells
    whether a file (relative, "/"-separated) is part of it: a set of names or a callable."""
    has = available if callable(available) else available.__contains__
    for where, tensor in _onnx_tensors(model):
        if tensor.data_location != 1:  # onnx.TensorProto.EXTERNAL
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        normalised = location.replace("\\", "/")
        if (not location or "\x00" in location or normalised.startswith("/")
                or (len(normalised) > 1 and normalised[1] == ":") or ".." in PurePosixPath(normalised).parts):
            return (f"the ONNX model's tensor {tensor.name!r} ({where}) keeps its data at {location!r}, "
                    "outside the upload; refused")
        target = posixpath.normpath(posixpath.join(onnx_dir, normalised))
        if not has(target):
            return (f"the ONNX model's tensor {tensor.name!r} ({where}) keeps its data in {location!r}, which is "
                    "not part of the upload: upload the .onnx file and its data files together in one zip")
    return None


def _parse_onnx_bytes(data: bytes, name: str):
    try:
        import onnx  # noqa: PLC0415 - lazy: the web process must not pay for it at import time

        return onnx.load_model_from_string(data)
    except Exception as exc:
        raise FormatError(f"{name} is not a readable ONNX model ({type(exc).__name__})") from None


def _check_onnx(path: Path) -> FormatInfo | None:
    size = path.stat().st_size
    fields = _walk_modelproto(path, size)
    if fields is None:
        return None
    detail = f"ONNX model: ir_version {fields[1]}, producer {fields.get(2) or 'unknown'}"
    if size > ONNX_EXTERNAL_CHECK_MAX_BYTES:
        return FormatInfo("onnx", detail)
    try:
        import onnx  # lazy: the web process must not pay for it at import time

        model = onnx.load(str(path), load_external_data=False)
    except ImportError:  # pragma: no cover - onnx is a dependency
        return FormatInfo("onnx", detail)
    except Exception:
        return None
    if not model.graph.node:
        return None
    # A lone .onnx file: its external data may only be files beside it, in its own folder. At
    # upload the file is staged alone in a fresh folder, so any reference is refused there.
    folder = path.parent.resolve()

    def beside(name: str) -> bool:
        target = (folder / name).resolve()
        return folder in target.parents and target.is_file()

    problem = onnx_external_data_problem(model, "", beside)
    if problem:
        raise FormatError(problem)
    if size <= ONNX_FULL_PARSE_MAX_BYTES:
        ops = sorted({n.op_type for n in model.graph.node})
        detail += f", {len(model.graph.node)} node(s), ops {', '.join(ops[:8])}{'...' if len(ops) > 8 else ''}"
    return FormatInfo("onnx", detail)
