"""ONNX graphs as real exporters write them: weights in Constant nodes, ops the FLOP counter has
no formula for, dynamic dimensions. None of them may cost the user the latency and energy
figures; what the engine could not count or had to assume is said in the warnings."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.engine import models as m
from workers.engine import flops
from workers.engine.counting import onnx_params
from workers.engine.profile import profile_model

OPSET = [helper.make_opsetid("", 17)]


def _const(name, array):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array), name + "_v"))


def _save(tmp_path, graph, name="m.onnx", opsets=OPSET):
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _constant_mlp(tmp_path):
    """x[N, 8] -> MatMul(W 8x4) -> Add(b 4) -> Mul(by a scalar 6) -> y, every tensor a Constant node."""
    rng = np.random.default_rng(0)
    nodes = [
        _const("W", rng.standard_normal((8, 4)).astype(np.float32)),
        _const("b", rng.standard_normal(4).astype(np.float32)),
        _const("six", np.array([6.0], dtype=np.float32)),  # a hyperparameter, not a weight
        _const("shape", np.array([-1, 4], dtype=np.int64)),  # a shape constant, not a weight
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["h2"]),
        helper.make_node("Mul", ["h2", "six"], ["h3"]),
        helper.make_node("Reshape", ["h3", "shape"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "const-mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    return _save(tmp_path, graph, "const.onnx")


def test_weights_in_constant_nodes_are_parameters(tmp_path):
    path = _constant_mlp(tmp_path)
    assert onnx_params(path) == (8 * 4 + 4, 8 * 4 + 4)
    report = flops.count_onnx(path, {"x": [3, 8]})
    assert report.flops == 2 * 3 * 8 * 4 and report.uncounted_ops == []
    assert report.layer_profile[0]["params"] == 8 * 4  # the MatMul's weight, from its Constant

    doc = profile_model(path, batch_sizes=(2,), options=m.FAST_OPTIONS)
    (base,) = doc["variants"]
    assert base["status"] == "succeeded" and base["params"] == 36 and base["flops"] == 2 * 8 * 4
    assert base["measurements"][0]["input_shape"] == {"x": [2, 8]}


def test_an_op_without_a_formula_is_named_and_the_variant_still_measured(tmp_path):
    """Einsum does real work the counter has no formula for: the MatMul is counted, the Einsum
    is named in a warning, and latency and energy are measured all the same."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "w")
    v = numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "v")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Einsum", ["h", "v"], ["y"], equation="bi,ij->bj")]
    graph = helper.make_graph(nodes, "einsum", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], initializer=[w, v])
    path = _save(tmp_path, graph, "einsum.onnx")
    doc = profile_model(path, options=m.FAST_OPTIONS)
    (base,) = doc["variants"]
    assert base["status"] == "succeeded" and base["measurements"][0]["latency_ms_p50"] > 0
    assert base["measurements"][0]["energy_j_per_inference"] > 0
    assert base["flops"] == 2 * 16 * 16  # the MatMul alone: a lower bound
    assert base["params"] == 2 * 16 * 16
    warning = next(w for w in doc["warnings"] if "Einsum" in w)
    assert "not counted" in warning and "share of it is unknown" in warning


def test_a_formula_that_breaks_on_a_node_leaves_that_node_uncounted(tmp_path, monkeypatch):
    """The PP-OCR IndexError: whatever a node's formula raises, the rest of the graph is counted."""
    path = _constant_mlp(tmp_path)
    real = flops._node_flops

    def breaks_on_matmul(node, shapes):
        if node.op_type == "MatMul":
            raise IndexError("list index out of range")
        return real(node, shapes)

    monkeypatch.setattr(flops, "_node_flops", breaks_on_matmul)
    report = flops.count_onnx(path, {"x": [1, 8]})
    assert report.flops == 0 and report.uncounted_ops == ["MatMul"]


def test_a_count_that_fails_outright_leaves_flops_unknown_not_the_variant_failed(tmp_path, monkeypatch):
    path = _constant_mlp(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("shape inference exploded")

    monkeypatch.setattr(flops, "count_onnx", broken)
    doc = profile_model(path, options=m.FAST_OPTIONS)
    (base,) = doc["variants"]
    assert base["status"] == "succeeded" and base["measurements"]
    assert base["flops"] is None and base["macs"] is None and base["params"] == 36
    assert any("FLOPs could not be counted (RuntimeError: shape inference exploded)" in w for w in doc["warnings"])


def test_a_rank_unknown_to_static_inference_is_read_from_onnxruntime(tmp_path):
    """A contrib op onnx's shape inference does not know (com.microsoft.Gelu) hides the shape of
    the MatMul after it; the counter reads it by running the graph once."""
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "w")
    nodes = [helper.make_node("Gelu", ["x"], ["g"], domain="com.microsoft"),
             helper.make_node("MatMul", ["g", "w"], ["y"])]
    graph = helper.make_graph(nodes, "contrib", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], initializer=[w])
    path = _save(tmp_path, graph, "contrib.onnx", OPSET + [helper.make_opsetid("com.microsoft", 1)])
    report = flops.count_onnx(path, {"x": [4, 8]})
    assert report.flops == 2 * 4 * 8 * 5
    assert report.uncounted_ops == ["com.microsoft.Gelu"]  # named: a custom-domain op may do work


