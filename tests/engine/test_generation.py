"""The generation scenario: what a user auditing a language model gets (TTFT, TPOT, J per token)."""

import importlib.util
import json
import math
from types import SimpleNamespace

import pytest

from tests.engine import models as m
from workers.engine import generation
from workers.engine.cli import main
from workers.engine.errors import LoadError
from workers.engine.loaders import load_model
from workers.engine.profile import profile_model

PROMPT, NEW = 12, 12  # decode (11 steps) well above the prefill, so their difference is resolved
GEN_OPTIONS = dict(m.FAST_OPTIONS, prompt_tokens=PROMPT, new_tokens=NEW, time_cap_s=0.25)
GENERATION_FIELDS = {
    "scenario", "backend", "prompt_tokens", "new_tokens", "prompt_source", "ttft_ms_mean", "ttft_ms_p50",
    "ttft_ms_p95", "ttft_ci95_ms", "tpot_ms_mean", "tpot_ms_p50", "tpot_ms_p95", "decode_ms_mean",
    "output_tokens_per_s", "decode_tokens_per_s", "prefill_tokens_per_s", "energy_j_per_prompt_token",
    "energy_j_per_output_token", "energy_j_per_output_token_uncertainty_rel", "energy_j_per_request",
    "prefill_energy_j_per_request", "decode_energy_j_per_request", "prefill_energy_share", "prefill", "decoding",
}


# --- tiny generative models, built from configs ----------------------------------------------


