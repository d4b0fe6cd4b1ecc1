"""Accuracy and fidelity of variants, on datasets with known answers."""

import csv
import json

import numpy as np
import pytest

from tests.engine import models as m
from workers.engine.errors import FormatError
from workers.engine.evaluation import Evaluator, _macro_f1, prepare_eval_data
from workers.engine.loaders import load_model
from workers.engine.profile import profile_model

DIGITS_MLP = {"in_features": 64, "hidden": [128, 64], "num_classes": 10, "activation": "relu"}


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """An MLP trained here on scikit-learn's digits (full-batch Adam, well under a second)."""
    import torch
    from safetensors.torch import save_file

    from workers.engine.datasets import read_dataset
    from workers.engine.registry import get_architecture

    torch.manual_seed(0)
    model = get_architecture("mlp").build(DIGITS_MLP)
    raw = read_dataset("builtin:digits")
    x, y = torch.from_numpy(raw.arrays["inputs"]), torch.from_numpy(raw.labels)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("digits") / "digits.safetensors"
    save_file(model.state_dict(), str(path),
              metadata={"architecture": "mlp", "architecture_config": json.dumps(DIGITS_MLP)})
    return path


def test_int8_keeps_digits_accuracy_and_the_document_has_the_tradeoff(digits_model):
    doc = profile_model(digits_model, batch_sizes=(8,), recipes=["baseline", "int8-dynamic", "prune-unstructured:0.5"],
                        dataset="builtin:digits", options=dict(m.FAST_OPTIONS, eval_max_samples=400))
    base, int8, pruned = doc["variants"]
    ev = base["evaluation"]
    assert ev["metric"] == "accuracy" and ev["n_samples"] == 400 and ev["higher_is_better"] is True
    assert ev["value"] > 0.9
    assert set(ev["metrics"]) == {"accuracy", "top5_accuracy", "macro_f1"}
    assert ev["fidelity"] == {"top1_agreement": 1.0, "kl_divergence": 0.0}
    assert ev["labelled"] is True and ev["fidelity_kind"] == "classifier"
    assert (ev["fidelity_metric"], ev["fidelity_value"], ev["fidelity_higher_is_better"]) == ("top1_agreement", 1.0, True)
    assert abs(int8["evaluation"]["value"] - ev["value"]) <= 0.02
    assert int8["evaluation"]["fidelity"]["top1_agreement"] >= 0.98
    assert any("paired with the baseline" in n for n in pruned["notes"])
    drift = doc["drift"]
    assert drift["recipe"] == "baseline" and drift["per_batch_size"][0]["batch_size"] == 8
    assert drift["per_batch_size"][0]["energy_rel_change"] is not None
    (trade,) = doc["tradeoff"]["per_batch_size"]
    assert trade["metric"] == "accuracy"
    assert trade["recommended"] in {None, "int8-dynamic", "prune-unstructured:0.5"}
    assert trade["verdict"] in {"recommended", "no measurable difference", "inconclusive", "none"}
    assert trade["frontier"] and {p["recipe"] for p in trade["points"]} == {v["recipe"] for v in doc["variants"]}
    json.dumps(doc)


def test_identity_has_fidelity_one_and_labels_optional(mlp_safetensors, tmp_path):
    np.savez(tmp_path / "x.npz", inputs=np.random.default_rng(1).standard_normal((20, 16)).astype(np.float32))
    loaded = load_model(mlp_safetensors)
    data = prepare_eval_data(tmp_path / "x.npz", loaded)
    ev = Evaluator(loaded, data, batch_size=8).evaluate(loaded)
    assert data.task == "unlabeled" and ev["labelled"] is False and ev["metric"] is None and ev["value"] is None
    assert ev["fidelity_metric"] == "top1_agreement" and ev["fidelity_value"] == 1.0
    assert ev["fidelity"] == {"top1_agreement": 1.0, "kl_divergence": 0.0}


