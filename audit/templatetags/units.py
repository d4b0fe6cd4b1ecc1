"""Template filters for numbers with units. The functions are in audit/reports/formatting.py
(pure), so the report selectors use them without importing this module, and this module
imports no selector: no import cycle."""
from django import template

from ..reports import formatting
from ..reports.formatting import (  # noqa: F401  (re-exported for Python callers)
    DASH, accuracy, bytesize, carbon_basis, carbon_tag, count, duration, flops, grams, joules, macs, millis, money,
    percent, plain, points, sig, signed_percent, times, tokens_rate, watts, wh,
)
from ..reports.progress import progress_info as _progress_info

register = template.Library()

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
