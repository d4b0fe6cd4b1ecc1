"""Format detection: from content, never from the name; pickles are inspected, never loaded."""

import os
import shutil
import subprocess
import sys
import warnings

import pytest

from tests.engine import models as m
from workers.engine.errors import ArchiveError, FormatError
from workers.engine.formats import detect_format, pickle_globals


def test_hf_folder_and_zip_are_detected(bert_dir, bert_zip, vit_zip):
    info = detect_format(bert_dir)
    assert info.format == "hf"
    assert "BertForSequenceClassification" in info.detail
    assert detect_format(bert_zip).format == "hf"  # config.json one folder deep
    assert detect_format(vit_zip).format == "hf"  # config.json at the top


def test_hf_without_safetensors_is_refused_with_advice(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(FormatError, match="safe_serialization=True"):
        detect_format(tmp_path)


def test_safetensors_detected_with_architecture(mlp_safetensors, tmp_path):
    info = detect_format(mlp_safetensors)
    assert info.format == "safetensors"
    assert "architecture=mlp" in info.detail
    renamed = tmp_path / "weights.onnx"  # the name lies; the content decides
    shutil.copy(mlp_safetensors, renamed)
    assert detect_format(renamed).format == "safetensors"


def test_onnx_detected_by_content(mlp_onnx, tmp_path):
    assert detect_format(mlp_onnx).format == "onnx"
    renamed = tmp_path / "model.bin"
    shutil.copy(mlp_onnx, renamed)
    assert detect_format(renamed).format == "onnx"


def test_state_dict_zip_detected(mlp_state_dict):
    info = detect_format(mlp_state_dict)
    assert info.format == "state-dict"


def test_pickled_module_refused_with_export_advice(tmp_path):
    path = m.save_pickled_module(tmp_path / "model.pt")
    with pytest.raises(FormatError) as err:
        detect_format(path)
    message = str(err.value)
    assert "pickled nn.Module is refused" in message
    assert "safetensors.torch.save_file" in message and "torch.onnx.export" in message
    assert "torch.nn.modules" in message


def test_pickled_custom_class_refused(tmp_path):
    path = m.save_pickled_custom_object(tmp_path / "ckpt.pt")
    with pytest.raises(FormatError, match="pickled nn.Module is refused.*PickledNet"):
        detect_format(path)


def test_pickle_named_onnx_is_refused(tmp_path):
    path = m.save_pickled_module(tmp_path / "model.onnx")
    with pytest.raises(FormatError, match="pickled nn.Module is refused"):
        detect_format(path)
    raw = m.save_raw_pickle(tmp_path / "other.onnx")
    with pytest.raises(FormatError, match="raw pickle"):
        detect_format(raw)


def test_legacy_torch_save_is_a_raw_pickle(tmp_path):
    import torch

    path = tmp_path / "legacy.pt"
    torch.save(m.build("mlp", m.MLP_CONFIG).state_dict(), path, _use_new_zipfile_serialization=False)
    with pytest.raises(FormatError, match="raw pickle"):
        detect_format(path)


def test_torchscript_and_torch_export_detected(tmp_path):
    import torch

    module = m.build("mlp", m.MLP_CONFIG)
    example = torch.randn(2, m.MLP_CONFIG["in_features"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(module, example), tmp_path / "ts.pt")
        torch.export.save(torch.export.export(module, (example,)), tmp_path / "prog.pt2")
    assert detect_format(tmp_path / "ts.pt").format == "torchscript"
    assert detect_format(tmp_path / "prog.pt2").format == "torch-export"


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (os.urandom(4096), "unknown model format"), (b"hello world, not a model\n" * 10, "unknown")],
    ids=["empty", "random", "text"],
)
def test_junk_is_refused_with_clear_message(tmp_path, content, message):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=message):
        detect_format(path)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(FormatError, match="no file"):
        detect_format(tmp_path / "nope")
    with pytest.raises(FormatError, match="no model"):
        detect_format(tmp_path)


def test_zip_that_breaks_caps_is_refused_at_detection(tmp_path):
    path = m.make_zip(tmp_path / "m.zip", {"../config.json": b"{}", "model.safetensors": b"x"})
    with pytest.raises(ArchiveError, match="climbs out"):
        detect_format(path)


def test_pickle_globals_reads_stack_global_without_unpickling():
    import pickle

    data = pickle.dumps(m.PickledNet(), protocol=4)
    assert ("tests.engine.models", "PickledNet") in pickle_globals(data)


def test_detect_format_imports_no_heavy_library(mlp_safetensors, bert_dir):
    code = (
        "import sys; from workers.engine.formats import detect_format; "
        f"detect_format({str(mlp_safetensors)!r}); detect_format({str(bert_dir)!r}); "
        "from workers.engine.registry import architecture_names; architecture_names(); "
        "import workers.engine.archive, workers.engine.errors; "
        "print(sorted(x for x in ('torch', 'transformers', 'onnx', 'onnxruntime') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.stdout.strip() == "[]"


def test_truncated_onnx_is_not_onnx(mlp_onnx, tmp_path):
    data = mlp_onnx.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="unknown model format"):
        detect_format(path)


def test_large_onnx_is_recognised_by_walking_fields_only(mlp_onnx, monkeypatch):
    from workers.engine import formats

    monkeypatch.setattr(formats, "ONNX_FULL_PARSE_MAX_BYTES", 0)  # as if the file were huge
    info = detect_format(mlp_onnx)
    assert info.format == "onnx" and "producer pytorch" in info.detail and "node(s)" not in info.detail