def test_accuracy_is_the_variants_own(digits_model):
    import dataclasses

    import torch

    loaded = load_model(digits_model)
    data = prepare_eval_data("builtin:digits", loaded, max_samples=300)
    constant = torch.nn.Linear(64, 10)
    with torch.no_grad():
        constant.weight.zero_()
        constant.bias.copy_(torch.arange(10.0))  # always predicts class 9
    variant = dataclasses.replace(loaded, module=constant)
    ev = Evaluator(loaded, data).evaluate(variant)
    assert ev["value"] == pytest.approx(float(np.mean(data.labels == 9)), abs=1e-6)
    assert ev["fidelity"]["top1_agreement"] < 0.2 and ev["fidelity"]["kl_divergence"] > 0.5


def test_regression_metrics(tmp_path):
    path = m.save_safetensors(tmp_path / "reg.safetensors", "mlp",
                              {"in_features": 10, "hidden": [8], "num_classes": 1, "activation": "relu"})
    loaded = load_model(path)
    data = prepare_eval_data("builtin:diabetes", loaded, max_samples=100)
    ev = Evaluator(loaded, data).evaluate(loaded)
    assert ev["metric"] == "mse" and ev["higher_is_better"] is False and ev["n_samples"] == 100
    assert ev["fidelity_kind"] == "regression" and ev["fidelity_higher_is_better"] is False
    assert ev["fidelity"] == {"relative_error": 0.0, "mean_abs_error": 0.0}
    import torch

    with torch.no_grad():
        pred = loaded.module(torch.from_numpy(data.arrays["input"])).numpy()[:, 0]
    assert ev["value"] == pytest.approx(float(np.mean((pred - data.labels) ** 2)), rel=1e-5)
    assert ev["metrics"]["mae"] == pytest.approx(float(np.mean(np.abs(pred - data.labels))), rel=1e-5)


