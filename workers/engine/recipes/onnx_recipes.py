"""Recipes for ONNX models, with ``onnxruntime.quantization`` and onnxruntime's float16
converter. Each writes the variant's .onnx file into its own temporary folder (removed when
the variant is closed); the variant's size is that file's size."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .registry import recipe
from .common import derive


def _session(loaded, model_path: Path):
    import onnxruntime as ort

    old = loaded.module
    sess_options = ort.SessionOptions()
    try:
        threads = old.get_session_options().intra_op_num_threads
        if threads:
            sess_options.intra_op_num_threads = threads
    except Exception:
        pass
    return ort.InferenceSession(str(model_path), sess_options, providers=old.get_providers())


def _onnx_variant(loaded, out: Path, workdir: Path, notes):
    from .. import inputs
    import onnx

    proto = onnx.load(str(out), load_external_data=False)
    size = sum(p.stat().st_size for p in workdir.iterdir() if p.is_file())
    return derive(loaded, _session(loaded, out), notes=notes, size_bytes=size, model_path=out,
                  workdir=workdir, input_spec=_keep_dims(loaded.input_spec, inputs.onnx_input_spec(proto)))


def _keep_dims(old: dict, new: dict) -> dict:
    """The variant keeps the original's input names and dims; vocab sizes found again may be lost
    after quantisation (Gather on a quantised table), so the original's are kept."""
    return old if [i["name"] for i in old.get("inputs", [])] == [i["name"] for i in new.get("inputs", [])] else new


class _QuietLogging:
    """onnxruntime.quantization logs advice on the root logger; keep it off the engine's stderr."""

    def __enter__(self):
        import logging

        self.level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)

    def __exit__(self, *exc):
        import logging

        logging.getLogger().setLevel(self.level)


def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="audit-onnx-variant-"))


def _quantiser_input(loaded, workdir: Path) -> str:
    """onnxruntime's quantisers write a shape-inferred copy beside the model they are given.
    An upload is read-only to the engine (the sandbox binds it so): give them a link to it in
    the variant's own folder instead. Only a lone .onnx file is ever read-only there (a zip is
    extracted into the engine's private folder), and a lone file has no external data to find
    beside it, so the link loses nothing."""
    source = Path(loaded.model_path)
    if os.access(source.parent, os.W_OK):
        return str(source)
    link = workdir / source.name
    link.symlink_to(source)
    return str(link)


def _cleanup_on_error(workdir: Path):
    from ..archive import remove_tree

    remove_tree(workdir)


@recipe("ort-int8-dynamic", kinds=("onnx",), defaults={"per_channel": False}, same_flops=True)
def ort_int8_dynamic(loaded, params):
    """onnxruntime dynamic quantisation: int8 weights, activations quantised at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    workdir = _workdir()
    try:
        out = workdir / "model.int8-dynamic.onnx"
        with _QuietLogging():
            quantize_dynamic(_quantiser_input(loaded, workdir), str(out), weight_type=QuantType.QInt8,
                             per_channel=bool(params.get("per_channel")))
        return _onnx_variant(loaded, out, workdir, ["ran onnxruntime.quantization.quantize_dynamic (QInt8 weights)"])
    except BaseException:
        _cleanup_on_error(workdir)
        raise


class _Reader:
    """CalibrationDataReader over the dataset's samples (one sample per call)."""

    def __init__(self, loaded, data, n: int):
        import numpy as np

        self._feeds = iter([data.values_for(loaded, np.arange(i, i + 1)) for i in range(n)])

    def get_next(self):
        return next(self._feeds, None)


@recipe("ort-int8-static", kinds=("onnx",), defaults={"calibration_samples": 128, "per_channel": False},
        needs_dataset=True, same_flops=True)
def ort_int8_static(loaded, params, ctx):
    """onnxruntime static quantisation (QDQ, int8), activation ranges calibrated on the dataset."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    n = min(int(params["calibration_samples"]), ctx.train_data.n)

    class Reader(_Reader, CalibrationDataReader):
        pass

    workdir = _workdir()
    try:
        out = workdir / "model.int8-static.onnx"
        with _QuietLogging():
            quantize_static(_quantiser_input(loaded, workdir), str(out), Reader(loaded, ctx.train_data, n),
                            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, per_channel=bool(params.get("per_channel")))
        notes = [f"ran onnxruntime.quantization.quantize_static (QDQ, int8), calibrated on {n} samples of the dataset"]
        return _onnx_variant(loaded, out, workdir, notes)
    except BaseException:
        _cleanup_on_error(workdir)
        raise


@recipe("ort-fp16", kinds=("onnx",), defaults={"keep_io_types": True})
def ort_fp16(loaded, params):
    """Weights and compute in float16 (onnxruntime.transformers.float16), float32 inputs/outputs kept."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    workdir = _workdir()
    try:
        model = onnx.load(str(loaded.model_path))
        half = convert_float_to_float16(model, keep_io_types=bool(params.get("keep_io_types", True)))
        out = workdir / "model.fp16.onnx"
        onnx.save(half, str(out))
        notes = ["ran onnxruntime.transformers.float16.convert_float_to_float16"]
        if not str(loaded.device).startswith("cuda"):
            notes.append("fp16 on CPU: onnxruntime's CPU kernels mostly compute fp16 by casting back "
                         "to fp32, so expect no speed-up here; it is a GPU recipe")
        return _onnx_variant(loaded, out, workdir, notes)
    except BaseException:
        _cleanup_on_error(workdir)
        raise