def _dynamic_conv(tmp_path):
    """x[N, 3, H, W] -> Conv 3->4, 3x3, pad 1 -> GlobalAveragePool: every spatial size is dynamic."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "?", "?"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 1, 1])], initializer=[w])
    return _save(tmp_path, graph, "dyn.onnx")


def test_dynamic_image_dims_get_a_default_that_is_recorded_and_an_override_wins(tmp_path):
    path = _dynamic_conv(tmp_path)
    doc = profile_model(path, options=m.FAST_OPTIONS)
    (base,) = doc["variants"]
    assert base["status"] == "succeeded"
    assert base["measurements"][0]["input_shape"] == {"x": [1, 3, 224, 224]}
    assert base["flops"] == 2 * (4 * 224 * 224) * 3 * 9  # each output element: C_in x 3 x 3 multiply-adds
    warning = next(w for w in doc["warnings"] if "ONNX input 'x'" in w)
    assert "= 224 (image height)" in warning and "= 224 (image width)" in warning and "--input x=" in warning

    doc = profile_model(path, options=dict(m.FAST_OPTIONS, input_overrides={"shape": {"x": [3, 32, 48]}}))
    (base,) = doc["variants"]
    assert base["measurements"][0]["input_shape"] == {"x": [1, 3, 32, 48]}
    assert base["flops"] == 2 * (4 * 32 * 48) * 3 * 9
    assert not any("ONNX input 'x'" in w for w in doc["warnings"])


def test_an_override_for_an_input_the_model_lacks_fails_with_the_inputs_it_has(tmp_path):
    path = _dynamic_conv(tmp_path)
    doc = profile_model(path, options=dict(m.FAST_OPTIONS, input_overrides={"shape": {"pixel_values": [3, 8, 8]}}))
    (base,) = doc["variants"]
    assert base["status"] == "failed" and not base["measurements"]
    assert "'pixel_values'" in base["error"] and "no such input" in base["error"] and "inputs are x" in base["error"]


def test_paddle_style_constants_batch_norm_scales_count_resize_scales_do_not(tmp_path):
    """Paddle names batch-norm gamma ``*_bn_scale`` (a parameter, not a quantisation scale);
    Resize's scales and a one-element literal are settings, not parameters."""
    rng = np.random.default_rng(4)
    nodes = [
        _const("conv_w", rng.standard_normal((4, 3, 1, 1)).astype(np.float32)),
        helper.make_node("Conv", ["x", "conv_w"], ["c"]),
    ]
    for part in ("scale", "offset", "mean", "variance"):
        nodes.append(_const(f"bn_{part}", rng.random(4).astype(np.float32) + 0.5))
    nodes += [
        helper.make_node("BatchNormalization", ["c", "bn_scale", "bn_offset", "bn_mean", "bn_variance"], ["b"]),
        _const("six", np.array(6.0, dtype=np.float32)),
        helper.make_node("Div", ["b", "six"], ["d"]),
        _const("roi", np.zeros(0, dtype=np.float32)),
        _const("scales", np.array([1.0, 1.0, 2.0, 2.0], dtype=np.float32)),
        helper.make_node("Resize", ["d", "roi", "scales"], ["y"], mode="nearest"),
    ]
    graph = helper.make_graph(nodes, "paddle-ish", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])])
    path = _save(tmp_path, graph, "paddle.onnx")
    params, _ = onnx_params(path)
    assert params == 4 * 3 + 4 * 4  # the conv's weight and the four batch-norm vectors


def test_a_graph_that_cannot_run_at_the_assumed_shape_fails_saying_what_to_set(tmp_path):
    """x[N, 3, ?, ?] flattened to exactly 3 x 8 x 8: the 224 x 224 default cannot run. The variant
    fails before measuring, naming the assumption and the --input that fixes it; given the
    shape, it runs."""
    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(rng.standard_normal((192, 2)).astype(np.float32), "w")
    nodes = [_const("flat", np.array([0, 192], dtype=np.int64)),
             helper.make_node("Reshape", ["x", "flat"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["y"])]
    graph = helper.make_graph(nodes, "fixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "?", "?"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], initializer=[w])
    path = _save(tmp_path, graph, "fixed.onnx")
    doc = profile_model(path, options=m.FAST_OPTIONS)
    (base,) = doc["variants"]
    assert base["status"] == "failed" and not base["measurements"]
    assert "does not run at the per-sample shapes the engine assumed" in base["error"]
    assert "x: [3, 224, 224]" in base["error"] and "--input x=" in base["error"]

    doc = profile_model(path, options=dict(m.FAST_OPTIONS, input_overrides={"shape": {"x": [3, 8, 8]}}))
    (base,) = doc["variants"]
    assert base["status"] == "succeeded" and base["flops"] == 2 * 192 * 2


def test_a_fixed_batch_dimension_refuses_a_larger_batch_instead_of_dividing_one_sample(tmp_path):
    w = numpy_helper.from_array(np.ones((8, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "fixed-batch",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=[w])
    path = _save(tmp_path, graph, "fixed_batch.onnx")
    doc = profile_model(path, batch_sizes=(1, 4), options=m.FAST_OPTIONS)
    (base,) = doc["variants"]
    assert [x["input_shape"] for x in base["measurements"]] == [{"x": [1, 8]}]  # batch 1 measured
    assert base["status"] == "failed"
    assert "fixed first dimension of 1" in base["error"] and "batch size 4 cannot be fed" in base["error"]