@pytest.fixture(scope="module")
def bert_with_tokenizer(tmp_path_factory):
    from transformers import BertTokenizer

    root = tmp_path_factory.mktemp("bert_tok")
    folder = m.tiny_bert(root / "bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "film", "great", "awful"]
    (root / "vocab.txt").write_text("\n".join(words))
    BertTokenizer(str(root / "vocab.txt")).save_pretrained(folder)
    return folder


def test_text_classification_csv_tokenised_with_the_models_tokenizer(bert_with_tokenizer, tmp_path):
    path = tmp_path / "reviews.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(12):
            w.writerow(["good movie great" if i % 2 else "bad film awful", f"LABEL_{i % 3}"])
    doc = profile_model(bert_with_tokenizer, seq_len=8, recipes=["baseline", "int8-dynamic"], dataset=str(path),
                        options=m.FAST_OPTIONS)
    base, int8 = doc["variants"]
    assert base["evaluation"]["metric"] == "accuracy" and base["evaluation"]["n_samples"] == 12
    assert 0.0 <= base["evaluation"]["value"] <= 1.0 and "macro_f1" in base["evaluation"]["metrics"]
    assert int8["evaluation"]["fidelity"]["top1_agreement"] >= 0.9
    assert any("tokenised" in n for n in base["evaluation"]["notes"])


def test_text_dataset_refused_for_a_model_without_tokenizer(bert_dir, tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "good", "label": 0}\n{"text": "bad", "label": 1}\n')
    with pytest.raises(FormatError, match="the dataset does not fit this model: .*no tokenizer"):
        profile_model(bert_dir, dataset=str(path), options=m.FAST_OPTIONS)


def test_labels_out_of_range_refused_before_measuring(mlp_safetensors, tmp_path):
    np.savez(tmp_path / "d.npz", inputs=np.zeros((6, 16), dtype=np.float32), labels=np.arange(6))
    events = []
    with pytest.raises(FormatError, match="labels range over 0..5, but the model has 4 classes"):
        profile_model(mlp_safetensors, dataset=str(tmp_path / "d.npz"), options=m.FAST_OPTIONS,
                      progress=events.append)
    assert "measuring" not in {e["stage"] for e in events}


def test_language_model_perplexity(gpt2_dir, tmp_path):
    from tokenizers import Tokenizer, models as tm, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    import shutil

    folder = tmp_path / "gpt2"
    shutil.copytree(gpt2_dir, folder)
    tok = Tokenizer(tm.WordLevel({"[UNK]": 0, **{f"w{i}": i + 1 for i in range(100)}}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)
    (tmp_path / "corpus.txt").write_text("\n".join(" ".join(f"w{(i * 7 + j) % 100}" for j in range(16))
                                                   for i in range(8)))
    loaded = load_model(folder)
    data = prepare_eval_data(tmp_path / "corpus.txt", loaded, seq_len=16)
    assert data.task == "lm" and data.arrays["input_ids"].shape == (8, 16)
    ev = Evaluator(loaded, data).evaluate(loaded)
    assert ev["metric"] == "perplexity" and ev["higher_is_better"] is False
    # an untrained model over a 500-token vocabulary is close to uniform
    assert 100 < ev["value"] < 2000
    assert ev["value"] == pytest.approx(np.exp(ev["metrics"]["nll_per_token"]), rel=1e-4)
    assert ev["fidelity"]["top1_agreement"] == 1.0


def test_macro_f1_known_answer():
    preds = np.array([0, 0, 1, 1, 2, 2])
    labels = np.array([0, 1, 1, 1, 2, 0])
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp0 fn1 -> 0.8; class 2: tp1 fp1 fn0 -> 2/3
    assert _macro_f1(preds, labels) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_cli_prints_evaluation_drift_and_tradeoff(digits_model, capsys):
    from workers.engine.cli import main

    fast = ["--time-cap", "0.3", "--window", "0.05", "--idle", "0.05"]
    code = main(["profile", str(digits_model), "--recipes", "baseline,int8-dynamic,sparse-2:4", "--dataset",
                 "builtin:digits", "--eval-samples", "200", "--max-accuracy-drop", "0.02", "--queries-per-day",
                 "5000", "--batch-sizes", "4", "--quiet", *fast])
    out = capsys.readouterr().out
    assert code == 0
    assert "evaluation:" in out and "int8-dynamic: accuracy" in out
    assert "sparse-2:4: skipped: recipe 'sparse-2:4' runs on cuda, not cpu" in out
    assert "baseline drift (first vs last measurement): batch 4" in out
    assert "trade-off at batch size 4 (accuracy, higher is better)" in out and "recommended: " in out


def test_image_npz_on_a_vision_transformer(vit_dir, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "images.npz", pixel_values=rng.standard_normal((10, 3, 32, 32)).astype(np.float32),
             labels=rng.integers(0, 4, 10))
    doc = profile_model(vit_dir, recipes=["baseline", "prune-structured:0.5"], dataset=str(tmp_path / "images.npz"),
                        options=m.FAST_OPTIONS)
    base, pruned = doc["variants"]
    assert base["evaluation"]["metric"] == "accuracy" and base["evaluation"]["n_samples"] == 10
    assert pruned["params"] < base["params"] and pruned["flops"] < base["flops"]
    assert 0.0 <= pruned["evaluation"]["fidelity"]["top1_agreement"] <= 1.0
    assert pruned["evaluation"]["fidelity_kind"] == "classifier" and base["evaluation"]["fidelity_value"] == 1.0
    np.savez(tmp_path / "wrong.npz", pixel_values=np.zeros((2, 3, 16, 16), dtype=np.float32))
    with pytest.raises(FormatError, match=r"per-sample shape \[3, 16, 16\]; the model expects \[3, 32, 32\]"):
        profile_model(vit_dir, dataset=str(tmp_path / "wrong.npz"), options=m.FAST_OPTIONS)
