"""The constraints a recommendation and a latency-SLO answer apply: their defaults, why each
default is what it is, and the check that says which constraint excluded a variant and by what
figure. Pure Python (no torch): the CLI summary and the web report apply the same rules to a
stored result.

A variant is judged against the baseline either by a labelled metric (a dataset with labels was
evaluated) or, without labels, by its fidelity to the baseline's outputs
(workers/engine/evaluation.py). Every limit is a request option of the same name; None (unset)
means the default below. Each applied constraint is written into the result's ``tradeoff``
section (``constraints``) so the page can show it next to the answer it shaped.
"""
from __future__ import annotations

import math

# --- the paired energy verdict (VERDICTS.md) -----------------------------------------------

# A saving is claimed only when the whole 95% interval of the paired ratio lies below 1 - 5%:
# with several variants and batch sizes, a saving of a few percent whose interval barely clears
# 1 is as likely an order effect of the schedule as a real one, and a 2-3% saving rarely pays
# for the change it asks for.
DEFAULT_MIN_SAVING = 0.05
# "No measurable difference" only when the whole interval lies within ±5%: the same size as the
# smallest saving worth claiming, so an interval is either decisive one way, equivalent, or open.
DEFAULT_EQUIVALENCE_MARGIN = 0.05

LOWER, HIGHER, SAME, OPEN = "lower", "higher", "no measurable difference", "inconclusive"


def paired_verdict(ci, *, min_saving: float = DEFAULT_MIN_SAVING,
                   equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN, vetoes=()) -> str:
    """The verdict on a ratio interval [lo, hi] (variant / baseline): "lower" when hi < 1 - s,
    "higher" when lo > 1 + s, "no measurable difference" when the interval lies within 1 ± e,
    "inconclusive" otherwise, without an interval, or when a veto breaks the pairing."""
    if vetoes or not ci or len(ci) != 2 or not all(_finite(x) for x in ci):
        return OPEN
    lo, hi = float(ci[0]), float(ci[1])
    if hi < 1.0 - min_saving:
        return LOWER
    if lo > 1.0 + min_saving:
        return HIGHER
    if 1.0 - equivalence_margin <= lo and hi <= 1.0 + equivalence_margin:
        return SAME
    return OPEN


# --- quality constraints -------------------------------------------------------------------

# With labels: at most 1 point of accuracy lost (metric units when higher is better), at most 1%
# higher when lower is better (perplexity, MSE). One point is about the run-to-run spread of an
# accuracy on a few hundred samples; a team that accepts more says so per audit.
DEFAULT_MAX_ACCURACY_DROP = 0.01
DEFAULT_MAX_METRIC_INCREASE_REL = 0.01

# Without labels, by the fidelity metric the evaluation reports (evaluation.HEADLINE):
DEFAULT_MIN_FIDELITY = {
    # Mean cosine of the pooled embedding of the same input under baseline and variant. 0.98
    # leaves each embedding within about 0.2 of its unit length (|a - b| = sqrt(2 - 2 cos)), well
    # inside the gap between related and unrelated sentences of a typical sentence encoder
    # (cosines around 0.5-0.8 against under 0.3), so neighbours and rankings mostly hold. 0.95
    # moves each vector by about 0.32: enough to reorder close neighbours, so it is not the default;
    # a team whose retrieval tolerates it lowers min_fidelity.
    "embedding": 0.98,
    # Share of inputs whose top-1 class is unchanged. A share d of changed predictions moves the
    # accuracy by at most d; 0.98 bounds it to 2 points, and since flips happen near the decision
    # boundary, where the baseline is right about half the time, the expected change is about
    # 1 point: the labelled default.
    "classifier": 0.98,
    # The same per token position of a language model. A vocabulary-wide argmax flips at every
    # near-tie between two plausible next tokens, which a 16- or 8-bit model rounds either way
    # without changing the distribution (the KL limit below watches that): 0.95 allows those
    # flips and still refuses a broken model (50% unstructured pruning of GPT-2: 0.79).
    "sequence": 0.95,
    # Regression outputs: min_fidelity f means a relative error ||variant - baseline|| /
    # ||baseline|| of at most 1 - f, i.e. 2% by default.
    "regression": 0.98,
}
# Mean KL(baseline || variant) of the output distributions, nats per prediction. The variant's
# cross-entropy on the baseline's own predictions is the baseline's plus the KL, so its
# perplexity there rises by exp(KL) - 1: 0.01 nats is a 1% rise, the labelled perplexity limit.
DEFAULT_MAX_KL_DIVERGENCE = 0.01
# The variant's perplexity on real text against the baseline's (fidelity's "perplexity", causal
# language models on the engine's English sentences): at most 1% higher, like a labelled perplexity.
DEFAULT_MAX_PERPLEXITY_INCREASE_REL = 0.01

