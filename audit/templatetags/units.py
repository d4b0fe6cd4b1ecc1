"""Template filters for numbers with units. The functions are in audit/reports/formatting.py
(pure), so the report selectors use them without importing this module, and this module
imports no selector: no import cycle."""
from django import template

from ..reports import formatting
from ..reports.formatting import (  # noqa: F401  (re-exported for Python callers)
    DASH, accuracy, bytesize, carbon_basis, carbon_tag, count, duration, flops, grams, joules, macs, millis, money,
    percent, plain, points, sig, signed_percent, times, tokens_rate, watts, wh,
)
from ..reports.formatting import fidelity, fidelity_label, page_units  # noqa: F401
from ..reports.progress import progress_info as _progress_info

register = template.Library()

for _filter in (fidelity, fidelity_label, page_units):
    register.filter(_filter.__name__, _filter)


@register.filter
def co2e_per_1000(m, generation=False):
    """Grams of CO₂e per 1,000 inferences of a measurement, or per 1,000 requests for a generation
    measurement (whose "inference" is one generate call of a whole batch of requests)."""
    value = getattr(m, "co2e_g_per_inference", None)
    if value is None:
        return None
    per_call = float(value) * 1000
    return per_call / m.batch_size if generation and getattr(m, "batch_size", 0) else per_call

for _filter in (accuracy, bytesize, carbon_basis, carbon_tag, count, duration, flops, grams, joules, macs, millis, money,
                percent, plain, points, sig, signed_percent, times, tokens_rate, watts, wh):
    register.filter(_filter.__name__, _filter)


@register.filter
def ratio(value, ci=None) -> str:
    """×0.64, or with its interval: {{ c.energy_ratio|ratio:c.energy_ratio_ci95 }} → ×0.64 [0.61, 0.68]."""
    return formatting.ratio(value, ci)


@register.filter
def progress_info(audit) -> dict:
    """Stage, variant k of n, batch size, phase, round and an ETA for the live progress partial."""
    return _progress_info(audit)
