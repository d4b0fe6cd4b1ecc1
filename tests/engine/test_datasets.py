"""datasets.py: upload-time inspection, built-in datasets, model-aware checks."""

import subprocess
import sys

import numpy as np
import pytest

from workers.engine.datasets import (
    RawDataset, array_inputs_for_model, check_dataset_for_model, inspect_dataset, read_dataset,
)
from workers.engine.errors import FormatError
from workers.engine.loaders import LoadedModel


def _model(shape=(64,), num_classes=10, fmt="safetensors", task="classification"):
    spec = {"kind": "tensors", "inputs": [{"name": "input", "shape": list(shape), "dtype": "float32"}]}
    return LoadedModel(module=None, format=fmt, architecture="mlp", task=task, config={"num_classes": num_classes},
                       input_spec=spec, call="positional")


def test_builtin_datasets_need_no_file():
    info = inspect_dataset("builtin:digits")
    assert info.format == "builtin" and info.n_samples == 1797 and info.has_labels
    raw = read_dataset("builtin:digits")
    assert raw.arrays["inputs"].shape == (1797, 64) and raw.arrays["inputs"].max() <= 1.0
    assert set(np.unique(raw.labels)) == set(range(10))
    assert read_dataset("builtin:diabetes").task_hint == "regression"


@pytest.mark.parametrize("arrays, message", [
    ({"inputs": np.zeros((4, 3)), "labels": np.array([0, 1, -1, 2])}, "negative class indices"),
    ({"inputs": np.array([[np.nan, 1.0]] * 4), "labels": np.arange(4)}, "NaN"),
    ({"input_ids": np.full((4, 5), 1.5)}, "token ids"),
    ({"inputs": np.zeros((4, 3)), "labels": np.arange(3)}, "disagree in length"),
])
def test_bad_npz_refused_at_upload(tmp_path, arrays, message):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(FormatError, match=message):
        inspect_dataset(path)


def test_named_npz_inputs_accepted(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, input_ids=np.ones((3, 8), dtype=np.int64), attention_mask=np.ones((3, 8), dtype=np.int64),
             labels=np.array([0, 1, 0]))
    info = inspect_dataset(path)
    assert info.n_samples == 3 and info.has_labels


def test_check_for_model_shapes_labels_and_vocabulary():
    raw = read_dataset("builtin:digits")
    assert check_dataset_for_model(raw, _model()) == "classification"
    with pytest.raises(FormatError, match=r"per-sample shape \[64\]; the model expects \[16\]"):
        check_dataset_for_model(raw, _model(shape=(16,)))
    with pytest.raises(FormatError, match="labels range over 0..9, but the model has 4 classes"):
        check_dataset_for_model(raw, _model(num_classes=4))
    text_model = LoadedModel(module=None, format="hf", architecture="Bert", task="text-classification",
                             config={"num_labels": 2}, input_spec={"kind": "text", "vocab_size": 100})
    ids = RawDataset("arrays", "x", arrays={"input_ids": np.array([[1, 2, 150]])}, labels=np.array([0]))
    with pytest.raises(FormatError, match="token id 150; the model's vocabulary has 100"):
        array_inputs_for_model(ids, text_model)
    texts = RawDataset("text-labels", "x", texts=["a b"], labels=["0"])
    with pytest.raises(FormatError, match="no tokenizer"):
        check_dataset_for_model(texts, text_model, tokenizer=None)
    plain = RawDataset("text", "x", texts=["a b"])
    with pytest.raises(FormatError, match="perplexity"):
        check_dataset_for_model(plain, text_model, tokenizer=object())


def test_regression_and_unlabeled():
    assert check_dataset_for_model(read_dataset("builtin:diabetes"), _model(shape=(10,), num_classes=1)) == "regression"
    raw = RawDataset("arrays", "x", arrays={"inputs": np.zeros((5, 64), dtype=np.float32)})
    assert check_dataset_for_model(raw, _model()) == "unlabeled"


def test_datasets_module_imports_no_torch():
    code = "import sys, workers.engine.datasets; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("content, fmt, n, detail", [
    # one column named as a text column: a CSV (quotes and embedded commas are CSV's, not the text's)
    ('text\n"Hello, world"\nsecond line\n', "csv", 2, "text column 'text'"),
    ("Sentence\nA first one.\nA second one.\n", "csv", 2, "text column 'Sentence'"),
    # two columns with a text column, labels absent: still a CSV
    ("id,text\n1,hello\n2,world\n", "csv", 2, "text column 'text'"),
    # prose whose first line happens to hold a comma is text, not a CSV
    ("Hello, world\nthis is a story, told in lines\nwith no columns at all\n", "text", 3, "lines of text"),
    # a single word heading that is not a text column: prose
    ("Introduction\nOnce upon a time.\n", "text", 2, "lines of text"),
])
def test_csv_is_recognised_by_structure_not_by_column_count(tmp_path, content, fmt, n, detail):
    path = tmp_path / "data.txt"  # the name says nothing
    path.write_text(content)
    info = inspect_dataset(path)
    assert (info.format, info.n_samples) == (fmt, n) and detail in info.detail
    if fmt == "csv":
        raw = read_dataset(path)
        assert raw.kind == "text-labels" and raw.labels is None and len(raw.texts) == n
        if content.startswith("text\n"):
            assert raw.texts[0] == "Hello, world"


def test_a_headed_table_without_a_text_column_is_a_csv_that_says_what_it_lacks(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(FormatError, match="CSV needs a text column"):
        inspect_dataset(path)


def test_audio_models_declare_their_dataset_inputs(tmp_path):
    from workers.engine.datasets import _declared_inputs

    wave = LoadedModel(module=None, format="hf", architecture="Wav2Vec2ForCTC", task="feature-extraction", config={},
                       input_spec={"kind": "audio-waveform", "input_name": "input_values", "samples": 16000})
    ast = LoadedModel(module=None, format="hf", architecture="ASTForAudioClassification", task="feature-extraction",
                      config={}, input_spec={"kind": "audio-spectrogram", "input_name": "input_values",
                                             "features_shape": [32, 16]})
    assert _declared_inputs(wave) == [("input_values", None, "float32")]
    raw = RawDataset("arrays", "d.npz", arrays={"inputs": np.zeros((3, 32, 16), np.float32)})
    assert array_inputs_for_model(raw, ast)["input_values"].shape == (3, 32, 16)
    bad = RawDataset("arrays", "d.npz", arrays={"inputs": np.zeros((3, 16, 32), np.float32)})
    with pytest.raises(FormatError, match=r"per-sample shape \[16, 32\]; the model expects \[32, 16\]"):
        array_inputs_for_model(bad, ast)