# the request options of the constraints (each a CLI flag and an audit option of the same name)
CONSTRAINT_OPTIONS = ("min_fidelity", "max_kl_divergence", "max_perplexity_increase_rel", "max_accuracy_drop",
                      "max_metric_increase_rel", "min_saving", "equivalence_margin")

_HEADLINE = {"embedding": "embedding_cosine", "classifier": "top1_agreement", "sequence": "top1_agreement",
             "regression": "relative_error"}
_LABELS = {"embedding_cosine": "embedding cosine", "top1_agreement": "top-1 agreement",
           "relative_error": "relative error", "kl_divergence": "KL divergence",
           "perplexity_increase_rel": "perplexity increase", "accuracy_drop": "accuracy drop",
           "metric_increase_rel": "increase"}
_SEQUENCE_TASKS = ("text-generation", "text2text-generation", "fill-mask", "token-classification", "language-modeling")
_WHY = {
    "embedding": "default for embedding models: keeps each embedding within ~0.2 of its length, so neighbours hold",
    "classifier": "default for classifiers: at most 2% of predictions change, about 1 point of accuracy",
    "sequence": "default for language models: allows argmax flips at near-ties; the KL limit guards the distribution",
    "regression": "default for regression outputs: 2% relative error",
    "max_kl_divergence": "default: the variant's perplexity on the baseline's own predictions rises by at most ~1%",
    "max_perplexity_increase_rel": "default: the same 1% as a labelled perplexity",
    "max_accuracy_drop": "default: about the run-to-run spread of an accuracy on a few hundred samples",
    "max_metric_increase_rel": "default: 1% worse at most",
}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fidelity_kind(evaluation: dict | None, task: str | None = None) -> str | None:
    """embedding | classifier | sequence | regression: the evaluation's own ``fidelity_kind``, or
    (older results) from its headline metric and the model's task."""
    ev = evaluation or {}
    if ev.get("fidelity_kind") in _HEADLINE:
        return ev["fidelity_kind"]
    metric = ev.get("fidelity_metric")
    if metric == "embedding_cosine":
        return "embedding"
    if metric == "relative_error":
        return "regression"
    if metric == "top1_agreement":
        return "sequence" if (task or "") in _SEQUENCE_TASKS else "classifier"
    return None


def _opt(options: dict, name: str, default):
    value = (options or {}).get(name)
    return float(value) if _finite(value) else default