@pytest.mark.parametrize("target", ["/etc/victim.safetensors", "../victim.safetensors", "sub/../../x.safetensors"])
def test_weight_index_pointing_outside_the_upload_is_refused(tmp_path, target):
    """transformers joins weight_map names onto the folder: an absolute or '..' name would load
    weights from anywhere the worker can read, another team's upload included."""
    import json

    from workers.engine.errors import LoadError, FormatError
    from workers.engine.formats import detect_format
    from workers.engine.loaders import load_model

    from .models import tiny_bert

    folder = tiny_bert(tmp_path / "bert")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {"bert.embeddings.word_embeddings.weight": target}})
    )
    with pytest.raises(FormatError, match="weight files must sit beside it"):
        detect_format(folder)
    with pytest.raises(LoadError, match="weight files must sit beside it"):
        load_model(folder, "hf")


def test_pickle_reader_follows_the_memo_as_the_unpickler_does():
    """BINPUTs at high indexes before MEMOIZEs: the unpickler memoizes at len(memo), so the
    reader must too, or it sees 'torch.Size' where the unpickler imports os.getcwd."""
    from workers.engine.formats import pickle_globals

    def s(x):
        b = x.encode()
        return b"\x8c" + bytes([len(b)]) + b

    data = b"\x80\x04" + s("a") + b"q" + bytes([100]) + s("b") + b"q" + bytes([101])
    for word in ("torch", "Size", "os", "getcwd", "torch", "Size"):
        data += s(word) + b"\x94"
    data += b"h" + bytes([4]) + b"h" + bytes([5]) + b"\x93" + b")R."
    assert pickle_globals(data) == [("os", "getcwd")]


def _safetensors_file(path, dtype: str, shape: list, nbytes: int):
    import json
    import struct

    raw = json.dumps({"w": {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}}).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(nbytes))
    return path


def _library_accepts(path) -> bool:
    import safetensors

    try:
        with safetensors.safe_open(str(path), "numpy"):
            return True
    except Exception:
        return False


def test_safetensors_dtypes_are_exactly_the_installed_librarys(tmp_path):
    """The library names its dtypes when it refuses an unknown one; ours must be the same list,
    so an upload is refused exactly when the loader would refuse it."""
    import re

    import safetensors

    from workers.engine.formats import SAFETENSORS_DTYPE_BITS

    path = _safetensors_file(tmp_path / "evil.safetensors", "EVIL", [1], 1)
    with pytest.raises(Exception) as err:
        safetensors.safe_open(str(path), "numpy")
    listed = re.findall(r"`([A-Z0-9_]+)`", str(err.value).split("expected one of", 1)[1])
    assert sorted(listed) == sorted(SAFETENSORS_DTYPE_BITS)
    with pytest.raises(FormatError, match="dtype 'EVIL', which is not a safetensors dtype"):
        detect_format(path)


@pytest.mark.parametrize("shape,nbytes", [([1], 1), ([2], 1), ([2], 2), ([4], 3), ([8], 8), ([3, 0], 0)])
def test_safetensors_sizes_agree_with_the_library_for_every_dtype(tmp_path, shape, nbytes):
    """Sub-byte dtypes (F4, F6_*) included: a file is accepted here exactly when safetensors
    itself would open it."""
    from workers.engine.formats import SAFETENSORS_DTYPE_BITS

    for dtype in SAFETENSORS_DTYPE_BITS:
        path = _safetensors_file(tmp_path / f"{dtype}.safetensors", dtype, shape, nbytes)
        try:
            detect_format(path)
            ours = True
        except FormatError:
            ours = False
        assert ours == _library_accepts(path), (dtype, shape, nbytes)


def test_safetensors_shape_of_huge_dimensions_is_refused_quickly(tmp_path):
    path = _safetensors_file(tmp_path / "huge.safetensors", "F32", [10**18] * 100_000, 8)
    with pytest.raises(FormatError, match="more bytes than any file holds"):
        detect_format(path)


def _torch_save_zip(tmp_path, extra: dict[str, bytes], dirs=()):
    """A real torch.save state dict, rewritten with ``extra`` members (and folder entries)."""
    import io
    import zipfile

    import torch

    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2), "b": torch.zeros(3)}, buffer)
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(path, "w") as out:
        for name in dirs:
            out.writestr(zipfile.ZipInfo(name), b"")
        for info in src.infolist():
            out.writestr(info, src.read(info))
        for name, data in extra.items():
            out.writestr(name, data)
    return path


def test_torch_save_archive_members_are_what_torch_writes(tmp_path):
    import zipfile

    path = _torch_save_zip(tmp_path, {}, dirs=["archive/", "archive/data/"])
    names = zipfile.ZipFile(path).namelist()
    assert {"archive/data.pkl", "archive/data/0", "archive/data/1", "archive/.data/serialization_id"} <= set(names)
    assert detect_format(path).format == "state-dict"


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"archive/extra/data.pkl": b"\x80\x02}q\x00."}, "'archive/extra/data.pkl', which torch.save never writes"),
        ({"archive/data/payload.bin": b"x"}, "'archive/data/payload.bin', which torch.save never writes"),
        ({"archive/notes.txt": b"x"}, "'archive/notes.txt', which torch.save never writes"),
        ({"second/data.pkl": b"\x80\x02}q\x00."}, "2 top-level entries; a torch.save archive has exactly one folder"),
    ],
    ids=["nested-data-pkl", "non-numeric-storage", "stray-file", "second-top-folder"],
)
def test_torch_save_archive_with_members_torch_never_writes_is_refused(tmp_path, extra, message):
    with pytest.raises(FormatError, match=message):
        detect_format(_torch_save_zip(tmp_path, extra))
