"""Serving a workload at a load (issue 20, engine slice): workloads, continuous batching, figures."""

import json
import math

import pytest

from workers.engine.serving import workload as wl
from workers.engine.meters import TdpEstimateMeter
from workers.engine.serving import measure_serving
from workers.engine.serving.figures import RequestClock, Slo, level_figures
from workers.engine.serving.workload import WorkloadError, parse_workload, prompt_ids

FIGURES = [f"{name}_ms_p{q}" for name in ("ttft", "tpot", "itl", "e2e") for q in (50, 95, 99)] + [
    "requests_per_s", "output_tokens_per_s", "energy_j_per_output_token", "energy_j_per_request",
    "goodput_requests_per_s", "energy_j_per_good_token", "steady_window_s", "steady_requests",
    "steady_output_tokens", "backend", "backend_version"]


# --- tiny models, built from configs (no downloads) ------------------------------------------


def _word_tokenizer():
    """A word-level tokenizer over the serving corpus's first paragraph (unknown words: [UNK])."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = wl.CORPUS_PATH.read_text().split("\n\n")[0].replace(",", " ").replace(".", " ").split()
    vocab = {"[PAD]": 0, "<s>": 1, "</s>": 2, "[UNK]": 3}
    for word in sorted(set(words))[:200]:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="</s>", pad_token="[PAD]")


def _gpt2():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=256, n_embd=32, n_layer=2, n_head=2, n_positions=48,
                                      bos_token_id=1, eos_token_id=2)).eval()


def _llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        bos_token_id=1, eos_token_id=2, pad_token_id=0)).eval()


def _qwen2():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        bos_token_id=1, eos_token_id=2)).eval()


def _mixed_workload(n=14, with_text=False):
    """Prompts of 3 to 22 tokens and 2 to 13 new tokens, all different combinations."""
    lines = []
    for i in range(n):
        new = 2 + (i * 5) % 12
        if with_text and i % 3 == 0:
            lines.append({"prompt": "the keeper climbed the wooden stairs to read the instruments " * (1 + i % 2),
                          "max_new_tokens": new})
        else:
            lines.append({"prompt_tokens": 3 + (i * 7) % 20, "max_new_tokens": new})
    return parse_workload("\n".join(json.dumps(line) for line in lines))


# --- workloads -------------------------------------------------------------------------------


def test_a_workload_over_the_size_cap_is_refused(monkeypatch):
    monkeypatch.setattr(wl, "MAX_BYTES", 2 * 1024 * 1024)
    with pytest.raises(WorkloadError, match="the workload is over 2 MiB"):
        parse_workload('{"prompt": "' + "a" * (2 * 1024 * 1024) + '", "max_new_tokens": 4}')


@pytest.mark.parametrize("text, reason", [
    ("", "the workload is empty"),
    ("\n  \n", "the workload is empty"),
    ('{"prompt": "a", "max_new_tokens": 4}\n{"prompt": "b", max_new_tokens: 4}', "line 2: not valid JSON"),
    ('{"prompt": "a", "max_new_tokens": 0}', "line 1: max_new_tokens must be a positive integer"),
    ('{"prompt": "a", "max_new_tokens": -3}', "line 1: max_new_tokens must be a positive integer"),
    ('{"prompt": "a"}', "line 1: max_new_tokens must be a positive integer"),
    ('{"prompt": "a", "prompt_tokens": 4, "max_new_tokens": 4}', "line 1: give exactly one of prompt"),
    ('{"prompt": "  ", "max_new_tokens": 4}', "line 1: prompt must be non-empty text"),
    ('{"prompt_tokens": [1, -2], "max_new_tokens": 4}', "line 1: prompt_tokens must be a positive length"),
    ('[1, 2]', "line 1: a request is a JSON object"),
    ('{"prompt": "a", "max_new_tokens": 4, "temperature": 1}', "line 1: unknown field(s) temperature"),
])
def test_bad_workloads_are_refused_with_their_line_and_reason(text, reason):
    with pytest.raises(WorkloadError, match="^" + reason.replace("(", r"\(").replace(")", r"\)")):
        parse_workload(text)


def test_a_workload_too_long_for_the_models_context_is_refused_with_the_line():
    config = {"vocab_size": 256, "n_positions": 48}
    requests = parse_workload('{"prompt_tokens": 10, "max_new_tokens": 8}\n\n'
                              '{"prompt_tokens": 40, "max_new_tokens": 9}')
    with pytest.raises(WorkloadError, match=r"line 3: prompt 40 \+ new 9 tokens = 49 do not fit the model's context "
                                            r"of 48 positions \(n_positions"):
        prompt_ids(requests, config)
    with pytest.raises(WorkloadError, match="line 1: token id 300 is beyond the model's vocabulary of 256"):
        prompt_ids(parse_workload('{"prompt_tokens": [5, 300], "max_new_tokens": 2}'), config)
    with pytest.raises(WorkloadError, match="line 1: the prompt is text but the model has no tokenizer"):
        prompt_ids(parse_workload('{"prompt": "hello", "max_new_tokens": 2}'), config)
    with pytest.raises(WorkloadError, match="this model is encoder-decoder"):
        prompt_ids(requests, {"vocab_size": 256, "is_encoder_decoder": True})
    assert [len(p) for p in prompt_ids(requests[:1], config)] == [10]


def test_the_shipped_default_workload_has_its_documented_length_distribution():
    assert wl.DEFAULT_WORKLOAD_PATH.read_text() == wl.build_default_workload(), "regenerate: python -m " \
                                                                                "workers.engine.serving.workload"
    stats = wl.length_statistics(wl.load_workload())
    # the figures stated in workers/engine/data/README.md
    assert stats == {"requests": 64,
                     "prompt": {"min": 9, "p10": 16, "median": 46, "p90": 130, "max": 400},
                     "max_new_tokens": {"min": 13, "p10": 33, "median": 69, "p90": 234, "max": 374}}
    readme = (wl.DATA / "README.md").read_text()
    assert "9 / 16 / 46 / 130 / 400" in readme and "13 / 33 / 69 / 234 / 374" in readme
    lo, hi = wl.DEFAULT_PROMPT_WORDS[2:]
    assert all(lo <= len(r.prompt.split()) <= hi for r in wl.load_workload())


# --- the figures, from known clocks ----------------------------------------------------------


def test_energy_is_attributed_by_tokens_and_goodput_counts_requests_meeting_both_targets():
    # window [1, 3): request 0 is wholly inside; 1 straddles its start; 2 its end; 3 is outside
    clocks = [RequestClock(0, 4, 3, 1.0, [1.1, 1.2, 1.3]),     # ttft 100 ms, tpot 100 ms
              RequestClock(1, 6, 4, 0.0, [0.5, 0.9, 1.5, 2.0]),  # ttft 500 ms, prompt outside the window
              RequestClock(2, 2, 2, 2.5, [2.6, 3.5]),            # ttft 100 ms, tpot 900 ms
              RequestClock(3, 5, 2, 3.5, [3.6, 3.7])]
    f = level_figures(clocks, start=1.0, end=3.0, energy_j=20.0, slo=Slo(ttft_ms=200, tpot_ms=500))
    # tokens in the window: r0 4 prompt + 3 out, r1 2 out, r2 2 prompt + 1 out = 12 (6 of them output)
    assert [r["tokens_in_window"] for r in f["requests"]] == [7, 2, 3, 0]
    assert [r["energy_j"] for r in f["requests"]] == pytest.approx([20 * 7 / 12, 20 * 2 / 12, 20 * 3 / 12, 0.0])
    assert sum(r["energy_j"] for r in f["requests"]) == pytest.approx(20.0)
    assert f["steady_output_tokens"] == 6 and f["energy_j_per_output_token"] == pytest.approx(20 / 6)
    equivalents = 7 / 7 + 2 / 10 + 3 / 4
    assert f["energy_j_per_request"] == pytest.approx(20 / equivalents)
    # completed inside: r0 and r1; only r0 meets both targets (r1's TTFT misses); r2 misses TPOT
    assert f["steady_requests"] == 2 and f["requests_per_s"] == pytest.approx(1.0)
    assert [r["met_slo"] for r in f["requests"]] == [True, False, False, True]
    assert f["goodput_requests_per_s"] == pytest.approx(0.5) and f["steady_good_requests"] == 1
    assert f["steady_good_output_tokens"] == 3 and f["energy_j_per_good_token"] == pytest.approx(20 / 3)
    assert f["ttft_ms_p50"] == pytest.approx(300.0) and f["e2e_ms_p50"] == pytest.approx(1150.0)
    assert f["itl_ms_p50"] == pytest.approx(400.0)  # gaps pooled: 100, 100 (r0), 400, 600, 500 (r1)


# --- serving on tiny models ------------------------------------------------------------------


@pytest.mark.parametrize("build", [_gpt2, _llama, _qwen2], ids=["gpt2", "llama", "qwen2"])
def test_a_mixed_workload_at_concurrency_1_and_4_produces_every_figure(build):
    model = build()
    text = build is _gpt2
    requests = _mixed_workload(with_text=text)
    slo = Slo(ttft_ms=60_000.0, tpot_ms=60_000.0)  # met by every request on any host: every figure exists
    levels = measure_serving(model, _word_tokenizer() if text else None, requests,
                             load_levels=[{"concurrency": 1}, {"concurrency": 4}], slo=slo,
                             meter=TdpEstimateMeter({}), options={"warmup_requests": 2})
    assert [lv["concurrency"] for lv in levels] == [1, 4]
    for level in levels:
        for name in FIGURES:
            assert level[name] is not None, name
            if not isinstance(level[name], str):
                assert math.isfinite(level[name]) and level[name] >= 0, name
        assert level["backend"] == "transformers-continuous-batching"
        assert level["steady_requests"] >= 1 and level["steady_output_tokens"] >= 1
        detail = level["requests"]
        # every request got exactly its max_new_tokens (EOS ignored)
        assert [r["output_tokens"] for r in detail] == [r.max_new_tokens for r in requests]
        assert [len(r["token_ms_from_arrival"]) for r in detail] == [r.max_new_tokens for r in requests]
        assert all(r["token_ms_from_arrival"][0] == pytest.approx(r["ttft_ms"], abs=1e-3) for r in detail)
        assert sum(r["energy_j"] for r in detail) == pytest.approx(level["energy_j_window"], rel=1e-9)
        good = [r for r in detail if r["completed_in_window"] and r["ttft_ms"] <= slo.ttft_ms
                and (r["tpot_ms"] is None or r["tpot_ms"] <= slo.tpot_ms)]
        assert level["steady_good_requests"] == len(good)
        assert level["goodput_requests_per_s"] == pytest.approx(len(good) / level["steady_window_s"])
        assert level["ttft_ms_p50"] <= level["ttft_ms_p95"] <= level["ttft_ms_p99"]
    # the steady window excludes the ramp (the first `concurrency` requests to complete) and the drain
    assert levels[0]["steady_requests"] == len(requests) - 1  # one in flight: the last completion closes it
    ramp = sorted(levels[1]["requests"], key=lambda r: r["end_ms_from_window_start"])[:4]
    assert all(r["end_ms_from_window_start"] < 0 and not r["completed_in_window"] for r in ramp)
    assert 1 <= levels[1]["steady_requests"] <= len(requests) - 4


def test_an_open_loop_request_rate_is_served_and_too_few_requests_for_a_concurrency_refused():
    model = _gpt2()
    requests = _mixed_workload(n=12)
    [level] = measure_serving(model, None, requests, load_levels=[{"request_rate": 6.0}], slo=Slo(ttft_ms=0.0),
                              meter=TdpEstimateMeter({}), options={"warmup_requests": 1})
    assert level["request_rate"] == 6.0 and "concurrency" not in level
    assert [r["output_tokens"] for r in level["requests"]] == [r.max_new_tokens for r in requests]
    assert level["steady_requests"] >= 1 and level["requests_per_s"] > 0
    # no request comes back in 0 ms: none is good, and there is no energy per good token
    assert level["goodput_requests_per_s"] == 0 and level["energy_j_per_good_token"] is None
    with pytest.raises(WorkloadError, match="12 requests are too few for concurrency 8"):
        measure_serving(model, None, requests, load_levels=[{"concurrency": 8}], meter=TdpEstimateMeter({}))


def test_workload_lines_are_split_at_newlines_only_and_oversized_numbers_are_refused_with_their_line():
    # U+2028 is legal inside a JSON string; splitting on it cut the line in two
    [request] = parse_workload(json.dumps({"prompt": "one\u2028two", "max_new_tokens": 3}, ensure_ascii=False))
    assert request.prompt == "one\u2028two"
    with pytest.raises(WorkloadError, match="line 2: not valid JSON"):
        parse_workload('{"prompt": "a", "max_new_tokens": 4}\n{"prompt_tokens": 1' + "0" * 5000 + ', "max_new_tokens": 4}')
    with pytest.raises(WorkloadError, match="line 1: a prompt of more than 32768 tokens is over the cap"):
        parse_workload('{"prompt_tokens": 1000000000, "max_new_tokens": 4}')
