"""Optional: the generation scenario measured through vLLM's offline engine (``generation_backend="vllm"``).

Detected with ``importlib.util.find_spec("vllm")``, never required: CPU CI does not install it,
and asking for it where it is absent is a LoadError before anything is measured. The scenario is
the same as the transformers backend's (``generation.py``): the same prompt token ids, a prefill
call (``max_tokens=1``) and a request call (``SamplingParams(max_tokens=N, min_tokens=N,
ignore_eos=True, temperature=0)``: greedy, exactly N tokens), each timed and metered in its own
windows by ``timing.Sampler``. One ``LLM.generate`` call submits the whole batch, so the batch
size is the number of concurrent requests the engine schedules together.

Limits (stated in docs/ENGINE.md):
- vLLM loads the uploaded folder itself, so it measures the uploaded weights only; recipe
  variants (in-memory transformations) are refused here and measured with the transformers backend.
- Automatic prefix caching is switched off: every call repeats the same prompts, and a cached
  prefix would skip the prefill that TTFT and the prefill energy are meant to measure.
- TPOT percentiles come from vLLM's per-request metrics (first / last token time) where the
  installed version fills them; otherwise only the mean is reported, from the request and prefill
  means, and the percentiles are null.

Not exercised by the test suite beyond detection and refusal (no vLLM, no GPU there).
"""

from __future__ import annotations

import importlib.util
import weakref

from .errors import LoadError

_ORIGINALS: dict[int, weakref.ref] = {}
_ENGINES: dict[tuple, object] = {}
DEFAULT_GPU_MEMORY_UTILIZATION = 0.5  # the transformers copy of the model shares the GPU


def available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def require(loaded) -> None:
    """Raise LoadError unless vLLM is installed and can load this upload; remember ``loaded`` as
    the uploaded model (the only one vLLM can serve)."""
    if not available():
        raise LoadError("the vLLM generation backend was asked for, but vLLM is not installed on this worker; "
                        "use generation backend 'transformers' (the default) or run on a host with vLLM")
    if loaded.format != "hf" or loaded.source_dir is None:
        raise LoadError("the vLLM backend serves Hugging Face folders only")
    _ORIGINALS[id(loaded)] = weakref.ref(loaded)


def _is_original(loaded) -> bool:
    ref = _ORIGINALS.get(id(loaded))
    return ref is not None and ref() is loaded


def _engine(loaded, max_len: int, options: dict, *, has_tokenizer: bool):
    from vllm import LLM

    folder = str(loaded.source_dir)
    key = (folder, loaded.device, max_len)
    if key not in _ENGINES:
        _ENGINES[key] = LLM(
            model=folder, tokenizer=folder if has_tokenizer else None, skip_tokenizer_init=not has_tokenizer,
            trust_remote_code=False, dtype="auto", seed=0, max_model_len=max_len, enable_prefix_caching=False,
            gpu_memory_utilization=float(options.get("vllm_gpu_memory_utilization")
                                         or DEFAULT_GPU_MEMORY_UTILIZATION),
        )
    return _ENGINES[key]


def build_plan(loaded, *, batch_size: int, prompt_tokens: int, new_tokens: int, options: dict,
               prompt_rows: list, prompt_source: str, plan_type):
    """The vLLM plan for ``prompt_rows`` (the batch's prompt token ids, made by generation.py as
    for the transformers backend, ``prompt_source`` says from what), as a ``plan_type``
    (generation.GenerationPlan). generation.py hands these in: this module imports nothing of it."""
    if not _is_original(loaded):
        raise LoadError("vLLM serves the uploaded weights as they are; recipe variants are measured with the "
                        "transformers generation backend")
    if not available():
        raise LoadError("vLLM is not installed on this worker")
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    has_tokenizer = not prompt_source.startswith("random")
    llm = _engine(loaded, prompt_tokens + new_tokens + 1, options, has_tokenizer=has_tokenizer)
    prompts = [TokensPrompt(prompt_token_ids=row) for row in prompt_rows]
    first = SamplingParams(max_tokens=1, min_tokens=1, ignore_eos=True, temperature=0.0, detokenize=False)
    full = SamplingParams(max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True, temperature=0.0,
                          detokenize=False)
    records: list = []

    def prefill():
        return llm.generate(prompts, first, use_tqdm=False)

    def request():
        outs = llm.generate(prompts, full, use_tqdm=False)
        counts = {len(o.outputs[0].token_ids) for o in outs}
        if counts != {new_tokens}:
            raise RuntimeError(f"vLLM returned {sorted(counts)} new tokens per sequence, expected {new_tokens}")
        records.append(_batch_times(outs, new_tokens))
        return outs

    return plan_type(prefill=prefill, request=request, batch_size=batch_size, prompt_tokens=prompt_tokens,
                     new_tokens=new_tokens, backend="vllm", prompt_source=prompt_source, records=records,
                     decoding="vLLM offline LLM.generate, greedy, prefix caching off")


def _batch_times(outs, new_tokens: int) -> tuple:
    """(first token ns, last token ns, tokens) of the batch from vLLM's request metrics, or
    (None, 0, tokens) where this vLLM version does not fill them."""
    firsts, lasts = [], []
    for o in outs:
        metrics = getattr(o, "metrics", None)
        first = getattr(metrics, "first_token_time", None)
        last = getattr(metrics, "last_token_time", None)
        if first is None or last is None:
            return None, 0, new_tokens
        firsts.append(first)
        lasts.append(last)
    return int(max(firsts) * 1e9), int(max(lasts) * 1e9), new_tokens