def _word_tokenizer(folder):
    """A word-level tokenizer over the shipped passage's words (what a real upload's tokenizer is
    to the engine: files in the folder that transformers loads without running code)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    text = generation.PASSAGE
    for mark in ",.;":
        text = text.replace(mark, f" {mark} ")
    vocab = {"[PAD]": 0, "<s>": 1, "</s>": 2, "[UNK]": 3}
    for word in sorted(set(text.split())):
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="<s>", eos_token="</s>",
                            pad_token="[PAD]").save_pretrained(folder)


@pytest.fixture(scope="module")
def gpt2_text(tmp_path_factory):
    """GPT-2 (2 layers, hidden 32, 40 positions) with its own tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gen") / "gpt2"
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=256, n_embd=32, n_layer=2, n_head=2, n_positions=40, bos_token_id=1,
                        eos_token_id=2)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    _word_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """Llama (2 layers, hidden 64, grouped-query attention), no tokenizer in the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("gen") / "llama"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("gen") / "t5"
    torch.manual_seed(0)
    config = T5Config(vocab_size=200, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=2,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5ForConditionalGeneration(config).eval().save_pretrained(folder)
    return folder


def _check_generation(doc, batch_sizes, *, recipes):
    assert doc["scenario"]["kind"] == "generation" and doc["scenario"]["backend"] == "transformers"
    assert (doc["scenario"]["prompt_tokens"], doc["scenario"]["new_tokens"]) == (PROMPT, NEW)
    assert [v["recipe"] for v in doc["variants"]] == list(recipes)
    json.dumps(doc)
    for v in doc["variants"]:
        assert v["status"] == "succeeded", v["error"]
        assert [x["batch_size"] for x in v["measurements"]] == list(batch_sizes)
        for x in v["measurements"]:
            b = x["batch_size"]
            assert GENERATION_FIELDS <= set(x)
            assert x["scenario"] == "generation" and x["input_shape"] == {"input_ids": [b, PROMPT]}
            assert x["decoding"] == "model.generate, greedy, dynamic KV cache"
            for key in GENERATION_FIELDS - {"scenario", "backend", "prompt_source", "prefill", "decoding",
                                            "energy_j_per_output_token_uncertainty_rel"}:
                assert isinstance(x[key], (int, float)) and x[key] > 0, (key, x[key])
            assert x["ttft_ms_p50"] <= x["ttft_ms_p95"] and x["tpot_ms_p50"] <= x["tpot_ms_p95"]
            # a request is the prefill plus NEW - 1 decode steps; the two are measured apart, so
            # they agree within the noise of a contended CPU, not exactly
            rebuilt = x["ttft_ms_mean"] + (NEW - 1) * x["tpot_ms_mean"]
            assert 0.5 < rebuilt / x["latency_ms_mean"] < 2.0
            assert x["tpot_ms_p50"] < x["ttft_ms_p50"] * NEW
            # the definitions: per token and per request figures add up exactly
            assert math.isclose(x["energy_j_per_request"],
                                PROMPT * x["energy_j_per_prompt_token"] + (NEW - 1) * x["energy_j_per_output_token"])
            assert math.isclose(x["energy_j_per_request"], x["energy_j_per_inference"] / b)
            assert math.isclose(x["prefill_energy_share"], x["prefill_energy_j_per_request"] / x["energy_j_per_request"])
            assert 0 < x["prefill_energy_share"] < 1
            assert math.isclose(x["output_tokens_per_s"], b * NEW / (x["latency_ms_mean"] / 1e3))
            assert x["prefill"]["iterations"] > 0 and x["prefill"]["windows"] >= 1


@pytest.mark.parametrize("fixture, recipes", [
    ("gpt2_text", ("baseline", "prune-unstructured:0.5")),
    ("llama_dir", ("baseline", "int8-dynamic")),
])
def test_causal_lms_profile_end_to_end_with_a_recipe(request, fixture, recipes):
    doc = profile_model(request.getfixturevalue(fixture), batch_sizes=(1, 2), recipes=recipes, options=GEN_OPTIONS)
    assert doc["model"]["task"] == "text-generation"
    _check_generation(doc, (1, 2), recipes=recipes)
    variant = doc["variants"][1]
    assert [c["batch_size"] for c in variant["comparison"]] == [1, 2]
    assert all(c["energy_key"] == "energy_j_per_request" for c in variant["comparison"])
    if fixture == "gpt2_text":  # the folder's own tokenizer turned the shipped passage into the prompt
        assert doc["scenario"]["prompt_source"].startswith("English text")
    else:
        assert doc["scenario"]["prompt_source"] == "random token ids (seed 0): the upload has no tokenizer"


def test_seq2seq_t5_runs_its_encoder_in_the_prefill(t5_dir):
    doc = profile_model(t5_dir, batch_sizes=(2,), options=GEN_OPTIONS)
    assert doc["model"]["task"] == "text2text-generation"
    _check_generation(doc, (2,), recipes=("baseline",))


def test_requests_are_greedy_exactly_n_tokens_with_eos_ignored(llama_dir):
    import torch

    loaded = load_model(llama_dir)
    plan = generation.GenerationPlan.build(loaded, batch_size=2, prompt_tokens=PROMPT, new_tokens=NEW,
                                           options={})
    out = plan.request()
    assert out.shape == (2, PROMPT + NEW)
    assert plan.records[-1][2] == NEW and plan.records[-1][0] < plan.records[-1][1]
    ids = generation.prompt_batch(loaded, 2, PROMPT)
    assert torch.equal(out[:, :PROMPT], ids) and not torch.equal(ids[0], ids[1])  # rows start apart
    # the same tokens as a plain greedy loop without a cache in which EOS can never be chosen
    seq = ids.clone()
    with torch.no_grad():
        for _ in range(NEW):
            logits = loaded.module(input_ids=seq).logits[:, -1]
            logits[:, loaded.config["eos_token_id"]] = -math.inf
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=-1)
    assert torch.equal(out, seq)
    first = plan.prefill()
    assert first.shape == (2, PROMPT + 1) and torch.equal(first, out[:, :PROMPT + 1])


def test_prompts_are_the_passage_in_the_models_own_tokens(gpt2_text):
    from transformers import AutoTokenizer

    loaded = load_model(gpt2_text)
    ids = generation.prompt_batch(loaded, 3, 30)
    assert ids.shape == (3, 30)
    tok = AutoTokenizer.from_pretrained(str(gpt2_text))
    first = tok.convert_ids_to_tokens(ids[0].tolist())
    assert first[:5] == ["The", "old", "weather", "station", "stood"]  # this tokenizer adds no BOS
    assert tok.convert_ids_to_tokens(ids[1].tolist())[:3] == ["low", "hill", "above"]  # 7 tokens further on
    assert tok.unk_token_id not in ids.flatten().tolist()


def test_a_tokenizer_that_needs_its_own_code_falls_back_to_random_ids(tmp_path, llama_dir):
    import shutil

    folder = tmp_path / "llama"
    shutil.copytree(llama_dir, folder)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "EvilTokenizer", "auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", None]}}))
    (folder / "evil.py").write_text("raise SystemExit('the upload ran code')\n")
    loaded = load_model(folder)
    ids, source = generation.prompt_token_ids(loaded, PROMPT)
    assert source.startswith("random token ids (seed 0): its tokenizer could not be loaded safely")
    assert len(ids) >= PROMPT and all(0 <= i < 320 for i in ids)
    doc = profile_model(folder, options=GEN_OPTIONS)  # the audit goes on, and says so
    assert doc["variants"][0]["status"] == "succeeded"
    assert any(w.startswith("prompts are random token ids (seed 0): its tokenizer could not be loaded safely")
               for w in doc["warnings"])


@pytest.mark.parametrize("options, message", [
    ({"prompt_tokens": 41}, "the prompt of 41 tokens is longer than the model's context of 40 positions"),
    ({"prompt_tokens": 30, "new_tokens": 20}, "do not fit the model's context of 40 positions"),
    ({"new_tokens": 1025}, "over the cap of 1024"),
    ({"new_tokens": 1}, "new tokens must be at least 2"),
    ({"generation_backend": "tgi"}, "unknown generation backend 'tgi'"),
])
def test_bad_lengths_are_refused_before_measuring(gpt2_text, options, message):
    events = []
    with pytest.raises(LoadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        profile_model(gpt2_text, options=dict(GEN_OPTIONS, **options), progress=events.append)
    assert "measuring" not in {e["stage"] for e in events}


def test_configs_lacking_what_generation_needs():
    def fake(**config):
        return SimpleNamespace(config=config, architecture="X")

    with pytest.raises(LoadError, match="no vocab_size"):
        generation.check_lengths(fake(n_positions=64), 8, 8)
    with pytest.raises(LoadError, match="neither decoder_start_token_id nor bos_token_id"):
        generation.check_lengths(fake(vocab_size=100, is_encoder_decoder=True), 8, 8)
    generation.check_lengths(fake(vocab_size=100, is_encoder_decoder=True, decoder_start_token_id=0), 8, 8)


def test_generation_scenario_on_a_classifier_is_refused(bert_dir):
    with pytest.raises(LoadError, match="needs a text-generation or seq2seq model"):
        profile_model(bert_dir, options=dict(GEN_OPTIONS, scenario="generation"))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_backend_absent_is_a_clear_error(gpt2_text):
    with pytest.raises(LoadError, match="vLLM is not installed on this worker"):
        profile_model(gpt2_text, options=dict(GEN_OPTIONS, generation_backend="vllm"))


def test_cli_generation_table(llama_dir, capsys):
    code = main(["profile", str(llama_dir), "--prompt-tokens", str(PROMPT), "--new-tokens", str(NEW),
                 "--batch-sizes", "1", "--scenario", "generation", "--quiet", "--time-cap", "0.2", "--window", "0.05",
                 "--idle", "0.05"])
    out = capsys.readouterr().out
    assert code == 0
    header = out.splitlines()[0]
    assert "TTFT p95 ms" in header and "TPOT p95 ms" in header and "J/output token" in header
    row = out.splitlines()[2].split()
    assert row[:2] == ["baseline", "1"] and float(row[2]) > 0 and float(row[3]) > 0


def test_int8_and_pruning_reach_gpt2_conv1d_layers(gpt2_text):
    """GPT-2's layers are transformers' Conv1D, not nn.Linear: without a swap the int8 recipes would
    quantise only the LM head and pruning would prune only the (tied) embedding matrix."""
    import torch
    from transformers.pytorch_utils import Conv1D

    from workers.engine.recipes import RECIPES, RecipeContext

    loaded = load_model(gpt2_text)
    variant = RECIPES["int8-dynamic"].run(loaded, dict(RECIPES["int8-dynamic"].defaults), RecipeContext())
    assert not any(isinstance(x, Conv1D) for x in variant.module.modules())
    quantised = [x for x in variant.module.modules() if type(x).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert len(quantised) == 2 * 4 + 1  # c_attn, c_proj, c_fc, c_proj per layer, and the LM head
    assert any("Conv1D layers" in note for note in variant.notes)
    ids = generation.prompt_batch(loaded, 1, PROMPT)
    with torch.no_grad():
        ref, got = loaded.module(input_ids=ids).logits, variant.module(input_ids=ids).logits
    assert (ref.argmax(-1) == got.argmax(-1)).float().mean() > 0.8
    pruned = RECIPES["prune-unstructured"].run(loaded, {"sparsity": 0.5}, RecipeContext())
    attn = pruned.module.transformer.h[0].attn.c_attn.weight
    assert 0.2 < (attn == 0).float().mean() < 0.8


def _part(mean_ms, joules, *, p50=None, p95=None, iterations=4, u=0.1, flags=()):
    return {"latency_ms_mean": mean_ms, "latency_ms_p50": p50, "latency_ms_p95": p95, "latency_ci95_ms": None,
            "latency_ci95_rel": None, "energy_j_per_inference": joules, "energy_uncertainty_rel": math.hypot(0.5, u),
            "energy_uncertainty_method_rel": 0.5, "energy_uncertainty_stat_rel": u,
            "iterations": iterations, "windows": 2, "window_means_ms": [], "window_energy_j": [], "flags": list(flags)}


def test_summary_definitions_and_throughput_mode():
    # batch 2, prompt 10, 5 new tokens: 4 decode steps of 2 ms each after a 3 ms prefill
    plan = generation.GenerationPlan(prefill=None, request=None, batch_size=2, prompt_tokens=10, new_tokens=5,
                                     records=[(0, 1, 5)] * 3 + [(0, 8_000_000, 5), (0, 8_000_000, 5)])
    prefill = _part(3.0, 0.4, p50=None, p95=None, flags=["single-window"])  # throughput mode: no per-call times
    request = _part(11.0, 1.2, iterations=2, u=0.2)
    s = generation.summarize(plan, prefill, request)
    assert s["ttft_ms_mean"] == 3.0 and s["ttft_ms_p50"] is None and s["ttft_ms_p95"] is None
    assert s["tpot_ms_p50"] == s["tpot_ms_p95"] == s["tpot_ms_mean"] == 2.0  # the last 2 (measured) requests
    assert s["decode_ms_mean"] == 8.0 and math.isclose(s["output_tokens_per_s"], 2 * 5 / 0.011)
    assert math.isclose(s["decode_tokens_per_s"], 2 * 4 / 0.008)
    assert math.isclose(s["energy_j_per_prompt_token"], 0.4 / 20)
    assert math.isclose(s["energy_j_per_output_token"], 0.8 / 8)
    assert math.isclose(s["energy_j_per_request"], 0.6) and math.isclose(s["prefill_energy_share"], 1 / 3)
    # the meter's 50% scale error is shared by both parts; their statistical spreads are not
    assert math.isclose(s["energy_j_per_output_token_uncertainty_rel"],
                        math.hypot(0.5, math.hypot(0.2 * 1.2, 0.1 * 0.4) / 0.8))
    assert "single-window" in s["flags"]
    # noise can leave no measurable decode: null figures with a flag, never a negative energy
    s = generation.summarize(plan, _part(3.0, 1.3), _part(11.0, 1.2, iterations=2))
    assert s["energy_j_per_output_token"] is None and "decode-energy-not-resolved" in s["flags"]


@pytest.mark.parametrize("fixture", ["gpt2_text", "llama_dir", "t5_dir"])
def test_structured_pruning_of_language_models_still_generates(request, fixture):
    """Torch-Pruning traces the logits (not the KV cache an LM returns beside them) and removes
    feed-forward channels of GPT-2 (Conv1D), Llama (gate/up) and T5 (wi) alike."""
    from workers.engine.recipes import RECIPES, RecipeContext

    loaded = load_model(request.getfixturevalue(fixture))
    variant = RECIPES["prune-structured"].run(loaded, {"ratio": 0.5, "finetune_steps": 0}, RecipeContext())
    before = sum(p.numel() for p in loaded.module.parameters())
    after = sum(p.numel() for p in variant.module.parameters())
    assert after < before
    plan = generation.GenerationPlan.build(variant, batch_size=2, prompt_tokens=PROMPT, new_tokens=NEW, options={})
    out = plan.request()
    assert out.shape[-1] == NEW + (1 if fixture == "t5_dir" else PROMPT) and plan.records[-1][2] == NEW
