"""The figures a page can draw or compare, each with its one name, unit and formatter. Every
axis title comes from here, and every trace says which quantity it plots (its `meta`), so a
chart cannot put one quantity under another's title (tests/reports/test_figure_axes.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import formatting
from .tradeoff import finite


@dataclass(frozen=True)
class Quantity:
    key: str
    label: str
    unit: str  # shown in the axis title; "" for a dimensionless figure
    fmt: Callable[[object], str]
    lower_is_better: bool
    # where the value lives: a measurement field, a variant field, or the row (accuracy, fidelity)
    getter: Callable[[object, object], float | None]
    tick_suffix: str = ""  # SI-prefixed ticks read right only with a unit: 2mJ, 350µJ
    log: bool = True  # spans orders of magnitude across variants and batch sizes

    @property
    def axis_title(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def value(self, row, measurement=None):
        value = self.getter(row, measurement)
        return float(value) if finite(value) else None


def _m(field: str):
    return lambda row, m: getattr(m, field, None) if m is not None else None


def _v(field: str):
    return lambda row, m: getattr(row.variant, field, None) if row is not None else None


def _pct(value) -> str:
    return formatting.accuracy(value)


QUANTITIES: dict[str, Quantity] = {q.key: q for q in [
    Quantity("energy", "Energy per inference", "J", formatting.joules, True, _m("energy_j_per_inference"), "J"),
    Quantity("energy_per_sample", "Energy per sample", "J", formatting.joules, True, _m("energy_j_per_sample"), "J"),
    Quantity("j_per_token", "Energy per output token", "J", formatting.joules, True, _m("energy_j_per_output_token"), "J"),
    Quantity("latency", "Latency p50", "ms", formatting.millis, True, _m("latency_p50_ms")),
    Quantity("latency_mean", "Latency mean", "ms", formatting.millis, True, _m("latency_mean_ms")),
    Quantity("latency_p95", "Latency p95", "ms", formatting.millis, True, _m("latency_p95_ms")),
    Quantity("ttft", "Time to first token p95", "ms", formatting.millis, True, _m("ttft_ms_p95")),
    Quantity("tpot", "Time per output token p95", "ms", formatting.millis, True, _m("tpot_ms_p95")),
    Quantity("throughput", "Throughput", "samples/s", formatting.sig, False, _m("throughput_samples_per_s")),
    Quantity("tokens_per_s", "Output tokens per second", "tok/s", formatting.sig, False, _m("output_tokens_per_s")),
    Quantity("power", "Average power", "W", formatting.watts, True, _m("avg_power_w"), "W", log=False),
    Quantity("accuracy", "Accuracy", "%", _pct, False, lambda row, m: row.accuracy_pct if row else None, log=False),
    Quantity("fidelity", "Fidelity to the baseline", "", formatting.sig, False,
             lambda row, m: row.fidelity if row else None, log=False),
    Quantity("flops", "FLOPs per sample", "FLOPs", formatting.flops, True, _v("flops"), "FLOPs"),
    Quantity("size", "Model size", "bytes", formatting.bytesize, True, _v("size_bytes"), "B"),
    Quantity("params", "Parameters", "", formatting.count, True, _v("params")),
]}

# What compare and history offer as axes (issue 11.2), in this order.
AXIS_CHOICES = ["energy", "latency", "accuracy", "fidelity", "flops", "size", "j_per_token", "energy_per_sample",
                "latency_p95", "ttft", "tpot", "throughput", "tokens_per_s", "params", "power"]


def get(key: str | None, default: str) -> Quantity:
    return QUANTITIES.get(key or "", QUANTITIES[default])
