"""The audit report's summary cards (KPIs): the baseline's figures and the recommended
variant's change, as a paired ratio with its interval (schema 2) or an absolute change (v1)."""
from __future__ import annotations

from dataclasses import dataclass

from . import formatting as units, ratios
from .quantities import QUANTITIES, Quantity
from .rows import VariantRow, _better_from_interval
from .tradeoff import finite, relative_change


@dataclass
class Kpi:
    key: str
    label: str
    baseline: str
    recommended: str | None = None
    change: str | None = None  # "×0.64 [0.61, 0.68]" (paired), "−32%" (v1) or "−0.4 pts"
    better: bool | None = None
    note: str = ""
    paired: bool = False


def _fmt_change(change: float | None) -> str | None:
    if change is None:
        return None
    if abs(change) < 0.0005:
        return "±0%"
    text = f"{change:+.0%}" if abs(change) >= 0.01 else f"{change:+.1%}"
    return text.replace("-", "−")


def _kpi_specs(generation: bool, latency: Quantity):
    """(key, label, quantity or getter, formatter, lower is better, which paired ratio applies)."""
    co2 = ("co2e-per-1000", "CO₂e per 1,000 inferences",
           lambda r, m: m.co2e_g_per_inference * 1000 if m and finite(m.co2e_g_per_inference) else None,
           units.grams, True, "energy")
    if generation:
        # a generation measurement's "inference" is one generate call of the whole batch: its
        # carbon is per 1,000 requests, as its energy is per request
        co2_requests = ("co2e-per-1000", "CO₂e per 1,000 requests",
                        lambda r, m: (m.co2e_g_per_inference * 1000 / m.batch_size
                                      if m and finite(m.co2e_g_per_inference) and m.batch_size else None),
                        units.grams, True, "energy")
        return [
            ("j-per-output-token", "Energy per output token", QUANTITIES["j_per_token"].getter, units.joules, True, "energy"),
            ("j-per-request", "Energy per request", lambda r, m: m and m.energy_j_per_request, units.joules, True, "energy"),
            ("ttft-p50", "Time to first token p50", lambda r, m: m and m.ttft_ms_p50, units.millis, True, None),
            ("ttft-p95", "Time to first token p95", QUANTITIES["ttft"].getter, units.millis, True, None),
            ("tpot-p50", "Time per output token p50", lambda r, m: m and m.tpot_ms_p50, units.millis, True, None),
            ("tpot-p95", "Time per output token p95", QUANTITIES["tpot"].getter, units.millis, True, None),
            ("tokens-per-s", "Output tokens per second", QUANTITIES["tokens_per_s"].getter, units.tokens_rate, False, None),
            co2_requests,
        ]
    return [
        ("j-per-inference", "Energy per inference", QUANTITIES["energy"].getter, units.joules, True, "energy"),
        ("wh-per-1000", "Wh per 1,000 inferences", lambda r, m: m and m.wh_per_1000_inferences, units.wh, True, "energy"),
        co2,
        ("latency-p50" if latency.key == "latency" else "latency-mean", latency.label, latency.getter, units.millis,
         True, "latency"),
        ("flops", "FLOPs per sample", QUANTITIES["flops"].getter, units.flops, True, "exact"),
        ("params", "Parameters", QUANTITIES["params"].getter, units.count, True, "exact"),
    ]


def kpis(baseline: VariantRow | None, chosen: VariantRow | None, *, generation: bool = False,
         latency: Quantity = QUANTITIES["latency"]) -> list[Kpi]:
    """The summary cards: the baseline's figures and, for the recommended variant, its change.
    A schema-2 variant's change is its paired ratio with the 95% interval (robust to drift); a
    v1 result's is the absolute change between two separate measurements, and says so."""
    if baseline is None:
        return []
    b, c = baseline.ref, chosen.ref if chosen else None
    paired = bool(chosen and chosen.comparison)
    out = []
    for key, label, get, fmt, lower_is_better, ratio_kind in _kpi_specs(generation, latency):
        base_value = get(baseline, b) or None
        kpi = Kpi(key=key, label=label, baseline=fmt(base_value))
        if chosen is not None and chosen is not baseline:
            value = get(chosen, c) or None
            kpi.recommended = fmt(value)
            if paired and ratio_kind in ("energy", "latency"):
                r, ci = chosen.comparison.get(f"{ratio_kind}_ratio"), chosen.comparison.get(f"{ratio_kind}_ratio_ci95")
                kpi.change, kpi.paired = units.ratio(r, ci), True
                kpi.better = _better_from_interval(ci, lower_is_better)
                if finite(value) and finite(base_value) and base_value and not ratios.agree(r, value / base_value):
                    what = "energy per call" if ratio_kind == "energy" else "mean time per call"
                    kpi.note = (f"paired ratio of each round's {what}; the figures shown divide to "
                                f"{units.ratio(value / base_value)} (the variants table says why)")
            elif (paired or ratio_kind == "exact") and finite(value) and finite(base_value) and base_value:
                kpi.change = units.ratio(value / base_value)
                kpi.better = None if value == base_value else (value < base_value) == lower_is_better
            else:
                change = relative_change(value, base_value)
                kpi.change = _fmt_change(change)
                kpi.better = None if change is None or change == 0 else (change < 0) == lower_is_better
                if change is not None:
                    kpi.note = "absolute change (v1 result, no paired rounds)"
        out.append(kpi)
    # Quality of the answer: accuracy where labelled, fidelity to the baseline always (schema 2).
    acc = Kpi(key="accuracy", label="Accuracy", baseline=units.accuracy(baseline.accuracy_pct))
    if chosen is not None and chosen is not baseline:
        acc.recommended = units.accuracy(chosen.accuracy_pct)
        if finite(chosen.accuracy_pct) and finite(baseline.accuracy_pct):
            diff = chosen.accuracy_pct - baseline.accuracy_pct
            acc.change, acc.better = units.points(diff), diff >= 0
    if not finite(baseline.accuracy_pct):
        acc.note = "unknown: no evaluation on a labelled dataset"
    out.append(acc)
    if chosen is not None and chosen is not baseline and finite(chosen.fidelity):
        out.append(Kpi(key="fidelity", label=f"Fidelity ({units.fidelity_label(chosen.fidelity_metric)})",
                       baseline="1 (itself)", recommended=units.sig(chosen.fidelity)))
    return out


