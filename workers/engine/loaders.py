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

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import archive, formats, inputs, registry
from .errors import FormatError, LoadError

UNSAFE_ENV = "AUDIT_ALLOW_UNSAFE_FORMATS"


@dataclass
class LoadedModel:
    """A model ready to run, and what the engine needs to feed, count and describe it.

    ``kind`` is "torch" (``module`` is an nn.Module or callable) or "onnx" (``module`` is an
    onnxruntime InferenceSession, ``model_path`` its .onnx file). ``input_spec`` is read by
    ``inputs.build_inputs``; ``call`` says how inputs are passed ("kwargs" or "positional").
    """

    module: Any
    format: str
    architecture: str
    task: str
    config: dict
    input_spec: dict
    kind: str = "torch"
    call: str = "kwargs"
    device: str = "cpu"
    size_bytes: int = 0
    detail: str = ""
    model_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    workdir: Path | None = None
    # Set by recipes: what the variant's reader should know (which library ran, caveats).
    notes: list[str] = field(default_factory=list)
    # Floating-point inputs are cast to this dtype ("float16", "bfloat16") for half-precision variants.
    input_dtype: str | None = None
    # Folder the model was loaded from (Hugging Face: where its tokenizer lives).
    source_dir: Path | None = None
    # Floating-point dtype of the checkpoint's weights as uploaded ("float16", "float32", ...).
    stored_dtype: str | None = None

    def compute_dtype(self) -> str | None:
        """The floating-point dtype this model computes in: its inputs' cast dtype, else that of
        most of its floating-point weights (torch), or of its float initializers / inputs (ONNX)."""
        if self.input_dtype:
            return self.input_dtype
        if self.kind == "onnx":
            if self.model_path is None:
                return self.stored_dtype
            try:  # a variant's graph (ort-fp16, int8) is its own file
                return _onnx_file_float_dtype(self.model_path)
            except Exception:
                return self.stored_dtype
        return module_float_dtype(self.module)

    def make_inputs(self, batch_size: int, seq_len: int | None = None, overrides: dict | None = None):
        """``inputs.ModelInputs`` for one forward call of ``batch_size`` samples."""
        built = inputs.build_inputs(
            self.input_spec, batch_size, seq_len=seq_len, overrides=overrides, device=self.device
        )
        if self.input_dtype and self.kind == "torch":
            built.values = self.cast_inputs(built.values)
        return built

    def cast_inputs(self, values: dict) -> dict:
        """Floating-point tensors in ``values`` cast to ``input_dtype`` (others unchanged)."""
        if not self.input_dtype:
            return values
        import torch

        dtype = getattr(torch, self.input_dtype)
        return {k: (v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
                for k, v in values.items()}

    def forward(self, values: dict):
        """One inference: one forward call of one batch."""
        if self.kind == "onnx":
            return self.module.run(None, values)
        if self.call == "positional":
            return self.module(*values.values())
        return self.module(**values)

    def close(self) -> None:
        if self.workdir is not None:
            archive.remove_tree(self.workdir)
            self.workdir = None


BASELINE_DTYPES = ("float32", "stored")
_HALF = ("float16", "bfloat16")
# safetensors header dtype codes and ONNX TensorProto data types of floating-point tensors
_SAFETENSORS_FLOAT = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
_ONNX_FLOAT = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


def _dominant(counts: dict) -> str | None:
    """The dtype holding most elements (None when there is no floating-point tensor)."""
    return max(counts, key=counts.get) if counts else None


def tensors_float_dtype(tensors) -> str | None:
    """Floating-point dtype of most elements among ``tensors`` (torch tensors)."""
    counts: dict = {}
    for t in tensors:
        if getattr(t, "is_floating_point", lambda: False)():
            name = str(t.dtype).removeprefix("torch.")
            counts[name] = counts.get(name, 0) + int(t.numel())
    return _dominant(counts)


def module_float_dtype(module) -> str | None:
    """Floating-point dtype of most of a torch module's parameters and buffers (None for a
    module without any, or a callable that is no nn.Module)."""
    try:
        tensors = list(module.parameters()) + list(module.buffers())
    except Exception:
        return None
    found = tensors_float_dtype(tensors)
    if found is None and tensors == []:  # e.g. every layer quantised: packed weights, float biases
        try:
            from .recipes.common import storable_tensors

            found = tensors_float_dtype(storable_tensors(module).values())
        except Exception:
            found = None
    return found


def safetensors_float_dtype(paths) -> str | None:
    """Floating-point dtype of most elements in safetensors files, read from their JSON headers
    (nothing is loaded)."""
    counts: dict = {}
    for path in paths:
        try:
            header = formats.read_safetensors_header(path)
        except (FormatError, OSError):
            continue
        for name, entry in header.items():
            if name == "__metadata__" or not isinstance(entry, dict):
                continue
            dtype = _SAFETENSORS_FLOAT.get(str(entry.get("dtype")))
            if dtype is None:
                continue
            n = 1
            for d in entry.get("shape") or []:
                n *= int(d)
            counts[dtype] = counts.get(dtype, 0) + n
    return _dominant(counts)


def onnx_float_dtype(proto) -> str | None:
    """Floating-point dtype of most initializer elements of an ONNX graph (its float inputs'
    when it has no float initializer)."""
    counts: dict = {}
    for t in proto.graph.initializer:
        dtype = _ONNX_FLOAT.get(int(t.data_type))
        if dtype is not None:
            n = 1
            for d in t.dims:
                n *= int(d)
            counts[dtype] = counts.get(dtype, 0) + n
    if not counts:
        for value in proto.graph.input:
            dtype = _ONNX_FLOAT.get(int(value.type.tensor_type.elem_type))
            if dtype is not None:
                counts[dtype] = counts.get(dtype, 0) + 1
    return _dominant(counts)


_ONNX_DTYPES: dict = {}  # (path, size, mtime) -> dtype: a large graph is parsed once


def _onnx_file_float_dtype(path: Path) -> str | None:
    import onnx

    stat = Path(path).stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _ONNX_DTYPES:
        _ONNX_DTYPES[key] = onnx_float_dtype(onnx.load(str(path), load_external_data=False))
    return _ONNX_DTYPES[key]


def baseline_dtype_option(options: dict) -> str:
    """``options["baseline_dtype"]``: "float32" (default) or "stored"; LoadError otherwise."""
    wanted = str(options.get("baseline_dtype") or "float32").strip().lower()
    if wanted not in BASELINE_DTYPES:
        raise LoadError(f"unknown baseline_dtype {wanted!r}; one of {', '.join(BASELINE_DTYPES)} "
                        "(half precision is measured by the fp16 / bf16 recipes)")
    return wanted


def _precision_warning(stored: str | None, baseline: str | None, device: str) -> list[str]:
    if stored in _HALF and baseline == "float32":
        return [f"the checkpoint is stored in {stored}; the baseline runs in float32 on {device} (the fp16 and "
                "bf16 recipes measure half precision against it)"]
    return []


def precision_keys(loaded: LoadedModel, variant: LoadedModel | None) -> dict:
    """The precision keys of a variant's result entry (docs/ENGINE_INTERFACE.md, schema 2):
    ``stored_dtype`` (the checkpoint's), ``baseline_dtype`` (what the baseline computes in) and
    ``dtype`` (what this variant computes in; None when it did not run)."""
    baseline = loaded.compute_dtype()
    return {"stored_dtype": loaded.stored_dtype, "baseline_dtype": baseline,
            "dtype": None if variant is None else baseline if variant is loaded else variant.compute_dtype()}


def unsafe_formats_allowed() -> bool:
    return os.environ.get(UNSAFE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


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


def _extract_if_zip(path: Path) -> tuple[Path, Path | None]:
    """(folder to load from, temporary folder to remove later or None)."""
    if path.is_dir():
        return path, None
    workdir = Path(tempfile.mkdtemp(prefix="audit-model-"))
    try:
        archive.safe_extract(path, workdir)
    except BaseException:
        archive.remove_tree(workdir)
        raise
    return workdir, workdir


# --- Hugging Face --------------------------------------------------------------------------

_TASK_SUFFIXES = (
    ("ForSequenceClassification", "text-classification"),
    ("ForImageClassification", "image-classification"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForMaskedLM", "fill-mask"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForConditionalGeneration", "text2text-generation"),
)


def _hf_task(class_name: str) -> str:
    for suffix, task in _TASK_SUFFIXES:
        if class_name.endswith(suffix):
            return task
    return "feature-extraction"


def _hf_model_class(config):
    """The class named in ``config.architectures`` if transformers itself ships it, else AutoModel."""
    import transformers

    for name in getattr(config, "architectures", None) or []:
        if not isinstance(name, str) or not name.isidentifier():
            continue
        try:
            cls = getattr(transformers, name, None)
        except Exception:
            cls = None
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            continue
        config_class = getattr(cls, "config_class", None)
        if config_class is None or isinstance(config, config_class):
            return cls
    return transformers.AutoModel


def _hf_root(folder: Path) -> Path:
    if (folder / "config.json").is_file():
        return folder
    candidates = [p.parent for p in folder.glob("*/config.json")]
    if len(candidates) == 1:
        return candidates[0]
    raise FormatError("no config.json found at the top of the Hugging Face upload")


def _load_hf(path: Path, options: dict, device: str) -> LoadedModel:
    folder, workdir = _extract_if_zip(path)
    try:
        root = _hf_root(folder)
        from transformers import AutoConfig
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the engine draws its own progress; tqdm bars garble it

        try:
            config = AutoConfig.from_pretrained(str(root), trust_remote_code=False, local_files_only=True)
        except Exception as exc:
            raise LoadError(
                f"transformers cannot read this config.json without running the upload's own code "
                f"(trust_remote_code is off) or it is invalid: {exc}"
            ) from None
        cls = _hf_model_class(config)
        for index in root.glob("*.safetensors.index.json"):
            try:
                formats.check_weight_map(json.loads(index.read_text()), index.name)
            except FormatError as exc:
                raise LoadError(str(exc)) from None
            except ValueError:
                raise LoadError(f"{index.name} is not valid JSON") from None
        import torch

        stored = safetensors_float_dtype(sorted(root.rglob("*.safetensors")))
        keep = baseline_dtype_option(options) == "stored" or getattr(config, "quantization_config", None)
        try:
            model, info = cls.from_pretrained(
                str(root),
                config=config,
                use_safetensors=True,
                local_files_only=True,
                output_loading_info=True,
                # transformers 5 loads the stored dtype by default ("auto"); the baseline is float32
                dtype="auto" if keep else torch.float32,
            )
        except Exception as exc:
            raise LoadError(f"could not load the Hugging Face model as {cls.__name__}: {exc}") from None
        warnings = []
        missing = list(info.get("missing_keys") or [])
        if missing:
            warnings.append(
                f"{len(missing)} weight(s) missing from the upload were randomly initialised "
                f"(e.g. {missing[0]}); FLOPs and energy are unaffected, accuracy would be"
            )
        model = model.to(device).eval()
        arch = cls.__name__ if cls.__name__ != "AutoModel" else type(model).__name__
        size = sum(p.stat().st_size for p in root.rglob("*.safetensors"))
        computes = module_float_dtype(model)
        warnings += _precision_warning(stored, computes, device)
        return LoadedModel(
            module=model,
            format="hf",
            architecture=arch,
            task=_hf_task(arch),
            config=config.to_dict(),
            input_spec=inputs.hf_input_spec(config, model=model, folder=root),
            device=device,
            size_bytes=size,
            warnings=warnings,
            workdir=workdir,
            source_dir=root,
            stored_dtype=stored,
            # inputs follow a half-precision model kept as stored (baseline_dtype "stored")
            input_dtype=computes if computes in _HALF else None,
        )
    except BaseException:
        if workdir is not None:
            archive.remove_tree(workdir)
        raise


# --- registered architectures --------------------------------------------------------------


def _registered_module(name: str, config: dict, state_dict: dict, device: str, fmt: str,
                       options: dict | None = None) -> LoadedModel:
    arch = registry.get_architecture(name)
    full = arch.full_config(config)
    try:
        module = arch.build(full)
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"architecture {name!r} could not be built from config {full}: {exc}") from None
    try:
        result = module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise LoadError(
            f"the weights do not fit architecture {name!r} with config {full}: {_first_lines(exc)}"
        ) from None
    del result
    # load_state_dict copied the weights into the builder's float32 parameters
    stored = tensors_float_dtype(state_dict.values())
    keep = baseline_dtype_option(options or {}) == "stored" and stored in _HALF
    if keep:
        import torch

        module = module.to(getattr(torch, stored))
    module = module.to(device).eval()
    spec = {
        "kind": "tensors",
        "inputs": [{"name": arch.input_name, "shape": list(arch.input_shape(full)), "dtype": arch.input_dtype}],
    }
    return LoadedModel(
        module=module,
        format=fmt,
        architecture=name,
        task=arch.task,
        config=full,
        input_spec=spec,
        call="positional",
        device=device,
        stored_dtype=stored,
        input_dtype=stored if keep else None,
        warnings=_precision_warning(stored, module_float_dtype(module), device),
    )


def _first_lines(exc: Exception, n: int = 3) -> str:
    return " ".join(str(exc).strip().splitlines()[:n])


def _load_safetensors(path: Path, options: dict, device: str) -> LoadedModel:
    from safetensors.torch import load_file

    name, config = registry.resolve_architecture(formats.safetensors_metadata(path), options)
    try:
        state_dict = load_file(str(path), device="cpu")
    except Exception as exc:
        raise LoadError(f"the safetensors file could not be read: {exc}") from None
    loaded = _registered_module(name, config, state_dict, device, "safetensors", options)
    loaded.size_bytes = path.stat().st_size
    return loaded


def _load_state_dict(path: Path, options: dict, device: str) -> LoadedModel:
    import torch

    name, config = registry.resolve_architecture({}, options)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LoadError(f"the state dict could not be read with weights_only=True: {_first_lines(exc)}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LoadError("the file does not hold a state dict (a mapping of names to tensors)")
    loaded = _registered_module(name, config, obj, device, "state-dict", options)
    loaded.size_bytes = sum(t.numel() * t.element_size() for t in obj.values())
    return loaded


# --- ONNX ----------------------------------------------------------------------------------


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


# --- formats that unpickle code ------------------------------------------------------------


def _require_unsafe(fmt: str) -> None:
    if not unsafe_formats_allowed():
        raise LoadError(
            f"{fmt} models are off by default: loading one unpickles code from the upload, which "
            f"could run anything. The deployment can allow them (inside the sandbox) with "
            f"{UNSAFE_ENV}=1; otherwise export to ONNX, or safetensors + a registered architecture."
        )


def _shape_spec_from_overrides(options: dict) -> dict:
    shapes = (options.get("input_overrides") or {}).get("shape") or {}
    return {"kind": "tensors", "inputs": [{"name": n, "shape": list(s), "dtype": "float32"} for n, s in shapes.items()]}


def _load_torchscript(path: Path, options: dict, device: str) -> LoadedModel:
    _require_unsafe("TorchScript")
    import torch

    try:
        module = torch.jit.load(str(path), map_location=device).eval()
    except Exception as exc:
        raise LoadError(f"the TorchScript archive could not be loaded: {_first_lines(exc)}") from None
    module, stored, input_dtype = _to_baseline_dtype(module, options)
    return LoadedModel(
        module=module,
        format="torchscript",
        architecture=getattr(module, "original_name", "torchscript"),
        task=str(options.get("task") or "unknown"),
        config={},
        input_spec=_shape_spec_from_overrides(options),
        call="positional",
        device=device,
        size_bytes=path.stat().st_size,
        stored_dtype=stored,
        input_dtype=input_dtype,
        warnings=_precision_warning(stored, module_float_dtype(module), device),
    )


def _to_baseline_dtype(module, options: dict):
    """(module in the baseline's dtype, stored dtype, dtype its float inputs are cast to or None)
    for a loaded program (TorchScript, torch.export) whose weights may be stored in half precision."""
    stored = module_float_dtype(module)
    if stored not in _HALF:
        return module, stored, None
    if baseline_dtype_option(options) == "stored":
        return module, stored, stored
    return module.float(), stored, None


def _load_torch_export(path: Path, options: dict, device: str) -> LoadedModel:
    _require_unsafe("torch.export")
    import torch

    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise LoadError(f"the torch.export program could not be loaded: {_first_lines(exc)}") from None
    spec = _shape_spec_from_overrides(options)
    example = getattr(program, "example_inputs", None)
    if not spec["inputs"] and example:
        args = example[0] if isinstance(example, tuple) else ()
        spec["inputs"] = [
            {"name": f"arg{i}", "shape": list(a.shape[1:]), "dtype": str(a.dtype).removeprefix("torch.")}
            for i, a in enumerate(args)
            if isinstance(a, torch.Tensor)
        ]
    module, stored, input_dtype = _to_baseline_dtype(program.module().to(device), options)
    if stored in _HALF and input_dtype is None:  # its example inputs were half; the baseline takes float32
        for item in spec["inputs"]:
            if item["dtype"] in _HALF:
                item["dtype"] = "float32"
    return LoadedModel(
        module=module,
        format="torch-export",
        architecture="torch.export program",
        task=str(options.get("task") or "unknown"),
        config={},
        input_spec=spec,
        call="positional",
        device=device,
        size_bytes=path.stat().st_size,
        stored_dtype=stored,
        input_dtype=input_dtype,
        warnings=_precision_warning(stored, module_float_dtype(module), device),
    )


_LOADERS = {
    "hf": _load_hf,
    "safetensors": _load_safetensors,
    "state-dict": _load_state_dict,
    "onnx": _load_onnx,
    "torchscript": _load_torchscript,
    "torch-export": _load_torch_export,
}
