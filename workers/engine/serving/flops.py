"""FLOPs of serving a workload (issue 20): per request and per output token, from the work a
request really does, not from one forward pass at a default length.

A request of ``p`` prompt tokens and ``n`` new tokens is one prefill over its ``p`` tokens (which
gives the first new token) and ``n - 1`` decode steps, step ``i`` reading a context of ``p + i - 1``
cached tokens. ``torch.utils.flop_counter`` counts both kinds of forward pass on the model itself:

- prefill at length ``p``: ``F_pre(p) = c + a p + b p^2`` (the last position's logits, once:
  ``logits_to_keep=1``, as generation computes them, where the model takes that argument; the
  layers per token; attention over the whole square, as the counter counts it);
- one decode step over a cache of ``c`` tokens: ``F_dec(c) = a' + b' c`` (one token through the
  layers, its attention over the cache).

Both are fitted from counts at three (two) lengths and checked against a count at a fourth; where the
check is off by more than 1% (a model whose cost is not of this form) the figures are None and
the method says why. Then per request ``F_pre(p) + (n - 1) a' + b' ((n - 1) p + (n - 1)(n - 2) / 2)``. Attention
kernels the counter's registry misses on CPU are counted by the engine's own formulas (flops.py).
"""

from __future__ import annotations

import inspect

CHECK_TOLERANCE = 0.01
FIT_MAX_TOKENS = 2048


def _count(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from ..flops import _extra_torch_formulas

    with FlopCounterMode(display=False, custom_mapping=_extra_torch_formulas()) as counter:
        fn()
    return int(counter.get_total_flops())


def _prefill_and_decode(model, vocab: int, device):
    import torch

    keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if keep else {}

    def ids(n):
        return torch.arange(n, device=device).remainder(vocab).unsqueeze(0)

    def prefill(p: int) -> int:
        with torch.inference_mode():
            return _count(lambda: model(input_ids=ids(p), use_cache=False, **extra))

    params = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"  # transformers 5 renames it

    def decode(c: int) -> int:
        with torch.inference_mode():
            out = model(input_ids=ids(c), use_cache=True)
            cache = getattr(out, "cache", None) or out.past_key_values
            return _count(lambda: model(input_ids=ids(1), use_cache=True, **{cache_arg: cache}, **extra))

    return prefill, decode, keep


def _quadratic(f, xs: tuple[int, int, int]) -> tuple[float, float, float]:
    """(c, a, b) of c + a x + b x^2 through the three points (Lagrange's form, exact)."""
    (x1, x2, x3), (y1, y2, y3) = xs, [f(x) for x in xs]
    b = ((y3 - y1) / (x3 - x1) - (y2 - y1) / (x2 - x1)) / (x3 - x2)
    a = (y2 - y1) / (x2 - x1) - b * (x1 + x2)
    return y1 - a * x1 - b * x1 * x1, a, b


def _linear(f, x1: int, x2: int) -> tuple[float, float]:
    y1, y2 = f(x1), f(x2)
    b = (y2 - y1) / (x2 - x1)
    return y1 - b * x1, b


def workload_flops(model, prompts: list[list[int]], max_news: list[int], *, context: int | None, device) -> dict:
    """``flops_per_request`` (mean over the workload), ``flops_per_output_token`` and the method."""
    vocab = int(getattr(model.config, "vocab_size", 2))
    longest = max(len(p) + n for p, n in zip(prompts, max_news))
    # counted at lengths up to FIT_MAX_TOKENS (an uncached forward pass over the whole context can
    # run out of memory); the form is exact, so longer requests are extrapolated from it
    top = max(16, min(longest, context or longest, FIT_MAX_TOKENS))
    x1, x2, x3, x4 = max(2, top // 8), max(4, top // 4), max(8, top // 2), top
    if not x1 < x2 < x3 < x4:
        x1, x2, x3, x4 = 2, 4, 8, 16
    prefill, decode, keep = _prefill_and_decode(model, vocab, device)
    c, a, b = _quadratic(prefill, (x1, x2, x3))
    a_dec, b_dec = _linear(decode, x1, x3)
    pre4, dec4 = prefill(x4), decode(x4)
    off = max(abs(c + a * x4 + b * x4 * x4 - pre4) / max(pre4, 1), abs(a_dec + b_dec * x4 - dec4) / max(dec4, 1))
    method = (f"torch.utils.flop_counter on prefill and one decode step (attention kernels included), fitted at "
              f"{x1}-{x3} tokens and checked at {x4} (off by {off:.2%}); prefill counts the last position's logits only"
              + ("" if keep else " where the model allows it (this one computes every position's)"))
    if off > CHECK_TOLERANCE:
        return {"flops_per_request": None, "flops_per_output_token": None,
                "flops_method": method + f": more than {CHECK_TOLERANCE:.0%} off, so no figure is given"}
    total = 0.0
    for p, n in zip(prompts, max_news):
        p = len(p)
        steps = n - 1
        total += c + a * p + b * p * p + steps * a_dec + b_dec * (steps * p + steps * (steps - 1) / 2)
    tokens = sum(max_news)
    return {"flops_per_request": int(round(total / len(prompts))), "flops_per_output_token": int(round(total / tokens)),
            "flops_method": method}