def constraints_for(judged_by: str, *, higher_is_better: bool = True, metric: str | None = None,
                    kind: str | None = None, options: dict | None = None) -> list[dict]:
    """The quality constraints that apply to an audit judged ``judged_by`` ("labelled",
    "fidelity" or "none"): each {"name" (the option), "metric", "label", "op" (">=" or "<="),
    "limit", "default" (True when the option was not set), "why"}."""
    options = options or {}
    out = []

    def add(name, metric_key, op, default, why, label=None):
        limit = _opt(options, name, default)
        out.append({"name": name, "metric": metric_key, "label": label or _LABELS.get(metric_key, metric_key),
                    "op": op, "limit": limit, "default": not _finite(options.get(name)),
                    "why": why if not _finite(options.get(name)) else "set for this audit"})

    if judged_by == "labelled":
        if higher_is_better:
            add("max_accuracy_drop", "accuracy_drop", "<=", DEFAULT_MAX_ACCURACY_DROP, _WHY["max_accuracy_drop"],
                label=f"{metric or 'metric'} drop")
        else:
            add("max_metric_increase_rel", "metric_increase_rel", "<=", DEFAULT_MAX_METRIC_INCREASE_REL,
                _WHY["max_metric_increase_rel"], label=f"{metric or 'metric'} increase")
        return out
    if judged_by != "fidelity" or kind not in _HEADLINE:
        return out
    floor = _opt(options, "min_fidelity", DEFAULT_MIN_FIDELITY[kind])
    if kind == "regression":
        add("min_fidelity", "relative_error", "<=", None, _WHY[kind])
        out[-1]["limit"] = round(1.0 - floor, 12)
    else:
        add("min_fidelity", _HEADLINE[kind], ">=", DEFAULT_MIN_FIDELITY[kind], _WHY[kind])
    if kind in ("classifier", "sequence"):
        add("max_kl_divergence", "kl_divergence", "<=", DEFAULT_MAX_KL_DIVERGENCE, _WHY["max_kl_divergence"])
    if kind == "sequence":
        add("max_perplexity_increase_rel", "perplexity_increase_rel", "<=", DEFAULT_MAX_PERPLEXITY_INCREASE_REL,
            _WHY["max_perplexity_increase_rel"])
    return out


def figures_of(evaluation: dict | None) -> dict:
    """The figures constraints read from a variant's evaluation: the labelled metric
    (``value``) and every fidelity figure."""
    ev = evaluation or {}
    figures = {k: v for k, v in (ev.get("fidelity") or {}).items() if _finite(v)}
    if ev.get("fidelity_metric") and _finite(ev.get("fidelity_value")):
        figures.setdefault(ev["fidelity_metric"], ev["fidelity_value"])
    if ev.get("metric") and _finite(ev.get("value")):
        figures["value"] = ev["value"]
    return figures


def _figure(c: dict, figures: dict, base_figures: dict):
    """The figure constraint ``c`` compares with its limit; None when it is not known."""
    metric = c["metric"]
    if metric == "accuracy_drop":
        v, b = figures.get("value"), base_figures.get("value")
        return b - v if _finite(v) and _finite(b) else None
    if metric in ("metric_increase_rel", "perplexity_increase_rel"):
        key = "value" if metric == "metric_increase_rel" else "perplexity"
        v, b = figures.get(key), base_figures.get(key)
        return v / b - 1.0 if _finite(v) and _finite(b) and b > 0 else None
    return figures.get(metric)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2g}"


def describe(c: dict) -> str:
    """``top-1 agreement >= 0.95``"""
    op = "≥" if c["op"] == ">=" else "≤"
    limit = f"{c['limit']:.0%}" if c["metric"].endswith("_rel") else _fmt(c["limit"])
    return f"{c['label']} {op} {limit}"


def failures(constraints: list[dict], figures: dict, base_figures: dict) -> list[dict]:
    """Each constraint a variant breaks: {"constraint" (the option), "figure", "limit", "reason"}.
    A constraint whose figure is unknown is skipped, except the first (the headline): a variant
    whose quality is unknown cannot be said to meet the constraint."""
    out = []
    for i, c in enumerate(constraints):
        fig = _figure(c, figures, base_figures)
        if fig is None:
            if i == 0:
                out.append({"constraint": c["name"], "figure": None, "limit": c["limit"],
                            "reason": f"{c['label']} unknown (not evaluated), limit {describe(c)}"})
            continue
        ok = fig >= c["limit"] - 1e-12 if c["op"] == ">=" else fig <= c["limit"] + 1e-12
        if not ok:
            shown = f"{fig:+.1%}" if c["metric"].endswith("_rel") else _fmt(fig)
            limit = f"{c['limit']:.0%}" if c["metric"].endswith("_rel") else _fmt(c["limit"])
            sign = "<" if c["op"] == ">=" else ">"
            out.append({"constraint": c["name"], "figure": fig, "limit": c["limit"],
                        "reason": f"{c['label']} {shown} {sign} {limit}"})
    return out
