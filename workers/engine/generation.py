"""The generation scenario: greedy decoding with the KV cache, a fixed prompt, exactly N new tokens.

Two parts are measured, each in its own windows by ``timing.Sampler`` (``rounds.GenerationWorkload``):

- ``prefill``: one ``generate`` call with ``max_new_tokens=1``: the forward pass over the whole
  prompt that builds the KV cache and yields the first new token (for seq2seq models: the
  encoder once, then the first decoder step). Its latency is the time to first token (TTFT).
- ``request``: one ``generate`` call with ``min_new_tokens = max_new_tokens = N``: the same
  prefill and then N - 1 decode steps, each one token per sequence through the cache. EOS
  cannot end it early (``min_new_tokens`` masks EOS until N tokens exist), so every request has
  exactly N new tokens; the plan checks that on every call.

Decoding is ``model.generate`` itself (greedy: ``do_sample=False, num_beams=1``, no repetition
penalty, no n-gram blocking), i.e. what a user of transformers runs; ``bench/generation.py``
compares the engine's figures with a plain timed ``model.generate`` loop. Inside each request a
streamer notes the clock when the first token is out and when the last one is: the time per
output token (TPOT) of that request is (last - first) / (N - 1). ``generate`` waits for every
step's token on the host anyway (its stop check reads it), so on a GPU these instants are the
device's, not the launch's.

Energy: the prefill's windows give J per prefill, the request's J per request (both for the whole
batch); the decode's energy is their difference. A compiled variant (``torch.compile`` recipes)
generates through transformers' own compiled path: a static KV cache and ``compile_config``, the
way transformers documents compiled generation (compiling the module alone would leave
``generate`` running it eagerly, since ``generate`` calls the original module).

Prompts are real English text (``PASSAGE``, shipped here) tokenised by the model's own tokenizer
when the upload has one that loads without running code, repeated or cut to exactly
``prompt_tokens``; otherwise seeded random token ids. Every sequence of a batch has the same
length (no padding), each starting at a different place in the passage.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import LoadError

MAX_NEW_TOKENS = 1024
MIN_NEW_TOKENS = 2  # the first token comes out of the prefill; TPOT needs at least one decode step
BACKENDS = ("transformers", "vllm")
GENERATIVE_TASKS = ("text-generation", "text2text-generation")
RANDOM_SEED = 0
ROW_OFFSET_TOKENS = 7  # sequence i of a batch starts i x this many tokens further into the passage

# Original prose written for this project (no licence attached to it); about 330 words.
PASSAGE = (
    "The old weather station stood on a low hill above the harbour, and every morning at six the "
    "keeper climbed the wooden stairs to read the instruments. He wrote the pressure, the wind and "
    "the temperature into a ledger with a green cover, the same kind of ledger his mother had used "
    "before him. Nobody had asked him to keep the records for many years; the forecasts now came "
    "from satellites and from computers in a city he had visited only once. Still, he went on. "
    "He liked the quiet of the hour, the gulls arguing on the roof of the fish market, the first "
    "ferry sounding its horn as it rounded the point. In winter the stairs were slippery with "
    "frost and he carried a lantern; in summer the sun was already warm on the railings. One "
    "spring a student from the university came to see him. She was studying how the climate of "
    "the coast had changed over a century, and she had heard that somebody on the hill had "
    "written down the weather every day since before the war. He showed her the shelf of "
    "ledgers, forty-three of them, the early ones in his mother's careful hand. She photographed "
    "every page, and in the evenings she typed the numbers into a spreadsheet, checking each row "
    "twice. When she had finished, the line on her chart rose slowly from left to right, with "
    "small waves for the cold years and the warm ones. The keeper looked at it for a long time. "
    "He said that he had always known the winters were shorter now, but that he had not believed "
    "his own memory until he saw the line. The student thanked him and promised to send him her "
    "paper when it was printed. It arrived in the autumn, in a brown envelope, and on the first "
    "page, under the title, she had thanked the station and both of its keepers by name. He put "
    "it on the shelf beside the ledgers and went on climbing the stairs each morning at six."
)

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model",
                    "vocab.txt", "sentencepiece.bpe.model")
_CONTEXT_KEYS = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length", "seq_length")


# --- what can generate -----------------------------------------------------------------------


def unwrap(module):
    """(the transformers model, whether it was wrapped by ``torch.compile``)."""
    inner = getattr(module, "_orig_mod", None)
    if inner is not None:
        return inner, True
    return module, False


def is_generative(loaded) -> bool:
    """A Hugging Face causal LM or seq2seq model whose class can ``generate`` from token ids
    (a speech seq2seq model such as Whisper generates from audio features: not this scenario)."""
    if loaded.kind != "torch" or loaded.format != "hf" or loaded.task not in GENERATIVE_TASKS:
        return False
    model, _ = unwrap(loaded.module)
    if getattr(model, "main_input_name", "input_ids") != "input_ids":
        return False
    can = getattr(model, "can_generate", None)
    try:
        return bool(callable(getattr(model, "generate", None)) and (can is None or can()))
    except Exception:
        return False


def _encoder_decoder(loaded) -> bool:
    return bool(loaded.config.get("is_encoder_decoder"))


def _first_int(config: dict, keys) -> tuple[str, int] | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return key, value
    return None


def check_lengths(loaded, prompt_tokens: int, new_tokens: int) -> None:
    """Raise LoadError, with what to change, when this model cannot generate at these lengths."""
    config = loaded.config
    if not isinstance(prompt_tokens, int) or prompt_tokens < 1:
        raise LoadError(f"prompt tokens must be a positive integer, got {prompt_tokens!r}")
    if not isinstance(new_tokens, int) or new_tokens < MIN_NEW_TOKENS:
        raise LoadError(f"new tokens must be at least {MIN_NEW_TOKENS} (the first comes out of the prefill; the "
                        f"time per output token needs at least one decode step), got {new_tokens!r}")
    if new_tokens > MAX_NEW_TOKENS:
        raise LoadError(f"new tokens {new_tokens} is over the cap of {MAX_NEW_TOKENS} per sequence")
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or vocab < 2:
        raise LoadError(f"the config of {loaded.architecture} has no vocab_size, which generation needs")
    if _encoder_decoder(loaded):
        if config.get("decoder_start_token_id") is None and config.get("bos_token_id") is None:
            raise LoadError(f"the config of {loaded.architecture} has neither decoder_start_token_id nor "
                            "bos_token_id, so its decoder has no first token to start from")
        limit = _first_int(config, _CONTEXT_KEYS)
        if limit is not None:
            key, n = limit
            if prompt_tokens > n:
                raise LoadError(f"the prompt of {prompt_tokens} tokens is longer than the encoder's context of "
                                f"{n} positions ({key} in config.json)")
            if new_tokens + 1 > n:
                raise LoadError(f"{new_tokens} new tokens (+1 start token) do not fit the decoder's {n} "
                                f"positions ({key} in config.json)")
        return
    limit = _first_int(config, _CONTEXT_KEYS)
    if limit is not None:
        key, n = limit
        if prompt_tokens > n:
            raise LoadError(f"the prompt of {prompt_tokens} tokens is longer than the model's context of {n} "
                            f"positions ({key} in config.json)")
        if prompt_tokens + new_tokens > n:
            raise LoadError(f"prompt {prompt_tokens} + new {new_tokens} tokens = {prompt_tokens + new_tokens} "
                            f"do not fit the model's context of {n} positions ({key} in config.json); "
                            "shorten the prompt or generate fewer tokens")


def scenario(loaded, options: dict) -> dict:
    """The result's ``scenario`` entry for a generative model; raises LoadError on bad lengths,
    an unknown backend, or vLLM asked for where it is not installed."""
    try:
        prompt_tokens, new_tokens = int(options["prompt_tokens"]), int(options["new_tokens"])
    except (TypeError, ValueError):
        raise LoadError(f"prompt tokens and new tokens must be integers, got {options.get('prompt_tokens')!r} "
                        f"and {options.get('new_tokens')!r}") from None
    check_lengths(loaded, prompt_tokens, new_tokens)
    backend = str(options.get("generation_backend") or "transformers").strip().lower()
    if backend not in BACKENDS:
        raise LoadError(f"unknown generation backend {backend!r}; one of {', '.join(BACKENDS)}")
    if backend == "vllm":
        from . import vllm_backend

        vllm_backend.require(loaded)
    _, source = prompt_token_ids(loaded, prompt_tokens)
    return {"kind": "generation", "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "backend": backend,
            "prompt_source": source}


# --- prompts ---------------------------------------------------------------------------------


def prompt_warning(scenario: dict) -> str | None:
    """A run warning when the upload has a tokenizer the prompts could not come from."""
    source = scenario.get("prompt_source") or ""
    if not source.startswith("random token ids") or source.endswith("the upload has no tokenizer"):
        return None
    return f"prompts are {source}; a dense model does the same work per token whichever tokens they are"

_PROMPT_CACHE: dict = {}


def _load_tokenizer(folder: Path):
    """The upload's tokenizer, without running code from it; (tokenizer, None) or (None, why not)."""
    if folder is None or not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        return None, "the upload has no tokenizer"
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True), None
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        return None, f"its tokenizer could not be loaded safely (trust_remote_code off): {type(exc).__name__}: {text}"


