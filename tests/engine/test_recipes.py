"""Compression recipes on small models with known answers."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.engine import models as m
from workers.engine.loaders import load_model
from workers.engine.counting import torch_params as _torch_params
from workers.engine.profile import RECIPES, profile_model
from workers.engine.recipes import RecipeContext, RecipeSpecError, parse_recipe_list, spec_string
from workers.engine.recipes.common import saved_size_torch
from workers.engine.recipes.torch_recipes import two_four_mask

LINEAR_HEAVY = {"in_features": 256, "hidden": [512, 512], "num_classes": 10, "activation": "relu"}


@pytest.fixture(scope="module")
def linear_heavy(tmp_path_factory):
    return m.save_safetensors(tmp_path_factory.mktemp("lh") / "mlp.safetensors", "mlp", LINEAR_HEAVY)


def _apply(name, loaded, params=None, data=None):
    rec = RECIPES[name]
    merged = dict(rec.defaults, **(params or {}))
    assert rec.not_applicable(loaded, "cpu", merged, has_dataset=data is not None) is None
    return rec.run(loaded, merged, RecipeContext(train_data=data))


def _linear_weights(module):
    from torch import nn

    return [x.weight for x in module.modules() if isinstance(x, nn.Linear)]


def test_recipe_names_are_listed_without_torch():
    code = ("import sys; from workers.engine.profile import RECIPES; "
            "from workers.engine.recipes import parse_recipe_list; "
            "assert 'torch' not in sys.modules and 'onnx' not in sys.modules; print(','.join(RECIPES))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    names = set(out.strip().split(","))
    assert {"baseline", "fp16", "bf16", "int8-dynamic", "int8-weight-only", "int8-static", "prune-unstructured",
            "prune-structured", "sparse-2:4", "distill", "compile", "ort-int8-dynamic", "ort-int8-static",
            "ort-fp16"} <= names


def test_parse_recipe_list():
    assert parse_recipe_list("baseline, int8-dynamic,prune-unstructured:0.5, sparse-2:4, distill:200") == [
        ("baseline", {}), ("int8-dynamic", {}), ("prune-unstructured", {"sparsity": 0.5}), ("sparse-2:4", {}),
        ("distill", {"steps": 200})]
    assert parse_recipe_list(["prune-structured:0.3;finetune_steps=20"]) == [
        ("prune-structured", {"ratio": 0.3, "finetune_steps": 20})]
    for bad, message in [("prune-unstructured:1.5", "sparsity must be in"), ("int8-magic", "unknown recipe"),
                         ("fp16:3", "takes no parameters"), ("distill:x", "steps must be a number"),
                         ("distill:10;depth=2", "no parameter 'depth'")]:
        with pytest.raises(RecipeSpecError, match=message):
            parse_recipe_list(bad)
    assert spec_string("prune-unstructured", {"sparsity": 0.5}) == "prune-unstructured:0.5"


def test_int8_weights_are_about_four_times_smaller(linear_heavy):
    loaded = load_model(linear_heavy)
    fp32 = saved_size_torch(loaded.module)
    for name in ("int8-dynamic", "int8-weight-only"):
        variant = _apply(name, loaded)
        ratio = fp32 / variant.size_bytes
        assert 3.3 < ratio < 4.1, (name, ratio)
        params, nonzero = _torch_params(variant.module)
        assert params == _torch_params(loaded.module)[0]  # quantised weights still count as parameters
        assert variant.notes and ("torch.ao" in variant.notes[0] or "torchao" in variant.notes[0])
        import torch

        x = torch.randn(4, 256)
        with torch.no_grad():
            ref, out = loaded.module(x), variant.module(x)
        assert torch.nn.functional.cosine_similarity(ref, out).min() > 0.99


def test_unstructured_pruning_halves_nonzero_weights_of_pruned_layers(linear_heavy):
    loaded = load_model(linear_heavy)
    variant = _apply("prune-unstructured", loaded, {"sparsity": 0.5})
    before = sum(w.numel() for w in _linear_weights(loaded.module))
    after = sum(int((w != 0).sum()) for w in _linear_weights(variant.module))
    assert after == pytest.approx(before / 2, abs=1)
    assert not any(hasattr(x, "weight_mask") for x in variant.module.modules())  # made permanent
    assert "saves nothing on dense kernels" in variant.notes[0]
    assert all(int((w != 0).sum()) == w.numel() for w in _linear_weights(loaded.module))  # original untouched


@pytest.mark.parametrize("fixture", ["mlp_safetensors", "cnn_safetensors"])
def test_structured_pruning_removes_params_and_flops(request, fixture):
    from workers.engine import flops

    loaded = load_model(request.getfixturevalue(fixture))
    variant = _apply("prune-structured", loaded, {"ratio": 0.5})
    sample = loaded.make_inputs(1).values
    before = flops.count_torch(loaded.module, sample, call="positional")
    after = flops.count_torch(variant.module, sample, call="positional")
    assert _torch_params(variant.module)[0] < 0.75 * _torch_params(loaded.module)[0]
    assert after.flops < 0.75 * before.flops
    out = variant.module(*variant.make_inputs(2).values.values())
    assert tuple(out.shape) == (2, loaded.config["num_classes"])  # the output layer keeps its width


def test_structured_pruning_of_a_transformer_keeps_it_running(bert_dir):
    loaded = load_model(bert_dir)
    variant = _apply("prune-structured", loaded, {"ratio": 0.5})
    assert _torch_params(variant.module)[0] < _torch_params(loaded.module)[0]
    values = variant.make_inputs(2, 8).values
    assert variant.module(**values).logits.shape == (2, 3)


def test_two_four_mask_and_sparse_recipe_skipped_on_cpu(mlp_safetensors):
    import torch

    w = torch.tensor([[1.0, -4.0, 3.0, 0.5, 0.1, 0.2, -0.3, 0.4]])
    mask = two_four_mask(w)
    assert mask.tolist() == [[False, True, True, False, False, False, True, True]]
    big = two_four_mask(torch.randn(64, 128))
    assert (big.reshape(64, 32, 4).sum(-1) == 2).all()
    loaded = load_model(mlp_safetensors)
    reason = RECIPES["sparse-2:4"].not_applicable(loaded, "cpu")
    assert "runs on cuda, not cpu" in reason
    doc = profile_model(mlp_safetensors, recipes=["baseline", "sparse-2:4"], options=m.FAST_OPTIONS)
    assert doc["variants"][1]["status"] == "skipped" and "cuda" in doc["variants"][1]["error"]


def test_half_precision_variants_run_with_cast_inputs(mlp_safetensors):
    import torch

    loaded = load_model(mlp_safetensors)
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        if RECIPES[name].not_applicable(loaded, "cpu") is not None:
            continue  # bf16 on a CPU without native support is skipped with that reason
        variant = _apply(name, loaded)
        values = variant.make_inputs(2).values
        assert values["input"].dtype == dtype
        assert variant.forward(values).dtype == dtype
        assert variant.size_bytes < saved_size_torch(loaded.module)


def test_compile_and_onnx_recipes_in_one_run(mlp_onnx, tmp_path):
    np.savez(tmp_path / "calib.npz", inputs=np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32))
    doc = profile_model(mlp_onnx, recipes=["baseline", "ort-int8-dynamic", "ort-fp16", "ort-int8-static", "fp16"],
                        options=m.FAST_OPTIONS)
    base, dyn, half, static, torch_only = doc["variants"]
    assert dyn["status"] == half["status"] == "succeeded"
    assert static["status"] == "skipped" and "needs the audit's dataset" in static["error"]
    assert torch_only["status"] == "skipped" and "not onnx" in torch_only["error"]
    assert dyn["flops"] == base["flops"] and dyn["params"] == base["params"]
    assert half["size_bytes"] < 0.75 * base["size_bytes"]
    doc = profile_model(mlp_onnx, recipes=["baseline", "ort-int8-static"], dataset=str(tmp_path / "calib.npz"),
                        options=m.FAST_OPTIONS)
    base, static = doc["variants"]
    assert static["status"] == "succeeded" and "calibrated on 8 samples" in static["notes"][0]
    assert static["params"] == base["params"]  # int8 weights and int32 biases still count
    assert static["evaluation"]["fidelity"]["top1_agreement"] >= 0.75


def test_compile_recipe(mlp_safetensors):
    doc = profile_model(mlp_safetensors, recipes=["compile:backend=eager"], options=m.FAST_OPTIONS)
    (v,) = doc["variants"]
    assert v["status"] == "succeeded" and v["recipe_params"]["backend"] == "eager" and v["measurements"]
    assert "not compression" in v["notes"][0]
    json.dumps(doc)


def test_distill_needs_a_dataset_and_builds_a_smaller_student(bert_dir):
    from workers.engine.evaluation import EvalData

    loaded = load_model(bert_dir)
    assert "needs the audit's dataset" in RECIPES["distill"].not_applicable(loaded, "cpu", has_dataset=False)
    ids = np.random.default_rng(0).integers(5, 500, size=(8, 8))
    data = EvalData("unlabeled", "x", {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    student = _apply("distill", loaded, {"steps": 2, "batch_size": 4}, data=data)
    assert student.module.config.num_hidden_layers == 1
    assert _torch_params(student.module)[0] < _torch_params(loaded.module)[0]
    assert "1 of 2 layers" in student.notes[0]
