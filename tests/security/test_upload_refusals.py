"""What a worker would refuse is refused at upload: ONNX external data outside the upload (in
the main graph, a subgraph or a function), duplicate or overlong zip member names, malformed
safetensors, TorchScript while unsafe formats are off, and a state dict whose pickle the
scanner and the loader would read from different members."""
import io
import json
import pickle
import struct
import warnings
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import ModelVersion

from ..conftest import stored_files
from ..models import mlp_safetensors_bytes

pytestmark = pytest.mark.django_db


def upload(client, content: bytes, filename: str, **extra):
    data = {"name": "m", "task": "classification", "file": SimpleUploadedFile(filename, content), **extra}
    return client.post(reverse("model-upload"), data)


def assert_refused(response, message: str, storage):
    page = response.content.decode()
    assert response.status_code == 400, page[-2000:]
    assert message in page, page[-3000:]
    assert ModelVersion.objects.count() == 0 and stored_files(storage) == []


# --- ONNX external data ---------------------------------------------------------------------


def external(name: str, location: str):
    from onnx import TensorProto, numpy_helper

    tensor = numpy_helper.from_array(np.ones((4, 4), np.float32), name)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def onnx_model(where: str, location: str) -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    functions = []
    if where == "graph":
        nodes = [helper.make_node("MatMul", ["x", "W"], ["y"])]
        initializers = [external("W", location)]
    elif where == "subgraph":
        then_out = helper.make_tensor_value_info("t", TensorProto.FLOAT, [4, 4])
        then_branch = helper.make_graph([helper.make_node("Constant", [], ["t"], value=external("T", location))],
                                        "then", [], [then_out])
        else_branch = helper.make_graph([helper.make_node("Constant", [], ["t"], value=external("E", "w.bin"))],
                                        "else", [], [then_out])
        cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
        nodes = [helper.make_node("Constant", [], ["c"], value=cond),
                 helper.make_node("If", ["c"], ["W"], then_branch=then_branch, else_branch=else_branch),
                 helper.make_node("MatMul", ["x", "W"], ["y"])]
        initializers = []
    else:  # a model-local function holding the tensor
        fn = helper.make_function("local", "AddConst", ["a"], ["b"],
                                  [helper.make_node("Constant", [], ["k"], value=external("K", location)),
                                   helper.make_node("Add", ["a", "k"], ["b"])],
                                  [helper.make_opsetid("", 17)])
        functions = [fn]
        nodes = [helper.make_node("AddConst", ["x"], ["y"], domain="local")]
        initializers = []
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=initializers)
    model = helper.make_model(graph, functions=functions,
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    return model.SerializeToString()


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as zf:
        warnings.simplefilter("ignore")  # duplicate names, on purpose
        for name, data in members.items() if isinstance(members, dict) else members:
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("where", ["graph", "subgraph", "function"])
@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "../other-team/model.bin"])
def test_onnx_external_data_escaping_the_zip(member_client, _storage, where, location):
    content = zipped({"model.onnx": onnx_model(where, location), "w.bin": bytes(64)})
    assert_refused(upload(member_client, content, "model.zip"), "outside the upload", _storage)


@pytest.mark.parametrize("where", ["graph", "subgraph", "function"])
def test_lone_onnx_file_with_external_data(member_client, _storage, where):
    """A single .onnx file cannot carry its data files: any reference points outside it (in
    the storage folder, that would be other uploads)."""
    response = upload(member_client, onnx_model(where, "w.bin"), "model.onnx")
    assert_refused(response, "not part of the upload", _storage)


def test_onnx_zip_whose_data_file_is_missing(member_client, _storage):
    content = zipped({"model.onnx": onnx_model("graph", "weights.bin")})
    assert_refused(upload(member_client, content, "model.zip"), "not part of the upload", _storage)


def test_onnx_zip_with_its_data_inside_is_accepted(member_client, _storage):
    content = zipped({"m/model.onnx": onnx_model("graph", "w.bin"), "m/w.bin": bytes(64)})
    response = upload(member_client, content, "model.zip")
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert ModelVersion.objects.get().format == "onnx"