def prompt_token_ids(loaded, prompt_tokens: int) -> tuple[list[int], str]:
    """(a cyclic stream of at least ``prompt_tokens`` ids to cut prompts from, where they came from).

    Cached per model folder, length and vocabulary: every variant and batch size uses the same text."""
    vocab = int(loaded.config.get("vocab_size") or 0)
    key = (str(loaded.source_dir), prompt_tokens, vocab)
    if key in _PROMPT_CACHE:
        return _PROMPT_CACHE[key]
    tokenizer, why = _load_tokenizer(loaded.source_dir)
    ids: list[int] = []
    if tokenizer is not None:
        try:
            ids = list(tokenizer(PASSAGE, add_special_tokens=False)["input_ids"])
        except Exception as exc:
            why = f"its tokenizer failed on the prompt text: {type(exc).__name__}"
        if ids and vocab and max(ids) >= vocab:
            why, ids = f"its tokenizer gives ids up to {max(ids)}, beyond the model's vocabulary of {vocab}", []
        elif tokenizer is not None and not ids and why is None:
            why = "its tokenizer gave no tokens for the prompt text"
    if ids:
        name = type(tokenizer).__name__
        source = (f"English text ({len(ids)} tokens of the shipped passage, {name}), "
                  f"repeated or cut to {prompt_tokens} tokens")
        bos = getattr(tokenizer, "bos_token_id", None)
        if not _encoder_decoder(loaded) and isinstance(bos, int) and _adds_bos(tokenizer, bos):
            ids = [bos] + ids  # as the tokenizer itself would start a prompt
    else:
        import torch

        low = int((loaded.input_spec or {}).get("low") or 0)
        low = low if low < vocab - 1 else 0
        gen = torch.Generator().manual_seed(RANDOM_SEED)
        ids = torch.randint(low, max(vocab, low + 1), (max(prompt_tokens, 256),), generator=gen).tolist()
        source = f"random token ids (seed {RANDOM_SEED}): {why}"
    _PROMPT_CACHE[key] = (ids, source)
    return ids, source


