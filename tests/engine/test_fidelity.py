"""Fidelity to the baseline without labels, by the metric that fits the task: a faithful variant
scores close to the identity, a destroyed one scores as destroyed.

The tiny transformers are initialised at ``initializer_range=0.2`` (the scale of trained weights):
at the default 0.02 each layer adds almost nothing to the embeddings it is given, so even a copy
with 95% of its Linear weights zeroed would still return nearly the baseline's outputs.
"""

import copy
import dataclasses
import re
import shutil

import numpy as np
import pytest
import torch

from tests.engine import models as m
from workers.engine.evaluation import Evaluator, generated_eval_data
from workers.engine.fidelity import model_pooling, nearest_neighbours, pool
from workers.engine.fidelity_texts import SENTENCES
from workers.engine.loaders import load_model
from workers.engine.profile import profile_model
from workers.engine.recipes import RECIPES, RecipeContext
from workers.engine.tradeoff import within_fidelity

BERT = dict(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64, initializer_range=0.2)
GPT2 = dict(vocab_size=500, n_embd=32, n_layer=2, n_head=2, n_positions=48, initializer_range=0.2,
            bos_token_id=0, eos_token_id=0)
MLP = {"in_features": 16, "hidden": [64, 64], "num_classes": 5, "activation": "relu"}
MIN_FIDELITY = 0.98


def _build(cls, config, seed):
    torch.manual_seed(seed)
    return cls(config).eval()


def _save(cls, config, folder):
    _build(cls, config, 0).save_pretrained(folder, safe_serialization=True)
    return folder


def _variants(loaded, randomised):
    """The identical copy, int8 dynamic, 95% unstructured pruning and a randomly re-initialised model."""
    ctx = RecipeContext()
    int8 = RECIPES["int8-dynamic"]
    return {
        "copy": dataclasses.replace(loaded, module=copy.deepcopy(loaded.module)),
        "int8": int8.run(loaded, dict(int8.defaults), ctx),
        "pruned": RECIPES["prune-unstructured"].run(loaded, {"sparsity": 0.95}, ctx),
        "random": dataclasses.replace(loaded, module=randomised),
    }


def _words():
    words = []
    for text in SENTENCES:
        for w in re.findall(r"\w+|[^\w\s]", text.lower()):
            if w not in words:
                words.append(w)
    return words


def _bert_tokenizer(folder):
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + _words()
    (folder.parent / "vocab.txt").write_text("\n".join(vocab))
    BertTokenizer(str(folder.parent / "vocab.txt")).save_pretrained(folder)


