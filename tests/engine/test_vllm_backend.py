"""The vLLM generation backend's plumbing, against a stand-in ``vllm`` module (CI has no vLLM and
no GPU): it serves the same prompt token ids as the transformers backend, asks for exactly the
new tokens, and builds the same kind of plan. The real engine is checked on a lent GPU."""
import importlib.machinery
import sys
import types
from types import SimpleNamespace

import pytest

from workers.engine import generation, vllm_backend
from workers.engine.errors import LoadError

from .test_generation import gpt2_text  # noqa: F401 - the fixture


@pytest.fixture
def fake_vllm(monkeypatch):
    calls = {"engines": [], "generate": []}

    class LLM:
        def __init__(self, **kwargs):
            calls["engines"].append(kwargs)

        def generate(self, prompts, params, use_tqdm=False):
            calls["generate"].append(([p.prompt_token_ids for p in prompts], params))
            return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=list(range(params.max_tokens)))], metrics=None)
                    for _ in prompts]

    class SamplingParams(SimpleNamespace):
        pass

    class TokensPrompt(SimpleNamespace):
        pass

    vllm = types.ModuleType("vllm")
    vllm.__spec__ = importlib.machinery.ModuleSpec("vllm", loader=None)
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = TokensPrompt
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    monkeypatch.setattr(vllm_backend, "_ENGINES", {})
    return calls


def test_vllm_plan_serves_the_transformers_prompts_and_exact_token_counts(fake_vllm, gpt2_text):  # noqa: F811
    from workers.engine.loaders import load_model

    loaded = load_model(gpt2_text, device="cpu")
    vllm_backend.require(loaded)
    plan = generation.GenerationPlan.build(loaded, batch_size=2, prompt_tokens=8, new_tokens=4,
                                           options={"generation_backend": "vllm"})
    assert isinstance(plan, generation.GenerationPlan) and plan.backend == "vllm"
    plan.prefill()
    plan.request()
    expected = generation.prompt_batch(loaded, 2, 8).tolist()
    (prefill_prompts, first), (request_prompts, full) = fake_vllm["generate"]
    assert prefill_prompts == request_prompts == expected
    assert (first.max_tokens, full.max_tokens, full.min_tokens, full.ignore_eos) == (1, 4, 4, True)
    engine = fake_vllm["engines"][0]
    assert engine["trust_remote_code"] is False and engine["max_model_len"] == 8 + 4 + 1
    assert engine["tokenizer"] == str(loaded.source_dir)  # the upload's own tokenizer made the prompts
    assert plan.prompt_source == generation.prompt_token_ids(loaded, 8)[1]


def test_vllm_serves_only_the_uploaded_weights(fake_vllm, gpt2_text):  # noqa: F811
    from workers.engine.loaders import load_model

    loaded = load_model(gpt2_text, device="cpu")  # never passed through require(): a recipe's copy
    with pytest.raises(LoadError, match="uploaded weights"):
        generation.GenerationPlan.build(loaded, batch_size=1, prompt_tokens=8, new_tokens=4,
                                        options={"generation_backend": "vllm"})