def _adds_bos(tokenizer, bos: int) -> bool:
    try:
        return tokenizer("a")["input_ids"][:1] == [bos]
    except Exception:
        return False


def prompt_batch(loaded, batch_size: int, prompt_tokens: int):
    """A (batch, prompt_tokens) LongTensor on the model's device; row i starts further into the text."""
    import torch

    ids, _ = prompt_token_ids(loaded, prompt_tokens)
    n = len(ids)
    rows = []
    for i in range(batch_size):
        start = (i * ROW_OFFSET_TOKENS) % n
        rows.append([ids[(start + j) % n] for j in range(prompt_tokens)])
    return torch.tensor(rows, dtype=torch.long, device=loaded.device)


# --- the plan: what each measured call runs --------------------------------------------------


class _TokenClock:
    """A ``generate`` streamer that notes when the first new token and the last one are out.

    ``generate`` puts the prompt (or the decoder's start token) first, then each new token."""

    def __init__(self, records: list):
        self.records = records
        self.puts = 0
        self.first_ns = None

    def start(self) -> None:
        self.puts = 0
        self.first_ns = None

    def put(self, value) -> None:
        self.puts += 1
        if self.puts == 2:
            self.first_ns = time.perf_counter_ns()

    def end(self) -> None:
        self.records.append((self.first_ns, time.perf_counter_ns(), self.puts - 1))