def _word_tokenizer(folder):
    from tokenizers import Tokenizer, models as tm, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(_words())}}
    tok = Tokenizer(tm.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tok.normalizer = __import__("tokenizers").normalizers.Lowercase()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    from transformers import BertConfig, BertModel

    return _save(BertModel, BertConfig(**BERT), tmp_path_factory.mktemp("fe") / "bert")


@pytest.fixture(scope="module")
def embedder_with_tokenizer(tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp("fe_tok") / "bert"
    shutil.copytree(embedder, folder)
    _bert_tokenizer(folder)
    return folder


def test_embedding_cosine_scores_a_destroyed_model_as_destroyed(embedder):
    from transformers import BertConfig, BertModel

    loaded = load_model(embedder)
    data = generated_eval_data(loaded)
    assert data.source == "generated inputs" and data.n == 32 and data.labels is None
    assert data.arrays["attention_mask"].min() == 0  # random lengths: padding is there, and masked
    evaluator = Evaluator(loaded, data)
    scores = {name: evaluator.evaluate(v) for name, v in
              _variants(loaded, _build(BertModel, BertConfig(**BERT), seed=1)).items()}
    for ev in scores.values():
        assert (ev["fidelity_metric"], ev["fidelity_kind"], ev["fidelity_higher_is_better"]) == \
            ("embedding_cosine", "embedding", True)
        assert ev["labelled"] is False and ev["metric"] is None and ev["value"] is None
    cos = {name: ev["fidelity_value"] for name, ev in scores.items()}
    nn = {name: ev["fidelity"]["nn_agreement"] for name, ev in scores.items()}
    assert cos["copy"] == pytest.approx(1.0, abs=1e-6) and nn["copy"] == 1.0
    assert cos["int8"] > 0.99 and within_fidelity(cos["int8"], higher_is_better=True, min_fidelity=MIN_FIDELITY)
    for ruined in ("pruned", "random"):
        assert cos[ruined] < 0.8 and cos[ruined] < cos["int8"] - 0.2, cos
        assert not within_fidelity(cos[ruined], higher_is_better=True, min_fidelity=MIN_FIDELITY)
        assert nn[ruined] < 0.5 < nn["int8"], nn


def test_padding_never_counts_in_the_pooled_embedding(embedder):
    """A variant that is exact on every real token and returns noise on padding is faithful; the
    cosine of whole outputs (padding included) would call it broken."""
    loaded = load_model(embedder)
    data = generated_eval_data(loaded)

    class NoisyPadding(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            noise = torch.randn(hidden.shape, generator=torch.Generator().manual_seed(0)) * 100
            return hidden + noise * (1 - attention_mask).unsqueeze(-1)

    ev = Evaluator(loaded, data).evaluate(dataclasses.replace(loaded, module=NoisyPadding(loaded.module)))
    assert ev["fidelity"]["embedding_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert ev["fidelity"]["nn_agreement"] == 1.0
    values = data.values_for(loaded, np.arange(data.n))
    with torch.no_grad():
        a = loaded.module(**values).last_hidden_state.flatten(1)
        b = NoisyPadding(loaded.module)(**values).flatten(1)
    assert float(torch.nn.functional.cosine_similarity(a, b).mean()) < 0.5

    hidden = torch.ones(2, 4, 3)
    hidden[:, 2:] = 1000.0
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert pool(hidden, mask, ["mean"])[0].tolist() == [1.0, 1.0, 1.0]
    assert pool(hidden, mask, ["max"])[0].tolist() == [1.0, 1.0, 1.0]
    assert pool(hidden, mask, ["lasttoken"])[1].tolist() == [1000.0] * 3


def test_the_models_own_pooling_is_used(embedder, tmp_path):
    """A sentence-transformers folder that declares CLS pooling is judged on its CLS vectors."""
    folder = tmp_path / "st"
    shutil.copytree(embedder, folder)
    (folder / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},'
                                         ' {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]')
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text('{"word_embedding_dimension": 32, "pooling_mode_cls_token": true, '
                                                      '"pooling_mode_mean_tokens": false}')
    loaded = load_model(folder)
    assert model_pooling(loaded) == (["cls"], "the model's own pooling (1_Pooling/config.json)")
    data = generated_eval_data(loaded)
    int8 = _variants(loaded, None)["int8"]
    ev = Evaluator(loaded, data).evaluate(int8)
    assert ev["pooling"]["modes"] == ["cls"]
    values = data.values_for(loaded, np.arange(data.n))
    with torch.no_grad():
        ref = loaded.module(**values).last_hidden_state[:, 0].double()
        out = int8.module(**values).last_hidden_state[:, 0].double()
    by_hand = float(torch.nn.functional.cosine_similarity(out, ref).mean())
    assert ev["fidelity"]["embedding_cosine"] == pytest.approx(by_hand, abs=1e-5)
    assert model_pooling(load_model(embedder))[0] == ["mean"]


def test_real_text_through_the_models_tokenizer(embedder_with_tokenizer):
    loaded = load_model(embedder_with_tokenizer)
    data = generated_eval_data(loaded)
    assert data.real_text and data.n == 32
    ids, mask = data.arrays["input_ids"], data.arrays["attention_mask"]
    assert (ids[:, 0] == 2).all()  # [CLS] first: the tokenizer's own special tokens
    assert (ids[mask == 1] == 1).mean() < 0.01  # every word is in the vocabulary: no [UNK]
    assert mask.sum(1).min() < mask.shape[1]  # sentences of different lengths, padded and masked
    assert "built-in English sentences" in data.notes[0]


def test_classifier_top1_agreement_and_kl(tmp_path):
    from workers.engine.registry import get_architecture

    loaded = load_model(m.save_safetensors(tmp_path / "mlp.safetensors", "mlp", MLP))
    data = generated_eval_data(loaded, n_samples=64)
    assert data.n == 64 and set(data.arrays) == {"input"}
    torch.manual_seed(1)
    randomised = get_architecture("mlp").build(MLP).eval()
    evaluator = Evaluator(loaded, data)
    scores = {name: evaluator.evaluate(v) for name, v in _variants(loaded, randomised).items()}
    agree = {k: ev["fidelity"]["top1_agreement"] for k, ev in scores.items()}
    kl = {k: ev["fidelity"]["kl_divergence"] for k, ev in scores.items()}
    assert all(ev["fidelity_metric"] == "top1_agreement" and ev["fidelity_kind"] == "classifier"
               for ev in scores.values())
    assert agree["copy"] == 1.0 and kl["copy"] == 0.0
    assert agree["int8"] >= 0.9 and 0 < kl["int8"] < 1e-3
    for ruined in ("pruned", "random"):
        assert agree[ruined] < 0.6 and kl[ruined] > 100 * kl["int8"], (agree, kl)


def test_language_model_next_token_agreement_kl_and_perplexity(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = _save(GPT2LMHeadModel, GPT2Config(**GPT2), tmp_path / "gpt2")
    _word_tokenizer(folder)
    loaded = load_model(folder)
    data = generated_eval_data(loaded)
    assert data.real_text and data.arrays["attention_mask"].min() == 0
    evaluator = Evaluator(loaded, data)
    scores = {name: evaluator.evaluate(v) for name, v in
              _variants(loaded, _build(GPT2LMHeadModel, GPT2Config(**GPT2), seed=1)).items()}
    fid = {k: ev["fidelity"] for k, ev in scores.items()}
    assert all(ev["fidelity_kind"] == "sequence" and ev["fidelity_metric"] == "top1_agreement" for ev in scores.values())
    assert fid["copy"]["top1_agreement"] == 1.0 and fid["copy"]["kl_divergence"] == 0.0
    # a tiny LM's next-token logits are close to ties, so int8 flips some of them; KL separates clearly
    assert fid["int8"]["top1_agreement"] > 0.8 and fid["int8"]["kl_divergence"] < 0.01
    for ruined in ("pruned", "random"):
        assert fid[ruined]["top1_agreement"] < 0.3 and fid[ruined]["kl_divergence"] > 0.3, fid
        assert fid[ruined]["kl_divergence"] > 100 * fid["int8"]["kl_divergence"]
    # perplexity of each variant on the sentences (next tokens, padding masked)
    assert fid["copy"]["perplexity"] == fid["int8"]["perplexity"] or \
        fid["int8"]["perplexity"] == pytest.approx(fid["copy"]["perplexity"], rel=0.05)
    assert 1 < fid["copy"]["perplexity"] < 10 * 500

    class NoisyPadding(torch.nn.Module):  # exact on real tokens, noise where the mask is 0
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            logits = self.inner(input_ids=input_ids, attention_mask=attention_mask).logits
            return logits + 100 * torch.randn(logits.shape) * (1 - attention_mask).unsqueeze(-1)

    masked = evaluator.evaluate(dataclasses.replace(loaded, module=NoisyPadding(loaded.module)))
    assert masked["fidelity"]["top1_agreement"] == 1.0 and masked["fidelity"]["kl_divergence"] < 1e-6


def test_regressor_relative_error(tmp_path):
    from workers.engine.registry import get_architecture

    config = dict(MLP, num_classes=1)
    loaded = load_model(m.save_safetensors(tmp_path / "reg.safetensors", "mlp", config))
    torch.manual_seed(1)
    scores = {name: Evaluator(loaded, generated_eval_data(loaded)).evaluate(v)
              for name, v in _variants(loaded, get_architecture("mlp").build(config).eval()).items()}
    err = {k: ev["fidelity_value"] for k, ev in scores.items()}
    assert all(ev["fidelity_metric"] == "relative_error" and ev["fidelity_higher_is_better"] is False
               for ev in scores.values())
    assert err["copy"] == 0.0 and scores["copy"]["fidelity"]["mean_abs_error"] == 0.0
    assert 0 < err["int8"] < 0.02 and within_fidelity(err["int8"], higher_is_better=False, min_fidelity=MIN_FIDELITY)
    for ruined in ("pruned", "random"):
        assert err[ruined] > 0.3 and not within_fidelity(err[ruined], higher_is_better=False, min_fidelity=MIN_FIDELITY)


def test_nearest_neighbours():
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert nearest_neighbours(emb).tolist() == [1, 0, 3, 2]


def test_an_audit_without_a_dataset_is_judged_by_fidelity(embedder_with_tokenizer):
    from workers.engine.cli import summary_table

    doc = profile_model(embedder_with_tokenizer, recipes=["baseline", "int8-dynamic", "prune-unstructured:0.95"],
                        options=m.FAST_OPTIONS)
    base, int8, pruned = doc["variants"]
    for v in doc["variants"]:
        ev = v["evaluation"]
        assert v["status"] == "succeeded" and ev["labelled"] is False and ev["dataset"] == "generated inputs"
        assert ev["fidelity_metric"] == "embedding_cosine" and ev["n_samples"] == 32
        assert any("built-in English sentences" in n for n in ev["notes"])
    assert base["evaluation"]["fidelity_value"] == 1.0
    assert pruned["evaluation"]["fidelity_value"] < 0.8 < 0.98 < int8["evaluation"]["fidelity_value"]
    (entry,) = doc["tradeoff"]["per_batch_size"]
    assert entry["judged_by"] == "fidelity" and entry["metric"] == "embedding_cosine"
    assert entry["recommended"] != "prune-unstructured:0.95"
    table = summary_table(doc)
    assert "prune-unstructured:0.95: no labels on 32 samples (generated inputs); fidelity: embedding_cosine" in table
