"""The registry of input kinds (``@input_kind(kind)``): how each kind of input spec declares
its inputs (name, per-sample shape, dtype, integer range) before ``inputs.build_inputs``
applies the request's overrides and draws the tensors. Importing this module registers the
built-in kinds: text, vision, audio-waveform, audio-spectrogram, tensors."""

from __future__ import annotations

from typing import Callable

from .errors import LoadError
from .inputs_common import DEFAULT_AUDIO_SAMPLES, DEFAULT_CHANNELS, DEFAULT_IMAGE_SIZE, default_seq_len

# A kind turns a spec into *declared inputs*: [{"name", "shape" (one sample), "dtype", "low",
# "high" (integer ranges), "fill" ("ones" for masks)}] plus warnings saying what was assumed.
# ``build_inputs`` applies the request's overrides to them and draws the tensors.

INPUT_KINDS: dict[str, Callable[[dict, int | None, dict], tuple[list[dict], list[str]]]] = {}


def input_kind(name: str):
    """Register the function that declares the inputs of spec kind ``name``."""

    def register(fn):
        INPUT_KINDS[name] = fn
        return fn

    return register


def _token_ids(name: str, length: int, spec: dict, overrides: dict) -> dict:
    vocab = int(overrides.get("vocab_size") or spec.get("vocab_size") or 0)
    if vocab < 2:
        raise LoadError("the model's config has no usable vocab_size; give input_overrides {'vocab_size': N}")
    low = int(spec.get("low") or 0)
    return {"name": name, "shape": [length], "dtype": "int64", "low": low if low < vocab else 0, "high": vocab}


@input_kind("text")
def _text_kind(spec, seq_len, overrides):
    """``input_ids`` + ``attention_mask`` (+ ``decoder_input_ids`` for encoder-decoders)."""
    seq_len, warnings = default_seq_len(spec.get("max_positions"), seq_len)
    declared = [_token_ids("input_ids", seq_len, spec, overrides),
                {"name": "attention_mask", "shape": [seq_len], "dtype": "int64", "fill": "ones"}]
    if spec.get("encoder_decoder"):
        declared.append(_token_ids("decoder_input_ids", seq_len, spec, overrides))
    return declared, warnings


def _as_hw(size) -> tuple[int, int]:
    if isinstance(size, (list, tuple)):
        return (int(size[0]), int(size[-1]))
    return (int(size), int(size))


@input_kind("vision")
def _vision_kind(spec, seq_len, overrides):
    """``pixel_values`` [channels, height, width]."""
    channels = int(overrides.get("num_channels") or spec.get("num_channels") or DEFAULT_CHANNELS)
    h, w = _as_hw(overrides.get("image_size") or spec.get("image_size") or DEFAULT_IMAGE_SIZE)
    warnings = []
    name = spec.get("input_name") or "pixel_values"
    if spec.get("assumed") and not overrides.get("image_size") and name not in (overrides.get("shape") or {}):
        warnings.append(f"{spec['assumed']}; set it with --input {name}="
                        f"{channels}xHxW (input_overrides image_size)")
    return [{"name": name, "shape": [channels, h, w], "dtype": "float32"}], warnings


@input_kind("audio-waveform")
def _waveform_kind(spec, seq_len, overrides):
    """``input_values`` [samples]: raw audio (Wav2Vec2, HuBERT, WavLM...)."""
    samples = int(spec.get("samples") or DEFAULT_AUDIO_SAMPLES)
    name = spec.get("input_name") or "input_values"
    warnings = [f"{spec['assumed']}; set it with --input {name}=SAMPLES"] \
        if spec.get("assumed") and name not in (overrides.get("shape") or {}) else []
    return [{"name": spec.get("input_name") or "input_values", "shape": [samples], "dtype": "float32"}], warnings


@input_kind("audio-spectrogram")
def _spectrogram_kind(spec, seq_len, overrides):
    """A log-mel spectrogram: ``input_values`` [frames, mel bins] (AST) or ``input_features``
    [mel bins, frames] (Whisper), plus ``decoder_input_ids`` for encoder-decoders."""
    dims = [int(d) for d in spec["features_shape"]]
    declared = [{"name": spec.get("input_name") or "input_features", "shape": dims, "dtype": "float32"}]
    warnings = [f"{spec['assumed']}; set it with --input {declared[0]['name']}={'x'.join(map(str, dims))}"] \
        if spec.get("assumed") and declared[0]["name"] not in (overrides.get("shape") or {}) else []
    if spec.get("encoder_decoder"):
        length, more = default_seq_len(spec.get("max_positions"), seq_len)
        declared.append(_token_ids("decoder_input_ids", length, spec, overrides))
        warnings += more
    return declared, warnings


@input_kind("tensors")
def _tensors_kind(spec, seq_len, overrides):
    """Inputs a builder or an exported program declares, as given."""
    declared = []
    for item in spec.get("inputs") or []:
        d = {"name": item["name"], "shape": list(item["shape"]), "dtype": item.get("dtype", "float32")}
        if item.get("vocab_size"):
            d["high"] = int(item["vocab_size"])
        declared.append(d)
    return declared, []


