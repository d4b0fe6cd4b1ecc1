"""The Hugging Face family registry (``@hf_family(main_input_name)``): how a model built into
transformers gets its input spec, dispatched on its class's ``main_input_name``, with sizes
from its config, then ``preprocessor_config.json``, then a default by model family (recorded
as an assumption). Importing this module registers the built-in families."""

from __future__ import annotations

from typing import Any, Callable

from .inputs_common import DEFAULT_CHANNELS, DEFAULT_IMAGE_SIZE
from .inputs_kinds import _as_hw

# Image sizes by model type where neither the config nor a preprocessor config gives one: the
# resolution the family's published checkpoints are preprocessed to.
FAMILY_IMAGE_SIZE = {
    "detr": 800, "conditional_detr": 800, "deformable_detr": 800, "table-transformer": 800,
    "dab-detr": 800, "rt_detr": 640, "rt_detr_v2": 640, "d_fine": 640, "yolos": (512, 864),
    "efficientnet": 600, "mobilevit": 256, "mobilevitv2": 256, "segformer": 512, "dpt": 384,
}
DEFAULT_AUDIO_SECONDS = 1.0
# Speech2Text-style feature inputs: 100 frames per second (10 ms hop)
DEFAULT_FEATURE_FRAMES = 300

HF_FAMILIES: dict[str, Callable[[Any, dict], dict]] = {}


def hf_family(main_input_name: str):
    """Register how a Hugging Face model whose ``main_input_name`` is this gets its input spec."""

    def register(fn):
        HF_FAMILIES[main_input_name] = fn
        return fn

    return register


def read_preprocessor_config(folder) -> dict:
    """``preprocessor_config.json`` of a Hugging Face folder as a dict ({} when absent or bad).
    Plain JSON: nothing in it is run."""
    import json
    from pathlib import Path

    if folder is None:
        return {}
    path = Path(folder) / "preprocessor_config.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def hf_input_spec(config, model=None, folder=None) -> dict:
    """The input spec of a Hugging Face model built into transformers.

    Dispatched on the model class's ``main_input_name`` (``input_ids``, ``pixel_values``,
    ``input_values``, ``input_features``) through ``HF_FAMILIES``; sizes come from the config,
    then ``preprocessor_config.json`` in ``folder``, then a default by model family, recorded
    as an assumption when used.
    """
    main = getattr(model, "main_input_name", None) if model is not None else None
    if main is None:
        main = "input_ids" if getattr(config, "vocab_size", None) else (
            "pixel_values" if getattr(config, "image_size", None) is not None else None)
    family = HF_FAMILIES.get(main)
    if family is None:
        return {"kind": "unknown", "input_name": main}
    return family(config, read_preprocessor_config(folder))


@hf_family("input_ids")
def _hf_text(config, pre: dict) -> dict:
    vocab = getattr(config, "vocab_size", None)
    if not vocab:
        return {"kind": "unknown", "input_name": "input_ids"}
    special = [
        getattr(config, attr, None)
        for attr in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id",
                     "unk_token_id", "mask_token_id")
    ]
    special = [i for i in special if isinstance(i, int) and not isinstance(i, bool) and i < int(vocab) // 2]
    return {
        "kind": "text",
        "vocab_size": int(vocab),
        "max_positions": getattr(config, "max_position_embeddings", None),
        "low": (max(special) + 1) if special else 0,
        "encoder_decoder": bool(getattr(config, "is_encoder_decoder", False)),
    }


def _size_from_preprocessor(pre: dict):
    """(height, width) or a square size from an image processor's crop_size / size."""
    for key in ("crop_size", "size"):
        value = pre.get(key)
        if isinstance(value, int) and value > 0:
            return value
        if isinstance(value, dict):
            if value.get("height") and value.get("width"):
                return (int(value["height"]), int(value["width"]))
            if value.get("shortest_edge"):
                return int(value["shortest_edge"])
    return None


@hf_family("pixel_values")
def _hf_vision(config, pre: dict) -> dict:
    model_type = getattr(config, "model_type", "")
    spec = {"kind": "vision", "num_channels": int(getattr(config, "num_channels", None) or DEFAULT_CHANNELS)}
    size = getattr(config, "image_size", None)  # position embeddings may be tied to it: first
    if size is None:
        size = _size_from_preprocessor(pre)
    if size is None:
        size = FAMILY_IMAGE_SIZE.get(model_type, DEFAULT_IMAGE_SIZE)
        h, w = _as_hw(size)
        spec["assumed"] = (f"the {type(config).__name__} gives no image size and there is no preprocessor_config.json "
                           f"with one; assumed {h}x{w} (the {model_type or 'vision'} default)")
    spec["image_size"] = list(size) if isinstance(size, (list, tuple)) else int(size)
    return spec


@hf_family("input_values")
def _hf_input_values(config, pre: dict) -> dict:
    """Raw waveforms (Wav2Vec2, HuBERT, WavLM, ...) or, where the config has mel bins and a
    length, a spectrogram (Audio Spectrogram Transformer)."""
    mel = getattr(config, "num_mel_bins", None)
    frames = getattr(config, "max_length", None)
    if mel and frames:
        return {"kind": "audio-spectrogram", "input_name": "input_values", "features_shape": [int(frames), int(mel)]}
    rate = int(pre.get("sampling_rate") or 16000)
    if pre.get("max_length"):
        return {"kind": "audio-waveform", "input_name": "input_values", "samples": int(pre["max_length"]),
                "sampling_rate": rate}
    samples = int(rate * DEFAULT_AUDIO_SECONDS)
    return {"kind": "audio-waveform", "input_name": "input_values", "samples": samples, "sampling_rate": rate,
            "assumed": f"audio length assumed {DEFAULT_AUDIO_SECONDS:g} s ({samples} samples at {rate} Hz)"}


@hf_family("input_features")
def _hf_input_features(config, pre: dict) -> dict:
    """Log-mel features: Whisper-style [mel bins, frames] (frames fixed by the encoder's
    positions), or Speech2Text-style [frames, features]."""
    spec = {"kind": "audio-spectrogram", "input_name": "input_features",
            "encoder_decoder": bool(getattr(config, "is_encoder_decoder", False)),
            "vocab_size": getattr(config, "vocab_size", None),
            "max_positions": getattr(config, "max_target_positions", None)}
    special = [getattr(config, a, None) for a in ("pad_token_id", "bos_token_id", "eos_token_id",
                                                  "decoder_start_token_id")]
    special = [i for i in special if isinstance(i, int) and spec["vocab_size"] and i < int(spec["vocab_size"]) // 2]
    spec["low"] = (max(special) + 1) if special else 0
    mel = getattr(config, "num_mel_bins", None) or pre.get("feature_size")
    positions = getattr(config, "max_source_positions", None)
    if mel and positions and getattr(config, "model_type", "") == "whisper":
        # the encoder's two convolutions halve the frames; it refuses any other length
        spec["features_shape"] = [int(mel), 2 * int(positions)]
        return spec
    features = getattr(config, "input_feat_per_channel", None) or pre.get("feature_size") or mel
    if not features:
        return {"kind": "unknown", "input_name": "input_features"}
    channels = int(getattr(config, "input_channels", 1) or 1)
    spec["features_shape"] = [DEFAULT_FEATURE_FRAMES, int(features) * channels]
    spec["assumed"] = f"audio length assumed {DEFAULT_FEATURE_FRAMES} feature frames (3 s at a 10 ms hop)"
    return spec