@dataclass
class GenerationPlan:
    """The two measured callables of one (variant, batch size) and what summarising them needs.

    ``records``: per request call (warm-up included, in call order): (first token ns, last token
    ns, tokens streamed); the last ``iterations`` of them are the measured calls."""

    prefill: Callable[[], object]
    request: Callable[[], object]
    batch_size: int
    prompt_tokens: int
    new_tokens: int
    backend: str = "transformers"
    prompt_source: str = ""
    records: list = field(default_factory=list)
    decoding: str = ""  # how the tokens were produced, for the reader

    @classmethod
    def build(cls, loaded, *, batch_size: int, prompt_tokens: int, new_tokens: int, options: dict) -> "GenerationPlan":
        backend = str(options.get("generation_backend") or "transformers").strip().lower()
        if backend == "vllm":
            from . import vllm_backend

            _, source = prompt_token_ids(loaded, prompt_tokens)
            return vllm_backend.build_plan(loaded, batch_size=batch_size, prompt_tokens=prompt_tokens,
                                           new_tokens=new_tokens, options=options,
                                           prompt_rows=prompt_batch(loaded, batch_size, prompt_tokens).tolist(),
                                           prompt_source=source, plan_type=cls)
        if backend != "transformers":
            raise LoadError(f"unknown generation backend {backend!r}; one of {', '.join(BACKENDS)}")
        return _transformers_plan(loaded, batch_size, prompt_tokens, new_tokens, options)


def generate_kwargs(model, new_tokens: int, *, compiled: bool = False) -> dict:
    """``generate`` arguments for greedy decoding of exactly ``new_tokens`` tokens with the KV cache."""
    config = model.config
    pad = getattr(config, "pad_token_id", None)
    if pad is None:
        gen_config = getattr(model, "generation_config", None)
        pad = getattr(gen_config, "pad_token_id", None)
        eos = getattr(gen_config, "eos_token_id", None) if pad is None else None
        if pad is None:
            pad = (eos[0] if isinstance(eos, (list, tuple)) and eos else eos)
    if not isinstance(pad, int):
        pad = 0
    kwargs = dict(do_sample=False, num_beams=1, use_cache=True, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                  repetition_penalty=1.0, no_repeat_ngram_size=0, pad_token_id=pad, return_dict_in_generate=False,
                  output_scores=False, output_logits=False)
    if compiled:
        from transformers import CompileConfig

        compile_config = CompileConfig(fullgraph=False, dynamic=False, backend="inductor", mode="default")
        compile_config._compile_all_devices = True  # transformers compiles on accelerators only by default
        kwargs.update(cache_implementation="static", compile_config=compile_config)
    return kwargs


def _transformers_plan(loaded, batch_size, prompt_tokens, new_tokens, options) -> GenerationPlan:
    import torch

    if loaded.kind != "torch" or not is_generative(loaded):
        raise LoadError(f"{loaded.architecture} cannot generate text (it is a {loaded.task} model)")
    model, compiled = unwrap(loaded.module)
    ids = prompt_batch(loaded, batch_size, prompt_tokens)
    mask = torch.ones_like(ids)
    seq2seq = _encoder_decoder(loaded)
    expected = new_tokens + (1 if seq2seq else prompt_tokens)  # seq2seq returns the start token + new ones
    first_kwargs = generate_kwargs(model, 1, compiled=compiled)
    all_kwargs = generate_kwargs(model, new_tokens, compiled=compiled)
    records: list = []
    clock = _TokenClock(records)
    generate = model.generate

    def prefill():
        return generate(input_ids=ids, attention_mask=mask, **first_kwargs)

    def request():
        clock.start()
        out = generate(input_ids=ids, attention_mask=mask, streamer=clock, **all_kwargs)
        if out.shape[-1] != expected:
            raise RuntimeError(f"generate returned {out.shape[-1]} positions, expected {expected}: "
                               f"the request did not produce exactly {new_tokens} new tokens")
        return out

    _, source = prompt_token_ids(loaded, prompt_tokens)
    decoding = ("model.generate, greedy, static KV cache, decode steps compiled (compile_config, inductor; "
                "compiled during warm-up)" if compiled else "model.generate, greedy, dynamic KV cache")
    return GenerationPlan(prefill=prefill, request=request, batch_size=batch_size, prompt_tokens=prompt_tokens,
                          new_tokens=new_tokens, backend="transformers", prompt_source=source, records=records,
                          decoding=decoding)


