"""Numbers with units and sensible precision; a missing value is an em dash, never None or NaN."""
import math

from django import template

register = template.Library()
DASH = "—"


def _missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and not math.isfinite(value))


def _sig(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"


def _scaled(value, steps: list[tuple[float, str]]) -> str:
    if _missing(value):
        return DASH
    value = float(value)
    if value == 0:
        return f"0 {steps[-1][1] if len(steps) > 1 else steps[0][1]}"
    for factor, unit in steps:
        if abs(value) >= factor:
            return f"{_sig(value / factor)} {unit}"
    factor, unit = steps[-1]
    return f"{_sig(value / factor)} {unit}"


@register.filter
def joules(value) -> str:
    return _scaled(value, [(1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ")])


@register.filter
def millis(value) -> str:
    return _scaled(value, [(1e3, "s"), (1.0, "ms"), (1e-3, "µs")])


@register.filter
def flops(value) -> str:
    return _scaled(value, [(1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs"), (1e3, "kFLOPs"), (1, "FLOPs")])


@register.filter
def macs(value) -> str:
    return _scaled(value, [(1e12, "TMACs"), (1e9, "GMACs"), (1e6, "MMACs"), (1e3, "kMACs"), (1, "MACs")])


@register.filter
def count(value) -> str:
    return _scaled(value, [(1e9, "B"), (1e6, "M"), (1e3, "k"), (1, "")]).rstrip()


@register.filter
def bytesize(value) -> str:
    return _scaled(value, [(1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"), (1, "B")])


@register.filter
def watts(value) -> str:
    return _scaled(value, [(1e3, "kW"), (1.0, "W"), (1e-3, "mW")])


@register.filter
def grams(value) -> str:
    return _scaled(value, [(1e3, "kg"), (1.0, "g"), (1e-3, "mg"), (1e-6, "µg")])


@register.filter
def wh(value) -> str:
    return _scaled(value, [(1e3, "kWh"), (1.0, "Wh"), (1e-3, "mWh"), (1e-6, "µWh")])


@register.filter
def percent(value, digits: int = 0) -> str:
    if _missing(value):
        return DASH
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def plain(value) -> str:
    return DASH if _missing(value) else value


@register.filter
def times(value, factor) -> float | None:
    return None if _missing(value) else float(value) * float(factor)
