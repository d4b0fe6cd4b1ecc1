"""Precision: the dtype a checkpoint is stored in does not decide the baseline's. The baseline
computes in float32, half precision is what the fp16 / bf16 recipes measure, and every recipe
works from an fp16- or bf16-stored checkpoint."""

import dataclasses

import pytest
import torch

from tests.engine import models as m
from workers.engine.errors import LoadError
from workers.engine.evaluation import Evaluator, generated_eval_data
from workers.engine.loaders import load_model
from workers.engine.profile import profile_model
from workers.engine.recipes import RECIPES, RecipeContext

BERT = dict(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64, num_labels=3, initializer_range=0.2)
PRECISION_RECIPES = ["baseline", "fp16", "bf16", "int8-dynamic"]


@pytest.fixture(scope="module")
def bert_fp16(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("fp16") / "bert"
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(**BERT)).eval().half().save_pretrained(folder, safe_serialization=True)
    return folder


def _bf16_reason():
    return RECIPES["bf16"].check(None, "cpu", {})


def _check_variants(doc, stored):
    by_recipe = {v["recipe"]: v for v in doc["variants"]}
    for name, v in by_recipe.items():
        if name == "bf16" and _bf16_reason():  # a CPU without native bf16: skipped, and says why
            assert v["status"] == "skipped" and v["error"] == _bf16_reason()
            continue
        assert v["status"] == "succeeded", (name, v["error"])
        assert v["stored_dtype"] == stored and v["baseline_dtype"] == "float32"
        assert v["measurements"] and v["evaluation"]["fidelity_value"] is not None
    assert by_recipe["baseline"]["dtype"] == "float32" and by_recipe["int8-dynamic"]["dtype"] == "float32"
    assert by_recipe["fp16"]["dtype"] == "float16"
    if not _bf16_reason():
        assert by_recipe["bf16"]["dtype"] == "bfloat16"
    assert any(f"stored in {stored}; the baseline runs in float32 on cpu" in w for w in doc["warnings"])
    return by_recipe


def test_fp16_checkpoint_baseline_runs_in_float32_and_every_recipe_works(bert_fp16):
    loaded = load_model(bert_fp16)
    assert {p.dtype for p in loaded.module.parameters()} == {torch.float32}
    assert loaded.stored_dtype == "float16" and loaded.compute_dtype() == "float32" and loaded.input_dtype is None
    doc = profile_model(bert_fp16, recipes=PRECISION_RECIPES, options=m.FAST_OPTIONS)
    by_recipe = _check_variants(doc, "float16")
    assert by_recipe["int8-dynamic"]["evaluation"]["fidelity"]["top1_agreement"] >= 0.9
    assert by_recipe["fp16"]["evaluation"]["fidelity"]["top1_agreement"] >= 0.9


@pytest.mark.parametrize("fmt,stored", [("safetensors", torch.bfloat16), ("state-dict", torch.float16)])
def test_half_stored_weights_of_a_registered_architecture(tmp_path, fmt, stored):
    from safetensors.torch import save_file

    module = m.build("mlp", m.MLP_CONFIG)
    state = {k: v.to(stored) for k, v in module.state_dict().items()}
    if fmt == "safetensors":
        path = tmp_path / "mlp.safetensors"
        save_file(state, str(path), metadata={"architecture": "mlp", "architecture_config": __import__("json").dumps(m.MLP_CONFIG)})
        options = dict(m.FAST_OPTIONS)
    else:
        path = tmp_path / "mlp.pt"
        torch.save(state, path)
        options = dict(m.FAST_OPTIONS, architecture="mlp", architecture_config=m.MLP_CONFIG)
    name = str(stored).removeprefix("torch.")
    doc = profile_model(path, recipes=PRECISION_RECIPES, options=options)
    _check_variants(doc, name)


def test_bf16_recipe_from_an_fp16_checkpoint(bert_fp16):
    """Applied directly (whatever this CPU's native bf16 support), it runs and stays faithful."""
    loaded = load_model(bert_fp16)
    variant = RECIPES["bf16"].run(loaded, {}, RecipeContext())
    assert variant.compute_dtype() == "bfloat16"
    ev = Evaluator(loaded, generated_eval_data(loaded)).evaluate(variant)
    assert ev["fidelity"]["top1_agreement"] >= 0.9


