"""ONNX graphs: onnxruntime; external data must live inside the upload's own folder."""

from __future__ import annotations

from pathlib import Path

from .. import archive, inputs
from ..errors import FormatError, LoadError
from .common import _extract_if_zip, _first_lines
from .model import _HALF, LoadedModel, onnx_float_dtype


def _onnx_file(folder: Path) -> Path:
    found = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".onnx"]
    if len(found) != 1:
        raise FormatError(f"expected exactly one .onnx file in the upload, found {len(found)}")
    return found[0]


def _all_tensors(graph):
    """Every TensorProto in a graph: initializers, constant attributes, and subgraphs' too."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes):
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            for sparse in attr.sparse_tensors:
                yield sparse.values
                yield sparse.indices
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def _model_tensors(model):
    """The graph's tensors and those inside the model's local functions."""
    yield from _all_tensors(model.graph)
    for function in model.functions:
        yield from _node_tensors(function.node)


def check_onnx_external_data(model, base_dir: Path) -> int:
    """Raise LoadError if any external data location escapes ``base_dir``; return its total bytes."""
    base = base_dir.resolve()
    total = 0
    seen: set[Path] = set()
    for tensor in _model_tensors(model):
        if tensor.data_location != 1:  # onnx.TensorProto.EXTERNAL
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        normalised = location.replace("\\", "/")
        if (
            not location
            or normalised.startswith("/")
            or (len(normalised) > 1 and normalised[1] == ":")
            or ".." in Path(normalised).parts
        ):
            raise LoadError(
                f"ONNX tensor {tensor.name!r} points at external data {location!r} outside the "
                "upload's folder; refused"
            )
        target = (base / normalised).resolve()
        if base not in target.parents:
            raise LoadError(f"ONNX external data {location!r} resolves outside the upload's folder; refused")
        if not target.is_file():
            raise LoadError(f"ONNX external data file {location!r} is missing from the upload")
        if target not in seen:
            seen.add(target)
            total += target.stat().st_size
    return total


def _load_onnx(path: Path, options: dict, device: str) -> LoadedModel:
    import onnx
    import onnxruntime as ort

    workdir = None
    try:
        if path.is_dir():
            model_path = _onnx_file(path)
        elif _is_zip(path):
            folder, workdir = _extract_if_zip(path)
            model_path = _onnx_file(folder)
        else:
            model_path = path
        try:
            proto = onnx.load(str(model_path), load_external_data=False)
        except Exception as exc:
            raise LoadError(f"the ONNX file could not be parsed: {exc}") from None
        external_bytes = check_onnx_external_data(proto, model_path.parent)
        sess_options = ort.SessionOptions()
        if options.get("threads"):
            sess_options.intra_op_num_threads = int(options["threads"])
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise LoadError("device cuda was requested but onnxruntime has no CUDA execution provider here")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": _cuda_index(device)}))
        try:
            session = ort.InferenceSession(str(model_path), sess_options, providers=providers)
        except Exception as exc:
            raise LoadError(f"onnxruntime could not load the model: {_first_lines(exc)}") from None
        producer = proto.producer_name or "unknown producer"
        stored = onnx_float_dtype(proto)
        warnings = []
        if stored in _HALF:
            warnings.append(f"the ONNX graph is stored in {stored} and runs as stored: its dtypes are part of "
                            "the graph, so its baseline is not float32")
        return LoadedModel(
            module=session,
            format="onnx",
            architecture=f"onnx-graph ({producer})",
            task=str(options.get("task") or "unknown"),
            config={"opset": [{"domain": o.domain, "version": o.version} for o in proto.opset_import]},
            input_spec=inputs.onnx_input_spec(proto),
            kind="onnx",
            device=device,
            size_bytes=model_path.stat().st_size + external_bytes,
            model_path=model_path,
            workdir=workdir,
            stored_dtype=stored,
            warnings=warnings,
        )
    except BaseException:
        if workdir is not None:
            archive.remove_tree(workdir)
        raise


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _cuda_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0
