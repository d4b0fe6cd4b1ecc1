"""Numbers with units and sensible precision; a missing value is an em dash, never None or NaN.
Pure functions (no Django): the report selectors and the template filters (templatetags/units.py) share them."""
import math
import re

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


def joules(value) -> str:
    return _scaled(value, [(1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ")])


def millis(value) -> str:
    return _scaled(value, [(1e3, "s"), (1.0, "ms"), (1e-3, "µs")])


def flops(value) -> str:
    return _scaled(value, [(1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs"), (1e3, "kFLOPs"), (1, "FLOPs")])


def macs(value) -> str:
    return _scaled(value, [(1e12, "TMACs"), (1e9, "GMACs"), (1e6, "MMACs"), (1e3, "kMACs"), (1, "MACs")])


def count(value) -> str:
    return _scaled(value, [(1e9, "B"), (1e6, "M"), (1e3, "k"), (1, "")]).rstrip()


def bytesize(value) -> str:
    return _scaled(value, [(1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"), (1, "B")])


def watts(value) -> str:
    return _scaled(value, [(1e3, "kW"), (1.0, "W"), (1e-3, "mW")])


def grams(value) -> str:
    return _scaled(value, [(1e3, "kg"), (1.0, "g"), (1e-3, "mg"), (1e-6, "µg")])


def carbon_basis(options) -> str:
    """What every gram rests on, from an audit's options: intensity, region, year, kind, source.
    E.g. "56 gCO₂e/kWh, FR 2023 average (Ember yearly electricity data via Our World in Data ...)"."""
    options = options or {}
    intensity = options.get("grid_intensity_g_per_kwh")
    if _missing(intensity):
        return DASH
    where = " ".join(str(options[k]) for k in ("carbon_region", "carbon_year", "carbon_kind") if options.get(k))
    text = f"{float(intensity):g} gCO₂e/kWh"  # PUE is shown beside it by the page
    text += f", {where}" if where else ", kind and year not recorded"
    if options.get("carbon_source"):
        text += f" ({options['carbon_source']}"
        text += f"; {options['carbon_licence']})" if options.get("carbon_licence") else ")"
    return text


def carbon_tag(options) -> str:
    """The short form beside a gram figure: "FR 2023 average" (the full basis goes in its title)."""
    options = options or {}
    parts = [str(options[k]) for k in ("carbon_region", "carbon_year", "carbon_kind") if options.get(k)]
    return " ".join(parts) if parts else "grid basis not recorded"


def wh(value) -> str:
    return _scaled(value, [(1e3, "kWh"), (1.0, "Wh"), (1e-3, "mWh"), (1e-6, "µWh")])


def percent(value, digits: int = 0) -> str:
    if _missing(value):
        return DASH
    return f"{float(value) * 100:.{int(digits)}f}%"


def plain(value) -> str:
    return DASH if _missing(value) else value


def times(value, factor) -> float | None:
    return None if _missing(value) else float(value) * float(factor)


def duration(seconds) -> str:
    """An ETA or elapsed time for people: 45 s, 3 min, 1 h 20 min."""
    if _missing(seconds):
        return DASH
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def money(value, currency: str = "") -> str:
    """Cents from 0.01 up; a smaller amount is "< 0.01", never "0.00" (which reads as free)."""
    if _missing(value):
        return DASH
    value = float(value)
    if 0 < abs(value) < 0.005:
        text = "< 0.01" if value > 0 else "> −0.01"
    else:
        text = f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return f"{text} {currency}".strip()


def signed_percent(value, digits: int = 0) -> str:
    """A relative change: +12% / −40%; a missing one is an em dash."""
    if _missing(value):
        return DASH
    return f"{float(value) * 100:+.{int(digits)}f}%".replace("-", "−")


def points(value) -> str:
    """A change of accuracy in percentage points."""
    if _missing(value):
        return DASH
    return f"{float(value):+.2f} pts".replace("-", "−")


def accuracy(value) -> str:
    """Accuracy in percent (0-100)."""
    return DASH if _missing(value) else f"{float(value):.2f}%"


def sig(value) -> str:
    """Three significant digits, thousands separated: 0.00123, 4.56, 1,234."""
    return DASH if _missing(value) else _sig(float(value))


def _ratio_number(value: float) -> str:
    """Two decimals between 0.1 and 100 (×0.64, ×12.50); two significant digits outside, so a
    ratio never rounds to ×0.00 (×0.0017) nor spells out noise (×960)."""
    value = float(value)
    if value == 0 or 0.1 <= abs(value) < 100:
        return f"{value:.2f}"
    return f"{value:.2g}" if abs(value) < 1 else f"{value:,.0f}"


def ratio(value, ci=None) -> str:
    """A change as a ratio, never a percentage of a percentage: ×0.64, or ×0.64 [0.61, 0.68]
    with its 95% interval."""
    if _missing(value):
        return DASH
    text = f"×{_ratio_number(value)}"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and not any(_missing(c) for c in ci):
        text += f" [{_ratio_number(ci[0])}, {_ratio_number(ci[1])}]"
    return text


def lower_first(label: str) -> str:
    """"Energy per inference" -> "energy per inference", but "FLOPs per sample" stays."""
    return label[:1].lower() + label[1:] if label[1:2].islower() else label


def tokens_rate(value) -> str:
    return DASH if _missing(value) else f"{_sig(float(value))} tok/s"


# The fidelity metrics' names in words: the stored keys (embedding_cosine) are the engine's.
FIDELITY_LABELS = {
    "embedding_cosine": "cosine",
    "top1_agreement": "top-1 agreement",
    "relative_error": "relative error",
    "kl_divergence": "KL divergence",
    "perplexity_increase_rel": "perplexity increase",
}


def fidelity_label(metric) -> str:
    """"embedding_cosine" -> "cosine"; an unknown key with its underscores as spaces."""
    if not metric:
        return "fidelity"
    return FIDELITY_LABELS.get(str(metric), str(metric).replace("_", " "))


def fidelity(value, metric="") -> str:
    """A fidelity figure with its name first: "cosine 0.95", "top-1 agreement 0.794"."""
    if _missing(value):
        return DASH
    return f"{fidelity_label(metric)} {_sig(float(value))}"


_UNIT_FIGURE = re.compile(r"(?<![\w.×])(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?) (J|ms)\b")


def page_units(text) -> str:
    """A sentence from the engine with its figures in the page's units: "0.03376 J per output
    token" -> "33.8 mJ per output token", "0.5 ms" stays "0.5 ms", "2500 ms" -> "2.5 s"."""
    if not text:
        return ""
    scale = {"J": joules, "ms": millis}
    return _UNIT_FIGURE.sub(lambda m: scale[m.group(2)](float(m.group(1))), str(text))
