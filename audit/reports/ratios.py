"""What a ratio on a page divides, so that a ratio never disagrees with the figures beside it
without saying why (issue 22).

Two ratios can stand next to a variant's figure:

- the paired ratio (schema 2): the geometric mean, over the paired rounds, of the variant's
  window (its mean energy or time per call) divided by the baseline's windows that bracket it,
  with its 95% interval (workers/engine/rounds.py). It is what the verdict reads: drift of the
  machine between rounds cancels in it.
- the ratio of the figures shown: the variant's figure divided by the baseline's. Energy per
  inference pools every window of a row (its energy over its calls, the baseline's closing window
  and the rounds it ran for other variants included); latency is the median (p50) of single calls.

They answer the same question in different ways and agree on a quiet machine. On a busy one
they part: a window where the host was taken away from the model counts as one round in the
paired ratio but weighs little in a pooled mean, and rare very slow calls (preemption) pull a
mean per call far above the median. The demo's fp16 row on a shared CPU: energy 1.16 mJ against
185 µJ (×6.3 of the figures) but a paired ratio of ×30; latency p50 37.7 against 32.9 µs (×1.15)
but a paired ratio of means of ×28, the mean call there being tens of times its median. Neither
number is a slip of arithmetic; the page labels each and, where they part, shows both and why.
"""
from __future__ import annotations

import math

from . import formatting as units
from .tradeoff import finite

# Ratios closer than this (relative) read as the same at the page's precision.
AGREE_REL = 0.05
# A mean call this many times the median one: the host interrupted the model (heavy tail).
HEAVY_TAIL = 1.5

FIGURES_TITLE = "ratio of the figures shown (variant's figure / the reference's)"


def paired_title(kind: str, comparison: dict | None, *, generation: bool = False) -> str:
    """What a paired ratio divides, for a title attribute or caption."""
    c = comparison or {}
    rounds = c.get("rounds")
    over = f"over {rounds} interleaved round{'s' if rounds != 1 else ''}" if rounds else "over interleaved rounds"
    if kind == "energy":
        what = "energy per request" if generation else "energy per call"
    else:
        what = "mean time per request" if generation else "mean time per call"
    return (f"paired ratio variant/baseline {over}: the geometric mean of each round's {what} of the variant "
            f"divided by that of the baseline windows around it, with its 95% interval")


def agree(a, b) -> bool:
    if not (finite(a) and finite(b)) or a <= 0 or b <= 0:
        return True  # nothing to disagree with
    return abs(math.log(a / b)) <= math.log1p(AGREE_REL)


def _tail(m) -> float | None:
    mean, p50 = getattr(m, "latency_mean_ms", None), getattr(m, "latency_p50_ms", None)
    if finite(mean) and finite(p50) and p50 > 0:
        return mean / p50
    return None


def _windows(m) -> int | None:
    w = getattr(m, "window_means_ms", None)
    return len(w) if w else None


def explain(kind: str, comparison: dict | None, var_m, base_m, *, shown: str, generation: bool = False) -> str:
    """Why the paired ratio and the ratio of the figures shown differ, in a sentence."""
    c = comparison or {}
    reasons = []
    tails = [t for t in (_tail(var_m), _tail(base_m)) if t is not None]
    heavy = max(tails) if tails and max(tails) >= HEAVY_TAIL else None
    if kind == "energy":
        if generation:
            reasons.append("the figures are per output token, the paired ratio per request (the variants may "
                           "generate different numbers of tokens)")
        rounds, bw, vw = c.get("rounds"), _windows(base_m), _windows(var_m)
        pooled = "the figures pool every window of each row"
        if bw and vw:
            pooled += f" (baseline {bw}, variant {vw})"
        pooled += " as energy over calls, so a window with more calls weighs more"
        reasons.append(pooled + (f"; the paired ratio weighs each of its {rounds} rounds alike" if rounds else
                                 "; the paired ratio weighs each round alike"))
        if heavy:
            reasons.append(f"on this busy host the windows differ widely (the mean call up to {units.sig(heavy)}× "
                           "the median)")
    else:
        if shown != "mean":
            reasons.append(f"the figures are {shown}, the paired ratio divides the mean time per "
                           f"{'request' if generation else 'call'}")
        if heavy:
            reasons.append(f"calls here are heavy-tailed (the mean call up to {units.sig(heavy)}× the median: "
                           "a busy host), so means and medians part")
    return "; ".join(reasons)


def ratio_note(kind: str, comparison: dict | None, var_value, base_value, var_m, base_m, *,
               shown: str = "figure", generation: bool = False) -> dict:
    """The labels of a paired ratio and, when the figures shown divide to something else, that
    ratio and why: {"title", "figures", "figures_title", "why", "agree"}."""
    c = comparison or {}
    ratio = c.get(f"{kind}_ratio")
    figures = var_value / base_value if finite(var_value) and finite(base_value) and base_value else None
    same = agree(ratio, figures)
    return {
        "title": paired_title(kind, c, generation=generation),
        "figures": None if same or figures is None else units.ratio(figures),
        "figures_title": FIGURES_TITLE,
        "why": "" if same else explain(kind, c, var_m, base_m, shown=shown, generation=generation),
        "agree": same,
    }