# --- the figures -----------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    from .timing import _percentile as percentile

    return percentile(sorted(values), q) if values else None


def _div(a, b):
    return a / b if a is not None and b else None


def summarize(plan: GenerationPlan, prefill: dict, request: dict) -> dict:
    """The generation fields of one measurement (docs/ENGINE_INTERFACE.md, schema 2) from the
    prefill's and the request's ``timing`` summaries. Energies are per call of the whole batch in
    the summaries; per token and per request figures divide by the sequences and tokens."""
    b, p, n = plan.batch_size, plan.prompt_tokens, plan.new_tokens
    steps = n - 1  # decode steps after the prefill's token
    flags = []

    pre_ms, req_ms = prefill["latency_ms_mean"], request["latency_ms_mean"]
    decode_ms = req_ms - pre_ms
    if decode_ms <= 0:
        flags.append("decode-time-not-resolved")
        decode_ms = None

    measured = plan.records[-request["iterations"]:] if len(plan.records) >= request["iterations"] else []
    tpots = [(last - first) / steps / 1e6 for first, last, _ in measured if first is not None and last > first]
    if tpots:
        tpot_mean = math.fsum(tpots) / len(tpots)
    else:
        tpot_mean = _div(decode_ms, steps)

    pre_j, req_j = prefill["energy_j_per_inference"], request["energy_j_per_inference"]
    decode_j = req_j - pre_j
    if decode_j <= 0:
        flags.append("decode-energy-not-resolved")
        decode_j = None
    # The meter's own (method) uncertainty is a scale error shared by both parts: it carries over to
    # their difference unchanged. Their statistical parts are independent and add in quadrature.
    u_method = request.get("energy_uncertainty_method_rel")
    if u_method is None:  # an older summary: treat its whole uncertainty as independent
        u_method, s_pre, s_req = 0.0, prefill.get("energy_uncertainty_rel"), request.get("energy_uncertainty_rel")
    else:
        s_pre, s_req = prefill.get("energy_uncertainty_stat_rel"), request.get("energy_uncertainty_stat_rel")
    stat_j = math.hypot((s_req or 0.0) * req_j, (s_pre or 0.0) * pre_j)
    u_out = math.hypot(u_method, stat_j / decode_j) if decode_j else None

    for flag in prefill.get("flags") or []:
        if flag not in flags:
            flags.append(flag)
    return {
        "scenario": "generation",
        "backend": plan.backend,
        "prompt_tokens": p,
        "new_tokens": n,
        "prompt_source": plan.prompt_source,
        "decoding": plan.decoding,
        # the prefill of the whole batch: time to first token
        "ttft_ms_mean": pre_ms,
        "ttft_ms_p50": prefill.get("latency_ms_p50"),
        "ttft_ms_p95": prefill.get("latency_ms_p95"),
        "ttft_ci95_ms": prefill.get("latency_ci95_ms"),
        # one decode step of the whole batch, per request: (last token - first token) / (new - 1)
        "tpot_ms_mean": tpot_mean,
        "tpot_ms_p50": _percentile(tpots, 50),
        "tpot_ms_p95": _percentile(tpots, 95),
        "decode_ms_mean": decode_ms,
        "output_tokens_per_s": b * n / (req_ms / 1e3) if req_ms > 0 else None,
        "decode_tokens_per_s": b * steps / (decode_ms / 1e3) if decode_ms else None,
        "prefill_tokens_per_s": b * p / (pre_ms / 1e3) if pre_ms > 0 else None,
        "energy_j_per_prompt_token": pre_j / (b * p),
        "energy_j_per_output_token": decode_j / (b * steps) if decode_j else None,
        "energy_j_per_output_token_uncertainty_rel": u_out,
        "energy_j_per_request": req_j / b,
        "prefill_energy_j_per_request": pre_j / b,
        "decode_energy_j_per_request": decode_j / b if decode_j else None,
        "prefill_energy_share": min(1.0, max(0.0, pre_j / req_j)) if req_j > 0 else None,
        "prefill": {key: prefill.get(key) for key in (
            "iterations", "windows", "latency_ms_mean", "latency_ci95_ms", "latency_ci95_rel", "energy_j_per_inference",
            "energy_uncertainty_rel", "window_means_ms", "window_energy_j", "flags")},
        "flags": list(request.get("flags") or []) + [f for f in flags if f not in (request.get("flags") or [])],
    }
