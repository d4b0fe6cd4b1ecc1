"""Every family of model people bring, from a tiny config of each, audited end to end.

Each model is saved as a Hugging Face folder (config.json + safetensors, and a
preprocessor_config.json where the family ships one), profiled through the engine, and its
figures are checked against ones computed independently of the engine:
- parameters: the sum of ``numel`` over the model transformers itself loads;
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` run directly on the same weights loaded
  with ``attn_implementation="eager"``, where attention is plain matmuls the counter sees (the
  engine counts the fused SDPA kernel with its own formula, so the two routes differ).
"""

import json

import pytest

from tests.engine import models as m
from workers.engine.profile import profile_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def _tiny_resnet_config(T, **kw):
    return T.ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], **kw)


def _configs():
    import transformers as T

    return {
        "resnet": (T.ResNetForImageClassification, _tiny_resnet_config(T, num_labels=3), None),
        "convnext": (T.ConvNextForImageClassification,
                     T.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=32, num_labels=3),
                     None),
        "vit": (T.ViTForImageClassification,
                T.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            image_size=32, patch_size=8, num_labels=3), None),
        "swin": (T.SwinForImageClassification,
                 T.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4,
                              num_labels=3), None),
        # DETR: a transformers ResNet backbone (no timm, nothing pretrained); its image processor
        # resizes the shortest edge, which the preprocessor config here sets to 64
        "detr": (T.DetrForObjectDetection,
                 T.DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                              backbone_config=_tiny_resnet_config(T, out_features=["stage2"]), d_model=16,
                              encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                              encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=5, num_labels=3),
                 {"image_processor_type": "DetrImageProcessor", "size": {"shortest_edge": 64, "longest_edge": 96}}),
        "wav2vec2": (T.Wav2Vec2ForCTC,
                     T.Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                      conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2),
                                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=12),
                     {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": 8000, "feature_size": 1}),
        "whisper": (T.WhisperForConditionalGeneration,
                    T.WhisperConfig(vocab_size=100, num_mel_bins=8, d_model=16, encoder_layers=1, decoder_layers=1,
                                    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                    decoder_ffn_dim=32, max_source_positions=16, max_target_positions=32,
                                    pad_token_id=1, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2),
                    {"feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 8, "sampling_rate": 16000}),
        "ast": (T.ASTForAudioClassification,
                T.ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            max_length=32, num_mel_bins=16, patch_size=8, frequency_stride=8, time_stride=8,
                            num_labels=3), None),
        "bert": (T.BertForSequenceClassification,
                 T.BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=64, num_labels=2), None),
        "t5": (T.T5ForConditionalGeneration,
               T.T5Config(vocab_size=200, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2,
                          decoder_start_token_id=0), None),
    }


# family: (input shapes at batch 1, whether an assumption must be recorded, extra options)
EXPECTED = {
    "resnet": ({"pixel_values": [1, 3, 224, 224]}, "assumed 224x224", {}),  # ResNetConfig has no image size
    "convnext": ({"pixel_values": [1, 3, 32, 32]}, None, {}),
    "vit": ({"pixel_values": [1, 3, 32, 32]}, None, {}),
    "swin": ({"pixel_values": [1, 3, 32, 32]}, None, {}),
    "detr": ({"pixel_values": [1, 3, 64, 64]}, None, {}),
    "wav2vec2": ({"input_values": [1, 8000]}, "1 s (8000 samples at 8000 Hz)", {}),
    # Whisper's encoder takes exactly 2 x max_source_positions frames of num_mel_bins; it generates
    # from audio features, so the default scenario is forward passes (not token generation)
    "whisper": ({"input_features": [1, 8, 32], "decoder_input_ids": [1, 32]}, None, {}),
    "ast": ({"input_values": [1, 32, 16]}, None, {}),
    "bert": ({"input_ids": [1, 64], "attention_mask": [1, 64]}, None, {}),
    "t5": ({"input_ids": [1, 128], "attention_mask": [1, 128], "decoder_input_ids": [1, 128]}, None,
           {"scenario": "forward"}),
}


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("families")
    out = {}
    for name, (cls, config, preprocessor) in _configs().items():
        torch.manual_seed(0)
        folder = root / name
        cls(config).eval().save_pretrained(folder, safe_serialization=True)
        if preprocessor:
            (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
        out[name] = (cls, folder)
    return out


def _independent_counts(cls, folder, shapes):
    """(parameters, FLOPs at batch 1) computed without the engine."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = cls.from_pretrained(folder, attn_implementation="eager").eval()
    params = sum(p.numel() for p in model.parameters())
    values = {}
    for name, shape in shapes.items():
        if name.endswith("ids"):
            values[name] = torch.randint(4, 100, shape)
        elif name == "attention_mask":
            values[name] = torch.ones(shape, dtype=torch.long)
        else:
            values[name] = torch.randn(shape)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(**values)
    return params, counter.get_total_flops()


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_family_is_audited_end_to_end(family_dirs, family):
    cls, folder = family_dirs[family]
    shapes, assumption, extra = EXPECTED[family]
    doc = profile_model(folder, options=dict(m.FAST_OPTIONS, **extra))
    (base,) = doc["variants"]
    assert base["status"] == "succeeded", base["error"]
    (measurement,) = base["measurements"]
    assert measurement["input_shape"] == shapes
    assert measurement["latency_ms_p50"] > 0 and measurement["energy_j_per_inference"] > 0
    params, flops = _independent_counts(cls, folder, shapes)
    assert base["params"] == params > 0
    assert base["flops"] == flops > 0
    assert base["macs"] == flops // 2
    if assumption:
        assert any(assumption in w and "--input" in w for w in doc["warnings"]), doc["warnings"]
    else:
        assert not any("assumed" in w for w in doc["warnings"]), doc["warnings"]


def test_a_preprocessor_crop_size_sets_a_sizeless_vision_config(family_dirs, tmp_path):
    """ResNetConfig has no image size; the image processor's crop size is what the model sees."""
    import shutil

    _, folder = family_dirs["resnet"]
    copy = shutil.copytree(folder, tmp_path / "resnet")
    (copy / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 40}, "crop_size": 32}))
    doc = profile_model(copy, options=m.FAST_OPTIONS)
    (base,) = doc["variants"]
    assert base["measurements"][0]["input_shape"] == {"pixel_values": [1, 3, 32, 32]}
    assert not any("assumed" in w for w in doc["warnings"])


def test_a_shape_override_reaches_a_family_input(family_dirs):
    """The override the ResNet error message once suggested, and which did nothing: it works."""
    _, folder = family_dirs["resnet"]
    doc = profile_model(folder, batch_sizes=(2,),
                        options=dict(m.FAST_OPTIONS, input_overrides={"shape": {"pixel_values": [3, 48, 40]}}))
    (base,) = doc["variants"]
    assert base["measurements"][0]["input_shape"] == {"pixel_values": [2, 3, 48, 40]}
    assert not any("assumed" in w for w in doc["warnings"])
