"""Loading: every safe format loads and runs; the unsafe ones are refused unless turned on."""

import warnings

import pytest

from tests.engine import models as m
from workers.engine.errors import FormatError, LoadError
from workers.engine.loaders import load_model


def _run(loaded, batch=2, seq_len=None):
    import torch

    sample = loaded.make_inputs(batch, seq_len)
    with torch.inference_mode():
        return sample, loaded.forward(sample.values)


def test_hf_bert_folder(bert_dir):
    loaded = load_model(bert_dir)
    assert (loaded.format, loaded.architecture, loaded.task) == ("hf", "BertForSequenceClassification",
                                                                 "text-classification")
    sample, out = _run(loaded, batch=2, seq_len=16)
    assert sample.input_shape == {"input_ids": [2, 16], "attention_mask": [2, 16]}
    assert out.logits.shape == (2, 3)
    assert loaded.size_bytes == (bert_dir / "model.safetensors").stat().st_size


def test_hf_zip_is_extracted_privately_and_cleaned(bert_zip):
    loaded = load_model(bert_zip)
    workdir = loaded.workdir
    assert workdir is not None and workdir.exists()
    _run(loaded)
    loaded.close()
    assert not workdir.exists()


def test_hf_gpt2_and_vit(gpt2_dir, vit_zip):
    gpt2 = load_model(gpt2_dir)
    assert (gpt2.architecture, gpt2.task) == ("GPT2LMHeadModel", "text-generation")
    sample, out = _run(gpt2, batch=1)
    assert sample.input_shape["input_ids"] == [1, 48]  # min(128, n_positions)
    assert out.logits.shape == (1, 48, 500)
    vit = load_model(vit_zip)
    assert vit.task == "image-classification"
    sample, out = _run(vit, batch=3)
    assert sample.input_shape == {"pixel_values": [3, 3, 32, 32]}
    assert out.logits.shape == (3, 4)
    vit.close()