def test_a_baseline_kept_as_stored_still_takes_every_recipe(bert_fp16):
    """baseline_dtype "stored" keeps fp16 (e.g. a large model on a GPU); int8 then widens its copy
    to float32 first instead of failing with "expected scalar type Float but found Half"."""
    loaded = load_model(bert_fp16, options={"baseline_dtype": "stored"})
    assert loaded.compute_dtype() == "float16" and loaded.input_dtype == "float16"
    assert not any("the baseline runs in float32" in w for w in loaded.warnings)
    data = generated_eval_data(loaded)
    evaluator = Evaluator(loaded, data)
    for name, params in (("int8-dynamic", dict(RECIPES["int8-dynamic"].defaults)), ("fp16", {}), ("bf16", {}),
                         ("prune-unstructured", {"sparsity": 0.3})):
        variant = RECIPES[name].run(loaded, params, RecipeContext())
        values = variant.make_inputs(2, 16).values
        with torch.no_grad():
            assert variant.forward(values).logits.shape == (2, 3)
        assert evaluator.evaluate(variant)["fidelity"]["top1_agreement"] >= 0.8, name
    assert RECIPES["int8-dynamic"].run(loaded, {"backend": "auto", "compile": "auto"}, RecipeContext()).compute_dtype() \
        == "float32"


def test_torchscript_stored_in_fp16_runs_its_baseline_in_float32(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_ALLOW_UNSAFE_FORMATS", "1")
    module = m.build("mlp", m.MLP_CONFIG).half()
    traced = torch.jit.trace(module, torch.randn(2, 16).half())
    path = tmp_path / "mlp.ts"
    traced.save(str(path))
    doc = profile_model(path, recipes=["baseline", "int8-dynamic"],
                        options=dict(m.FAST_OPTIONS, input_overrides={"shape": {"input": [16]}}))
    base, int8 = doc["variants"]
    assert base["status"] == "succeeded", base["error"]
    assert (base["stored_dtype"], base["baseline_dtype"], base["dtype"]) == ("float16", "float32", "float32")
    assert base["evaluation"]["fidelity_value"] == 1.0
    assert int8["status"] == "skipped"  # recipes rewrite nn.Modules, not TorchScript programs
    assert load_model(path, options={"baseline_dtype": "stored"}).input_dtype == "float16"


def test_unknown_baseline_dtype_is_refused(bert_fp16):
    with pytest.raises(LoadError, match="unknown baseline_dtype 'int4'; one of float32, stored"):
        load_model(bert_fp16, options={"baseline_dtype": "int4"})


def test_onnx_graphs_run_as_stored_and_say_so(mlp_onnx):
    loaded = load_model(mlp_onnx)
    assert (loaded.stored_dtype, loaded.compute_dtype()) == ("float32", "float32") and not loaded.warnings
    half = RECIPES["ort-fp16"].run(loaded, dict(RECIPES["ort-fp16"].defaults), RecipeContext())
    try:
        assert half.compute_dtype() == "float16"  # the variant's own graph, not the upload's
        reloaded = load_model(half.model_path)
        assert reloaded.stored_dtype == "float16" and reloaded.compute_dtype() == "float16"
        assert any("stored in float16 and runs as stored" in w for w in reloaded.warnings)
    finally:
        half.close()


def test_torch_export_program_stored_in_fp16_runs_its_baseline_in_float32(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_ALLOW_UNSAFE_FORMATS", "1")
    module = m.build("mlp", m.MLP_CONFIG).half()
    program = torch.export.export(module, (torch.randn(2, 16).half(),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path / "mlp.pt2"
    torch.export.save(program, str(path))
    loaded = load_model(path)
    assert loaded.input_spec["inputs"][0]["dtype"] == "float32"  # its example input was half
    doc = profile_model(path, recipes=["baseline"], batch_sizes=(1, 4), options=m.FAST_OPTIONS)
    (base,) = doc["variants"]
    assert base["status"] == "succeeded", base["error"]
    assert (base["stored_dtype"], base["baseline_dtype"], base["dtype"]) == ("float16", "float32", "float32")