# --- zip member names ------------------------------------------------------------------------


def test_duplicate_member_names(member_client, _storage):
    config = json.dumps({"model_type": "bert", "architectures": ["BertModel"]}).encode()
    content = zipped([("config.json", config), ("model.safetensors", mlp_safetensors_bytes()),
                      ("config.json", b'{"model_type": "evil"}')])
    assert_refused(upload(member_client, content, "model.zip"), "appears twice", _storage)


def test_overlong_member_name(member_client, _storage):
    content = zipped({"a" * 300 + ".safetensors": mlp_safetensors_bytes(), "config.json": b"{}"})
    assert_refused(upload(member_client, content, "model.zip"), "overlong member name", _storage)


# --- safetensors -----------------------------------------------------------------------------


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize("header,data,message", [
    ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}, bytes(16), "outside the 16-byte buffer"),
    ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, bytes(12), "needs 16 bytes"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12), "without holes or overlaps"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(8) + b"PK\x03\x04 hidden", "no tensor uses"),
    ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8), "invalid shape"),
    ({"__metadata__": {"architecture": ["mlp"]}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
     bytes(8), "__metadata__ must map strings to strings"),
    ({"w": {"dtype": "EVIL", "shape": [2], "data_offsets": [0, 8]}}, bytes(8),
     "which is not a safetensors dtype"),
    ({"w": {"dtype": "F4", "shape": [3], "data_offsets": [0, 1]}}, bytes(1), "not a whole number of bytes"),
], ids=["offsets-past-end", "size-mismatch", "overlap", "trailing-bytes", "negative-dim", "metadata", "unknown-dtype",
        "sub-byte-size"])
def test_malformed_safetensors(member_client, _storage, header, data, message):
    response = upload(member_client, safetensors_bytes(header, data), "model.safetensors", architecture="mlp")
    assert_refused(response, message, _storage)


@pytest.mark.parametrize("entry,data,message", [
    ({"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}, bytes(16), "outside the 16-byte buffer"),
    ({"dtype": "EVIL", "shape": [2], "data_offsets": [0, 8]}, bytes(8), "not a safetensors dtype"),
], ids=["offsets-past-end", "unknown-dtype"])
def test_malformed_safetensors_inside_a_hugging_face_zip(member_client, _storage, entry, data, message):
    config = json.dumps({"model_type": "bert", "architectures": ["BertModel"]}).encode()
    content = zipped({"config.json": config, "model.safetensors": safetensors_bytes({"w": entry}, data)})
    response = upload(member_client, content, "model.zip")
    assert_refused(response, "model.safetensors is a malformed safetensors file", _storage)
    assert message in response.content.decode()


# --- TorchScript and the pickle the loader reads ---------------------------------------------------


def torchscript_bytes() -> bytes:
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(torch.nn.Linear(4, 2), torch.randn(1, 4)), buffer)
    return buffer.getvalue()


def test_torchscript_refused_while_unsafe_formats_are_off(member_client, _storage, monkeypatch):
    monkeypatch.delenv("AUDIT_ALLOW_UNSAFE_FORMATS", raising=False)
    response = upload(member_client, torchscript_bytes(), "model.pt")
    assert_refused(response, "TorchScript models are off by default", _storage)


def test_torchscript_accepted_when_the_deployment_allows_it(member_client, _storage, monkeypatch):
    monkeypatch.setenv("AUDIT_ALLOW_UNSAFE_FORMATS", "1")
    response = upload(member_client, torchscript_bytes(), "model.pt")
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert ModelVersion.objects.get().format == "torchscript"


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_state_dict_with_a_second_data_pkl_is_refused(member_client, _storage):
    """The scanner would read one data.pkl and a loader that takes the other would unpickle
    code: a name twice is refused outright."""
    import torch

    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    top = zipfile.ZipFile(io.BytesIO(buffer.getvalue())).namelist()[0].split("/")[0]
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "a") as zf:
        warnings.simplefilter("ignore")
        zf.writestr(f"{top}/data.pkl", pickle.dumps(Evil(), protocol=2))
    response = upload(member_client, buffer.getvalue(), "model.pt", architecture="mlp")
    assert_refused(response, "appears twice", _storage)