def test_hf_remote_code_is_not_run(tmp_path, bert_dir):
    import json
    import shutil

    folder = tmp_path / "remote"
    shutil.copytree(bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update({"model_type": "evil-model", "auto_map": {"AutoConfig": "evil.EvilConfig"},
                   "architectures": ["EvilModel"]})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(LoadError, match="trust_remote_code is off"):
        load_model(folder)


def test_unknown_architecture_class_falls_back_to_automodel(tmp_path, bert_dir):
    import json
    import shutil

    folder = tmp_path / "renamed"
    shutil.copytree(bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["os.system"]
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load_model(folder)
    assert loaded.architecture == "BertModel"


def test_safetensors_with_registered_architecture(mlp_safetensors, cnn_safetensors):
    loaded = load_model(mlp_safetensors)
    assert (loaded.format, loaded.architecture, loaded.task) == ("safetensors", "mlp", "classification")
    sample, out = _run(loaded, batch=5)
    assert sample.input_shape == {"input": [5, 16]}
    assert out.shape == (5, 4)
    cnn = load_model(cnn_safetensors)
    sample, out = _run(cnn, batch=2)
    assert sample.input_shape == {"input": [2, 3, 16, 16]}


def test_safetensors_without_metadata_needs_architecture(tmp_path):
    path = m.save_safetensors(tmp_path / "w.safetensors", "mlp", m.MLP_CONFIG, with_metadata=False)
    with pytest.raises(LoadError, match="without an architecture"):
        load_model(path)
    loaded = load_model(path, options={"architecture": "mlp", "architecture_config": m.MLP_CONFIG})
    assert loaded.architecture == "mlp"


def test_weights_that_do_not_fit_are_a_load_error(mlp_safetensors):
    with pytest.raises(LoadError, match="do not fit architecture 'mlp'"):
        load_model(mlp_safetensors, options={"architecture_config": {"hidden": [64]}})


def test_state_dict_loads_weights_only(mlp_state_dict):
    with pytest.raises(LoadError, match="architecture"):
        load_model(mlp_state_dict)
    loaded = load_model(mlp_state_dict, options={"architecture": "mlp", "architecture_config": m.MLP_CONFIG})
    assert loaded.format == "state-dict"
    params = sum(p.numel() for p in loaded.module.parameters())
    assert loaded.size_bytes == params * 4


def test_onnx_file(mlp_onnx):
    loaded = load_model(mlp_onnx)
    assert (loaded.format, loaded.kind) == ("onnx", "onnx")
    sample = loaded.make_inputs(4)
    assert sample.input_shape == {"input": [4, 16]}
    (logits,) = loaded.forward(sample.values)
    assert logits.shape == (4, 4)


def _export_with_external_data(folder):
    import onnx

    folder.mkdir()
    m.export_onnx(folder / "tmp.onnx", "mlp", m.MLP_CONFIG)
    model = onnx.load(str(folder / "tmp.onnx"))
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    (folder / "tmp.onnx").unlink()
    return folder


def test_onnx_with_external_data_in_zip(tmp_path):
    folder = _export_with_external_data(tmp_path / "ext")
    zipped = m.zip_folder(folder, tmp_path / "ext.zip")
    loaded = load_model(zipped)
    assert loaded.format == "onnx"
    assert loaded.size_bytes > (folder / "weights.bin").stat().st_size
    (logits,) = loaded.forward(loaded.make_inputs(2).values)
    assert logits.shape == (2, 4)
    loaded.close()


def test_onnx_external_data_escaping_the_folder_is_refused(tmp_path):
    import onnx

    folder = _export_with_external_data(tmp_path / "ext")
    (tmp_path / "secret.bin").write_bytes((folder / "weights.bin").read_bytes())
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.bin"
    onnx.save_model(model, str(folder / "model.onnx"))
    # refused as soon as the format is detected (the upload check), and by the loader behind it
    with pytest.raises((FormatError, LoadError), match="outside the upload"):
        load_model(folder / "model.onnx")


def test_unsafe_formats_off_by_default_and_on_when_allowed(tmp_path, monkeypatch):
    import torch

    module = m.build("mlp", m.MLP_CONFIG)
    example = torch.randn(2, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(module, example), tmp_path / "ts.pt")
        torch.export.save(torch.export.export(module, (example,)), tmp_path / "prog.pt2")
    monkeypatch.delenv("AUDIT_ALLOW_UNSAFE_FORMATS", raising=False)
    for name in ("ts.pt", "prog.pt2"):
        with pytest.raises(LoadError, match="off by default.*AUDIT_ALLOW_UNSAFE_FORMATS=1"):
            load_model(tmp_path / name)
    monkeypatch.setenv("AUDIT_ALLOW_UNSAFE_FORMATS", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = load_model(tmp_path / "ts.pt", options={"input_overrides": {"shape": {"x": [16]}}})
        sample, out = _run(ts, batch=2)
        assert out.shape == (2, 4)
        exported = load_model(tmp_path / "prog.pt2")
        sample, out = _run(exported, batch=2)  # shape from the program's example inputs
        assert sample.input_shape == {"arg0": [2, 16]}


def test_pickled_module_never_loads(tmp_path):
    path = m.save_pickled_module(tmp_path / "model.pt")
    with pytest.raises(FormatError, match="pickled nn.Module is refused"):
        load_model(path)


def test_cuda_request_without_cuda_is_clear(mlp_safetensors):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal path cannot be exercised")
    with pytest.raises(LoadError, match="CUDA is not available"):
        load_model(mlp_safetensors, device="cuda")


def test_onnx_external_data_inside_a_local_function_cannot_escape(tmp_path):
    from onnx import TensorProto, helper

    from workers.engine.errors import LoadError
    from workers.engine.loaders import check_onnx_external_data

    const = helper.make_tensor("c", TensorProto.FLOAT, [1], [0.0])
    const.data_location = TensorProto.EXTERNAL
    const.ClearField("float_data")
    entry = const.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    node = helper.make_node("Constant", [], ["c"], value=const)
    function = helper.make_function("local", "F", [], ["c"], [node], [helper.make_opsetid("", 17)])
    graph = helper.make_graph([helper.make_node("F", [], ["y"], domain="local")], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, functions=[function],
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    with pytest.raises(LoadError, match="outside"):
        check_onnx_external_data(model, tmp_path)
