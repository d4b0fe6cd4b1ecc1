"""Example inputs: derived from the model, random with a fixed seed, overridable."""

import pytest

from workers.engine.errors import LoadError
from workers.engine.inputs import build_inputs, default_seq_len

TEXT = {"kind": "text", "vocab_size": 500, "max_positions": 64, "low": 104, "encoder_decoder": False}


def test_text_inputs_are_random_in_range_and_reproducible():
    a = build_inputs(TEXT, 4)
    ids = a.values["input_ids"]
    assert a.input_shape == {"input_ids": [4, 64], "attention_mask": [4, 64]}
    assert int(ids.min()) >= 104 and int(ids.max()) < 500
    assert len(set(ids.flatten().tolist())) > 50  # not a constant
    assert bool((a.values["attention_mask"] == 1).all())
    b = build_inputs(TEXT, 4)
    assert bool((b.values["input_ids"] == ids).all())


def test_seq_len_default_override_and_clamp():
    assert default_seq_len(512) == (128, [])
    assert default_seq_len(64) == (64, [])
    seq, warnings = default_seq_len(64, 100)
    assert seq == 64 and "exceeds" in warnings[0]
    assert build_inputs(TEXT, 1, seq_len=8).input_shape["input_ids"] == [1, 8]
    assert build_inputs(TEXT, 1, overrides={"seq_len": 12}).input_shape["input_ids"] == [1, 12]


def test_encoder_decoder_gets_decoder_ids():
    spec = dict(TEXT, encoder_decoder=True)
    assert "decoder_input_ids" in build_inputs(spec, 2, seq_len=4).values


def test_vision_inputs_and_overrides():
    spec = {"kind": "vision", "num_channels": 3, "image_size": 32}
    assert build_inputs(spec, 2).input_shape == {"pixel_values": [2, 3, 32, 32]}
    out = build_inputs(spec, 1, overrides={"image_size": 48})
    assert out.input_shape == {"pixel_values": [1, 3, 48, 48]}
    assert float(out.values["pixel_values"].std()) > 0.5


def test_declared_tensor_shape_and_shape_override():
    spec = {"kind": "tensors", "inputs": [{"name": "input", "shape": [3, 8, 8], "dtype": "float32"}]}
    assert build_inputs(spec, 5).input_shape == {"input": [5, 3, 8, 8]}
    assert build_inputs(spec, 1, overrides={"shape": {"input": [3, 4, 4]}}).input_shape == {"input": [1, 3, 4, 4]}
    with pytest.raises(LoadError, match="input_overrides"):
        build_inputs({"kind": "tensors", "inputs": []}, 1)


def test_onnx_dims_resolved_from_batch_sequence_and_overrides():
    spec = {"kind": "onnx", "inputs": [
        {"name": "input_ids", "dims": ["batch", "sequence"], "dtype": "int64", "vocab_size": 300},
        {"name": "attention_mask", "dims": ["batch", "sequence"], "dtype": "int64", "vocab_size": None},
        {"name": "extra", "dims": ["batch", "height", 4], "dtype": "float32", "vocab_size": None},
    ]}
    guessed = build_inputs(spec, 2, seq_len=10)
    # a dim the engine has no rule for gets a default, and the warning says what was assumed
    assert guessed.input_shape["extra"] == [2, 10, 4]  # the sequence length, as a rank-3 feature input
    assert any("'extra'" in w and "'height' = 10" in w and "--input extra=" in w for w in guessed.warnings)
    out = build_inputs(spec, 2, seq_len=10, overrides={"dims": {"height": 7}})
    assert not any("'extra'" in w for w in out.warnings)
    assert out.input_shape == {"input_ids": [2, 10], "attention_mask": [2, 10], "extra": [2, 7, 4]}
    assert out.values["input_ids"].max() < 300
    assert (out.values["attention_mask"] == 1).all()


def test_bad_batch_size():
    with pytest.raises(LoadError, match="batch size"):
        build_inputs(TEXT, 0)
