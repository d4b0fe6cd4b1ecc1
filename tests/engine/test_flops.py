"""FLOPs: torch and ONNX agree; attention is counted; the breakdown adds up."""

import warnings

import pytest

from tests.engine import models as m
from workers.engine.flops import count_onnx, count_torch
from workers.engine.loaders import load_model


def _torch_count(path, batch=1, seq_len=None):
    loaded = load_model(path)
    sample = loaded.make_inputs(batch, seq_len)
    return count_torch(loaded.module, sample.values, call=loaded.call), sample


def test_mlp_flops_are_the_textbook_count(mlp_safetensors):
    report, _ = _torch_count(mlp_safetensors, batch=3)
    # 16->32->16->4: one multiply-add per weight per sample, 2 FLOPs each
    expected_macs = 3 * (16 * 32 + 32 * 16 + 16 * 4)
    assert report.macs == expected_macs
    assert report.flops == 2 * expected_macs
    assert [e["name"] for e in report.layer_profile] == ["0", "2", "4"]
    assert report.layer_profile[0]["params"] == 16 * 32 + 32
    assert sum(e["share"] for e in report.layer_profile) == pytest.approx(1.0)


@pytest.mark.parametrize("name, config", [("mlp", m.MLP_CONFIG), ("small-cnn", m.CNN_CONFIG)])
def test_onnx_count_matches_torch_within_one_percent(tmp_path, name, config):
    st = m.save_safetensors(tmp_path / "w.safetensors", name, config)
    onnx_path = m.export_onnx(tmp_path / "w.onnx", name, config)
    torch_report, sample = _torch_count(st, batch=2)
    onnx_report = count_onnx(onnx_path, sample.input_shape)
    assert torch_report.flops > 0
    assert onnx_report.flops == pytest.approx(torch_report.flops, rel=0.01)
    assert onnx_report.macs == onnx_report.flops // 2


def test_cnn_breakdown_puts_convolutions_first(cnn_safetensors):
    report, _ = _torch_count(cnn_safetensors)
    assert report.layer_profile[0]["type"] == "Conv2d"
    # conv2: 16x16 input pooled to 8x8, 8->16 channels, 3x3 kernel
    conv2 = next(e for e in report.layer_profile if e["name"] == "4")
    assert conv2["macs"] == 8 * 8 * 16 * 8 * 9


def test_bert_attention_is_counted_and_onnx_agrees(tmp_path, bert_dir):
    import torch

    loaded = load_model(bert_dir)
    sample = loaded.make_inputs(1, 16)
    report = count_torch(loaded.module, sample.values)
    linear = sum(e["flops"] for e in report.layer_profile if e["type"] == "Linear")
    attention = report.flops - linear
    # QK^T and AV: 2 layers x 2 matmuls x seq^2 x hidden multiply-adds
    assert attention == 2 * 2 * 2 * 16 * 16 * 32
    assert sum(e["flops"] for e in report.layer_profile) == report.flops
    path = tmp_path / "bert.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            loaded.module, (sample.values["input_ids"], sample.values["attention_mask"]), str(path),
            dynamo=False, input_names=["input_ids", "attention_mask"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}},
        )
    onnx_report = count_onnx(path, sample.input_shape)
    assert onnx_report.flops == pytest.approx(report.flops, rel=0.01)


def test_gpt2_flops_scale_with_sequence(gpt2_dir):
    short, _ = _torch_count(gpt2_dir, seq_len=8)
    long, _ = _torch_count(gpt2_dir, seq_len=16)
    assert long.flops > 2 * short.flops * 0.99  # linear part doubles, attention quadruples


def test_onnx_ops_the_counter_cannot_see_are_reported_not_read_as_zero(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from workers.engine.flops import count_onnx

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 8], [0.0] * 64)
    fused = helper.make_node("FusedMatMul", ["x", "w"], ["y"], domain="com.microsoft")
    graph = helper.make_graph([fused], "g", [x], [y], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    path = tmp_path / "fused.onnx"
    onnx.save(model, path)
    report = count_onnx(path, {"x": [1, 8]})
    assert report.flops == 0 and report.uncounted_ops == ["com.microsoft.FusedMatMul"]
