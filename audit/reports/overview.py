"""The team overview over time: audits, energy and carbon per week and per model, with the
grid intensity each gram was computed at. Two queries whatever the number of audits."""
from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import timedelta

from django.utils import timezone

from ..models import Audit, Measurement
from . import figures
from .formatting import grams, wh
from .tradeoff import finite

WEEKS = 26


def _week(when) -> str:
    day = timezone.localtime(when).date() if timezone.is_aware(when) else when.date()
    return (day - timedelta(days=day.weekday())).isoformat()  # the Monday of its ISO week


def _intensity(options: dict, carbon: dict) -> str:
    """The intensity the audit's grams used: the engine's carbon section (schema 2), else the options."""
    options, carbon = options or {}, carbon or {}
    if finite(carbon.get("intensity_g_per_kwh")):
        value = carbon["intensity_g_per_kwh"]
        where = " ".join(str(carbon[k]) for k in ("region", "year", "kind") if carbon.get(k))
    elif finite(options.get("grid_intensity_g_per_kwh")):
        value = options["grid_intensity_g_per_kwh"]
        where = " ".join(str(options[k]) for k in ("carbon_region", "carbon_year", "carbon_kind") if options.get(k))
    else:
        return "grid intensity not recorded"
    return f"{float(value):g} gCO₂e/kWh" + (f" ({where})" if where else "")


def team_overview_context(team_ids: list[int], *, weeks: int = WEEKS, now=None) -> dict:
    since = (now or timezone.now()) - timedelta(weeks=weeks)
    audits = list(
        Audit.objects.filter(model_version__asset__team_id__in=team_ids, created_at__gte=since)
        .values("created_at", "status", "model_version__asset__name")
    )
    baselines = list(
        Measurement.objects.filter(
            variant__recipe="baseline", variant__status="succeeded", variant__audit__status=Audit.Status.SUCCEEDED,
            variant__audit__model_version__asset__team_id__in=team_ids, variant__audit__finished_at__gte=since)
        .order_by("variant__audit__finished_at", "variant__audit_id", "batch_size")
        .values("variant__audit_id", "batch_size", "wh_per_1000_inferences", "co2e_g_per_inference", "energy_estimated",
                "variant__audit__finished_at", "variant__audit__model_version__asset__name", "variant__audit__options",
                "variant__audit__carbon")
    )
    # Audits per week and model (every status).
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for a in audits:
        counts[a["model_version__asset__name"]][_week(a["created_at"])] += 1
    # One figure per succeeded audit: its baseline at the smallest batch size measured.
    seen, per_audit = set(), []
    for m in baselines:
        if m["variant__audit_id"] in seen:
            continue
        seen.add(m["variant__audit_id"])
        per_audit.append(m)
    energy: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    carbon: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    intensity: dict[str, dict[str, str]] = defaultdict(dict)
    models: dict[str, dict] = {}
    for m in per_audit:
        name = m["variant__audit__model_version__asset__name"] + (" (estimated)" if m["energy_estimated"] else "")
        week = _week(m["variant__audit__finished_at"])
        energy[name][week].append(m["wh_per_1000_inferences"])
        if finite(m["co2e_g_per_inference"]):
            carbon[name][week].append(m["co2e_g_per_inference"] * 1000)
        intensity[name][week] = _intensity(m["variant__audit__options"], m["variant__audit__carbon"])
        models[name] = {"name": name, "wh_per_1000": m["wh_per_1000_inferences"], "batch_size": m["batch_size"],
                        "co2e_per_1000": (m["co2e_g_per_inference"] * 1000 if finite(m["co2e_g_per_inference"]) else None),
                        "intensity": _intensity(m["variant__audit__options"], m["variant__audit__carbon"]),
                        "audit_id": m["variant__audit_id"]}
    for name in models:
        base = name.removesuffix(" (estimated)")
        models[name]["audits"] = sum(counts.get(base, {}).values())

    def series(values: dict) -> list[dict]:
        return [{"name": name, "x": sorted(by_week),
                 "y": [statistics.median(by_week[w]) for w in sorted(by_week)],
                 "text": [intensity[name].get(w, "") for w in sorted(by_week)]}
                for name, by_week in sorted(values.items())]

    figs = {
        "chart-week-audits": figures.weekly_bars_figure(
            [{"name": name, "x": sorted(by_week), "y": [by_week[w] for w in sorted(by_week)]}
             for name, by_week in sorted(counts.items())],
            title=f"Audits per week and model (last {weeks} weeks)"),
        "chart-week-energy": figures.weekly_lines_figure(
            series(energy), title="Energy per week and model: baseline Wh per 1,000 inferences",
            y_title="Wh per 1,000 inferences (Wh)", suffix="Wh"),
        "chart-week-carbon": figures.weekly_lines_figure(
            series(carbon), title="Carbon per week and model: baseline CO₂e per 1,000 inferences",
            y_title="CO₂e per 1,000 inferences (g)", suffix="g"),
    }
    table = sorted(models.values(), key=lambda r: r["name"])
    for r in table:
        r["wh_text"], r["co2_text"] = wh(r["wh_per_1000"]), grams(r["co2e_per_1000"])
    return {"overview_figures": figs, "overview_models": table, "overview_weeks": weeks}
