"""Energy boundaries on the pages (issue 23): which boundary a headline figure uses, the others
beside it, what the grams of CO2e rest on, and the compare page's warning when figures of
different boundaries would share an axis. The boundaries themselves are the engine's
(workers/engine/meters/boundary.py, docs/ENGINE.md "Energy boundaries")."""
from __future__ import annotations

from . import formatting as units
from .tradeoff import finite

BOUNDARY_ORDER = ("device", "host", "facility")
BOUNDARY_TEXT = {
    "device": "the accelerator's own counter (the CPU package on a CPU audit)",
    "host": "device + the audit's share of the host's CPU packages and DRAM over the same windows",
    "facility": "host × PUE (cooling, power delivery)",
}


def device_part(m) -> str:
    """What the device boundary covers for a measurement: the GPU or the CPU package."""
    method = (m.energy_method or "").lower()
    if method.startswith(("nvml", "amdsmi")) or "gpu" in method:
        return "GPU"
    device = (((m.energy_boundaries or {}).get("device") or {}).get("method") or "").lower()
    if device.startswith(("nvml", "amdsmi")):
        return "GPU"
    return "CPU package"


def boundary_summary(m, options: dict | None = None) -> dict | None:
    """The headline measurement's boundaries for the report: one entry per boundary recorded
    (value, method, measured or estimated, uncertainty), the headline's marked, and the basis of
    the grams. None for a measurement without boundaries (results before issue 23)."""
    if m is None:
        return None
    options = options or {}
    recorded = m.energy_boundaries or {}
    headline = m.energy_boundary or "device"
    entries = []
    for name in BOUNDARY_ORDER:
        figure = m.boundary_figure(name)
        if not figure or not finite(figure.get("j_per_inference")):
            continue
        j = float(figure["j_per_inference"])
        entries.append({
            "name": name, "headline": name == headline, "j": j, "text": units.joules(j),
            "method": figure.get("method") or "", "estimated": bool(figure.get("estimated")),
            "uncertainty": figure.get("uncertainty_rel"), "meaning": BOUNDARY_TEXT[name],
            "share": figure.get("share"), "share_source": figure.get("share_source"),
            "host_reading": figure.get("host_reading"), "pue": figure.get("pue"),
            "pue_known": figure.get("pue_known"),
            "times_device": j / float(m.energy_j_per_inference) if m.energy_j_per_inference else None,
            "interval": None,
        })
        assumptions = m.energy_assumptions or {}
        k1, k2 = assumptions.get("uncertainty_k1"), assumptions.get("uncertainty_k2")
        if name == "device" and finite(k1) and finite(k2) and k1 > 0:
            # the estimate's own asymmetric interval (workers/engine/meters/cpu_table.estimate_bounds)
            entries[-1]["interval"] = f"[{units.joules(j / k1)}, {units.joules(j * k2)}] (x/{k1:.2g} to ×{k2:.2g})"
    co2e_boundary = m.co2e_boundary or "device"
    intensity = options.get("grid_intensity_g_per_kwh")
    pue = options.get("pue")
    if co2e_boundary == "facility":
        grams_on = f"the facility figure (host × PUE {float(pue or 1):g})"
    elif co2e_boundary == "host":
        grams_on = "the host figure (no PUE set: the facility would be host × 1.0)"
    else:
        grams_on = f"the device figure × PUE {float(pue or 1):g} (this result records no host figure)"
    return {
        "headline": headline, "device_part": device_part(m), "entries": entries,
        "recorded": bool(recorded), "co2e_boundary": co2e_boundary, "grams_on": grams_on,
        "intensity": units.carbon_basis(options) if finite(intensity) else None,
    }


def host_ratio(m) -> float | None:
    """host J / device J of a measurement (None where it recorded no host figure): what scales a
    device figure to the host boundary, e.g. for the savings calculator's yearly energy."""
    figure = m.boundary_figure("host") if m is not None else None
    j = figure.get("j_per_inference") if figure else None
    if not finite(j) or not finite(m.energy_j_per_inference) or m.energy_j_per_inference <= 0:
        return None
    return float(j) / float(m.energy_j_per_inference)


def compare_boundary_differences(summaries: list[dict]) -> list[str]:
    """The compare page's warnings when its energy axis would put figures of different
    boundaries together: a headline at another boundary, or "device" figures that cover a GPU in
    one audit and the CPU package in another (the host boundary is the like-for-like one)."""
    out = []
    headlines, parts = {}, {}
    for s in summaries:
        base = s.get("base")
        m = getattr(base, "ref", None) if base is not None else None
        if m is None:
            continue
        label = f"#{s['audit'].pk}"
        headlines.setdefault(m.energy_boundary or "device", []).append(label)
        parts.setdefault(device_part(m), []).append(label)
    if len(headlines) > 1:
        out.append("The energy figures are at different boundaries ("
                   + "; ".join(f"{b}: {', '.join(v)}" for b, v in sorted(headlines.items()))
                   + "): they are not the same quantity on one axis.")
    if len(parts) > 1:
        out.append("The energy axis shows device figures that cover different parts ("
                   + "; ".join(f"{p}: {', '.join(v)}" for p, v in sorted(parts.items()))
                   + "): a GPU's figure leaves out the host CPU and DRAM that a CPU audit's package figure is made "
                   "of. Each report shows the host boundary beside the device one, the like-for-like figure.")
    return out
