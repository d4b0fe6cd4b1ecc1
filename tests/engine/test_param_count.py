"""Parameters are counted once each, whatever a recipe did to a weight that the model shares
between two names (issue 22: GPT-2 int8-dynamic showed 163 M parameters against the baseline's
124 M, its LM head, tied to the token embedding, counted a second time once int8 packing gave it
its own copy)."""

import numpy as np
import pytest

from workers.engine.counting import count_params, tied_aliases, torch_params
from workers.engine.evaluation import EvalData
from workers.engine.loaders import load_model
from workers.engine.profile import RECIPES
from workers.engine.recipes import RecipeContext

# tests/engine/models.py's tiny GPT-2: vocab 500, n_embd 32, 2 layers, 48 positions, tied head
VOCAB, EMBD, LAYERS, POSITIONS = 500, 32, 2, 48


def _gpt2_params(layers: int = LAYERS) -> int:
    """GPT-2's parameters from its shapes, the LM head (tied to the token embedding) once."""
    block = (2 * 2 * EMBD  # two LayerNorms
             + EMBD * 3 * EMBD + 3 * EMBD  # c_attn
             + EMBD * EMBD + EMBD  # attention c_proj
             + EMBD * 4 * EMBD + 4 * EMBD  # c_fc
             + 4 * EMBD * EMBD + EMBD)  # mlp c_proj
    return VOCAB * EMBD + POSITIONS * EMBD + layers * block + 2 * EMBD


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    loaded = load_model(gpt2_dir)
    assert loaded.module.config.tie_word_embeddings
    assert loaded.module.lm_head.weight is loaded.module.transformer.wte.weight
    return loaded


def _lm_data():
    ids = np.random.default_rng(0).integers(5, VOCAB, size=(8, 8))
    return EvalData("unlabeled", "test", {"input_ids": ids, "attention_mask": np.ones_like(ids)})


# every recipe that applies to a Hugging Face torch model on CPU, with parameters that keep the test short
CPU_RECIPES = {
    "baseline": {}, "fp16": {}, "bf16": {}, "int8-dynamic": {}, "int8-weight-only": {},
    "prune-unstructured": {}, "prune-structured": {"finetune_steps": 0}, "distill": {"steps": 1, "batch_size": 4},
    "compile": {"backend": "eager"},
}


def test_the_baseline_counts_the_tied_head_once(gpt2):
    assert tied_aliases(gpt2.module) == {"lm_head.weight": "transformer.wte.weight"}
    assert count_params(gpt2)[0] == _gpt2_params()
    # what the naive sum would say: the head a second time
    assert sum(p.numel() for _, p in gpt2.module.named_parameters(remove_duplicate=False)) == _gpt2_params() + VOCAB * EMBD


@pytest.mark.parametrize("name", list(CPU_RECIPES))
def test_every_recipe_counts_the_tied_head_once(gpt2, name):
    rec = RECIPES[name]
    params = dict(rec.defaults, **CPU_RECIPES[name])
    data = _lm_data() if rec.needs_dataset else None
    reason = rec.not_applicable(gpt2, "cpu", params, has_dataset=data is not None)
    if reason:
        pytest.skip(f"{name} does not apply here: {reason}")
    variant = rec.run(gpt2, params, RecipeContext(train_data=data))
    counted, nonzero = count_params(variant)
    if name == "distill":
        assert counted == _gpt2_params(layers=1)  # the student: one of two blocks, its head tied as well
    elif name == "prune-structured":
        # fewer channels; still no second copy of the head: the count is that of the distinct tensors
        distinct = {id(p): p.numel() for p in variant.module.parameters()}
        assert counted == sum(distinct.values()) < _gpt2_params()
    else:
        assert counted == _gpt2_params(), f"{name}: {counted} parameters, the baseline has {_gpt2_params()}"
    assert 0 < nonzero <= counted
    if name == "int8-dynamic":
        # the case of the issue: the head is packed int8, a copy of its own beside the fp32 embedding
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        assert isinstance(variant.module.lm_head, DynamicLinear)
        assert variant.tied_weights == {"lm_head.weight": "transformer.wte.weight"}
        assert torch_params(variant.module)[0] == _gpt2_params() + VOCAB * EMBD  # without the ties: twice


def test_two_parameters_over_one_storage_count_once():
    import torch
    from torch import nn

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = nn.Parameter(self.a.weight.data)  # another Parameter, the same storage

    twin = Twin()
    assert twin.a.weight is not twin.b.weight and twin.a.weight.data_ptr() == twin.b.weight.data_ptr()
    assert torch_params(twin) == (16, int(torch.count_nonzero(twin.a.weight)))