# --- torch.save archives hold what torch writes, and zip members are plain files ----------------


def torch_save_zip(extra: dict[str, bytes] = {}, modes: dict[str, int] = {}) -> bytes:  # noqa: B006
    """A real torch.save state dict of the registered mlp, with ``extra`` members added and the
    Unix mode of some members set (``modes``: name below the top folder -> mode)."""
    import torch

    from workers.engine.registry import get_architecture

    buffer = io.BytesIO()
    torch.save(get_architecture("mlp").build({"in_features": 64, "hidden": [32], "num_classes": 10}).state_dict(),
               buffer)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            rel = info.filename.split("/", 1)[1]
            if rel in modes:
                info.external_attr = modes[rel] << 16
            dst.writestr(info, src.read(info))
        for name, data in extra.items():
            dst.writestr(name, data)
    return out.getvalue()


def zipped_with_mode(members: dict[str, bytes], special: str, mode: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (mode if name == special else 0o100644) << 16
            zf.writestr(info, data)
    return buffer.getvalue()


def hf_members() -> dict[str, bytes]:
    return {"m/config.json": json.dumps({"model_type": "bert", "architectures": ["BertModel"]}).encode(),
            "m/model.safetensors": mlp_safetensors_bytes()}


EVIL_PICKLE = pickle.dumps(Evil(), protocol=2)
ITEM_PAYLOADS = {
    "torch-zip-nested-data-pkl": (lambda: torch_save_zip({"archive/extra/data.pkl": EVIL_PICKLE}), "model.pt",
                                  "which torch.save never writes"),
    "torch-zip-second-folder": (lambda: torch_save_zip({"other/data.pkl": EVIL_PICKLE}), "model.pt",
                                "a torch.save archive has exactly one folder"),
    "torch-zip-fifo-storage": (lambda: torch_save_zip(modes={"data/0": 0o010644}), "model.pt",
                               "is a FIFO"),
    "hf-zip-char-device": (lambda: zipped_with_mode(hf_members(), "m/model.safetensors", 0o020666), "model.zip",
                           "is a character device"),
    "hf-zip-socket": (lambda: zipped_with_mode(hf_members(), "m/config.json", 0o140644), "model.zip",
                      "is a socket"),
    "onnx-zip-setuid-data": (lambda: zipped_with_mode({"m/model.onnx": onnx_model("graph", "w.bin"),
                                                       "m/w.bin": bytes(64)}, "m/w.bin", 0o104755),
                             "model.zip", "is marked setuid"),
    "onnx-zip-setgid-sticky-folder": (lambda: zipped_with_mode({"m/": b"", "m/model.onnx": onnx_model("graph", "w.bin"),
                                                                "m/w.bin": bytes(64)}, "m/", 0o043777),
                                      "model.zip", "is marked setgid/sticky"),
}


@pytest.mark.parametrize("payload", list(ITEM_PAYLOADS))
def test_archive_refused_through_the_form(member_client, _storage, payload):
    build, filename, message = ITEM_PAYLOADS[payload]
    assert_refused(upload(member_client, build(), filename, architecture="mlp"), message, _storage)


@pytest.mark.parametrize("payload", list(ITEM_PAYLOADS))
def test_archive_refused_through_the_api(member, _storage, payload):
    from ..api.conftest import token_client

    build, filename, message = ITEM_PAYLOADS[payload]
    response = token_client(member).post("/api/v1/models/", {
        "name": "m", "task": "classification", "file": SimpleUploadedFile(filename, build()),
        "input_spec": json.dumps({"architecture": "mlp"})})
    assert response.status_code == 400, response.content[:2000]
    assert message in response.content.decode(), response.content[:2000]
    assert ModelVersion.objects.count() == 0 and stored_files(_storage) == []


def test_the_same_state_dict_without_extras_is_accepted(member_client, _storage):
    response = upload(member_client, torch_save_zip(), "model.pt", architecture="mlp")
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert ModelVersion.objects.get().format == "state-dict"
