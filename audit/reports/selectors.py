"""Reads that feed the report pages, and the shaping of what they return into the rows,
KPIs and figures the templates draw. Queries are bounded: a report is a fixed number of
queries whatever the number of variants or batch sizes."""
from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, OuterRef, Prefetch

from ..models import Audit, Evaluation, Measurement, ModelAsset, Variant
from ..templatetags import units
from . import figures
from .ratings import hardware_class, rating_for_version
from workers.engine import tradeoff as engine_tradeoff

from .tradeoff import Point, Recommendation, finite, pareto_frontier, pick_accuracy, recommend, relative_change, yearly_footprint

DEFAULT_QUERIES_PER_DAY = 1_000_000
MAX_COMPARE = 6


def variants_with_results(audit_ids: list[int], *, light: bool = False) -> dict[int, list[Variant]]:
    """Variants of the audits with measurements (by batch size) and evaluations: three
    queries whatever the number of audits, variants and batch sizes. `light` leaves out the
    large JSON (per-layer profiles, power traces) that only the single report draws."""
    variants = Variant.objects.filter(audit_id__in=audit_ids)
    measurements = Measurement.objects.order_by("batch_size")
    if light:
        variants, measurements = variants.defer("layer_profile"), measurements.defer("power_trace")
    variants = (
        variants
        .order_by("audit_id", "position", "id")
        .prefetch_related(
            Prefetch("measurements", queryset=measurements),
            Prefetch("evaluations", queryset=Evaluation.objects.order_by("id")),
        )
    )
    grouped: dict[int, list[Variant]] = {pk: [] for pk in audit_ids}
    for v in variants:
        grouped.setdefault(v.audit_id, []).append(v)
    return grouped


@dataclass
class VariantRow:
    variant: Variant
    measurements: list[Measurement]
    ref: Measurement | None
    accuracy_pct: float | None
    is_baseline: bool
    is_recommended: bool = False
    on_frontier: bool = False
    energy_change: float | None = None
    accuracy_change_pts: float | None = None

    @property
    def key(self) -> str:
        return self.variant.recipe

    @property
    def point(self) -> Point:
        ref = self.ref
        return Point(
            key=self.key,
            energy_j=ref.energy_j_per_inference if ref else None,
            accuracy_pct=self.accuracy_pct,
            latency_ms=ref.latency_p50_ms if ref else None,
            is_baseline=self.is_baseline,
        )


def _pick_ref(measurements: list[Measurement], batch: int | None) -> Measurement | None:
    for m in measurements:
        if m.batch_size == batch:
            return m
    return None


def reference_batch(variants: list[Variant], requested: int | None = None) -> int | None:
    """The batch size the summary speaks of: the one asked for if measured, else the
    smallest the baseline (or, failing it, any variant) was measured at."""
    sizes = sorted({m.batch_size for v in variants for m in v.measurements.all()})
    if not sizes:
        return None
    if requested in sizes:
        return requested
    baseline = next((v for v in variants if v.recipe == "baseline"), None)
    base_sizes = sorted(m.batch_size for m in baseline.measurements.all()) if baseline else []
    return base_sizes[0] if base_sizes else sizes[0]


def variant_rows(variants: list[Variant], batch: int | None) -> list[VariantRow]:
    rows = []
    for v in variants:
        ms = list(v.measurements.all())
        rows.append(VariantRow(
            variant=v, measurements=ms, ref=_pick_ref(ms, batch),
            accuracy_pct=pick_accuracy(v.evaluations.all()), is_baseline=v.recipe == "baseline",
        ))
    return rows


@dataclass
class Kpi:
    key: str
    label: str
    baseline: str
    recommended: str | None = None
    change: str | None = None  # "−32%" or "−0.4 pts"
    better: bool | None = None
    note: str = ""


def _fmt_change(change: float | None) -> str | None:
    if change is None:
        return None
    if abs(change) < 0.0005:
        return "±0%"
    text = f"{change:+.0%}" if abs(change) >= 0.01 else f"{change:+.1%}"
    return text.replace("-", "−")


def kpis(baseline: VariantRow | None, chosen: VariantRow | None) -> list[Kpi]:
    if baseline is None:
        return []
    b, c = baseline.ref, chosen.ref if chosen else None
    specs = [
        ("j-per-inference", "Energy per inference", lambda r, m: m and m.energy_j_per_inference, units.joules, True),
        ("wh-per-1000", "Wh per 1,000 inferences", lambda r, m: m and m.wh_per_1000_inferences, units.wh, True),
        ("co2e-per-1000", "CO₂e per 1,000 inferences",
         lambda r, m: m and finite(m.co2e_g_per_inference) and m.co2e_g_per_inference * 1000, units.grams, True),
        ("latency-p50", "Latency p50", lambda r, m: m and m.latency_p50_ms, units.millis, True),
        ("flops", "FLOPs per sample", lambda r, m: r.variant.flops, units.flops, True),
        ("params", "Parameters", lambda r, m: r.variant.params, units.count, True),
        ("accuracy", "Accuracy", lambda r, m: r.accuracy_pct, lambda v: units.DASH if not finite(v) else f"{v:.2f}%", False),
    ]
    out = []
    for key, label, get, fmt, lower_is_better in specs:
        base_value = get(baseline, b) or None if key != "accuracy" else get(baseline, b)
        kpi = Kpi(key=key, label=label, baseline=fmt(base_value))
        if chosen is not None and chosen is not baseline:
            value = get(chosen, c) if key == "accuracy" else (get(chosen, c) or None)
            kpi.recommended = fmt(value)
            if key == "accuracy":
                if finite(value) and finite(base_value):
                    diff = value - base_value
                    kpi.change = f"{diff:+.2f} pts".replace("-", "−")
                    kpi.better = diff >= 0
            else:
                change = relative_change(value, base_value)
                kpi.change = _fmt_change(change)
                kpi.better = None if change is None or change == 0 else (change < 0) == lower_is_better
        if key == "accuracy" and not finite(base_value):
            kpi.note = "unknown: no evaluation"
        out.append(kpi)
    return out


_STAGE = re.compile(r"^(?P<name>.*?)\s*\((?P<k>\d+)/(?P<n>\d+)\)\s*$")


def progress_info(audit: Audit, *, now=None) -> dict:
    """Stage name, variant k of n and an ETA for the progress partial."""
    from django.utils import timezone

    match = _STAGE.match(audit.stage or "")
    info = {"stage": (match.group("name") if match else audit.stage) or "", "variant": None, "n_variants": None, "eta_s": None}
    if match:
        k, n = int(match.group("k")), int(match.group("n"))
        # The engine numbers variants from 0; the stages before and after have no variant.
        if info["stage"] in ("counting-flops", "measuring"):
            info["variant"], info["n_variants"] = min(k + 1, n), n
        else:
            info["n_variants"] = n
    if audit.status == Audit.Status.RUNNING and audit.started_at and 1.0 <= audit.progress < 100.0:
        elapsed = ((now or timezone.now()) - audit.started_at).total_seconds()
        info["eta_s"] = max(0.0, elapsed * (100.0 - audit.progress) / audit.progress)
    return info


def _estimated(rows: list[VariantRow]) -> bool:
    return any(m.energy_estimated for r in rows for m in r.measurements)


def audit_report_context(audit: Audit, *, batch: int | None = None, max_drop_pts: float | None = None,
                         queries_per_day: float | None = None) -> dict:
    """Everything the report page shows about a finished audit."""
    variants = (
        variants_with_results([audit.pk])[audit.pk]
        if audit.status in (Audit.Status.SUCCEEDED, Audit.Status.FAILED) else []
    )
    ref_batch = reference_batch(variants, batch)
    rows = variant_rows(variants, ref_batch)
    baseline = next((r for r in rows if r.is_baseline and r.ref), None)
    points = [r.point for r in rows if r.ref]
    frontier = pareto_frontier(points)
    rec: Recommendation = recommend(
        points, min_saving_rel=engine_tradeoff.noise_floor(audit.drift),
        **({"max_drop_pts": max_drop_pts} if max_drop_pts is not None else {}),
    )
    frontier_keys = {p.key for p in frontier}
    for r in rows:
        r.is_recommended = r.key == rec.key
        r.on_frontier = r.key in frontier_keys
        if baseline and r.ref:
            r.energy_change = relative_change(r.ref.energy_j_per_inference, baseline.ref.energy_j_per_inference)
            if finite(r.accuracy_pct) and finite(baseline.accuracy_pct):
                r.accuracy_change_pts = r.accuracy_pct - baseline.accuracy_pct
    recommended = next((r for r in rows if r.is_recommended), None)
    estimated = _estimated(rows)
    all_ms = [m for r in rows for m in r.measurements]
    flags = sorted({f for m in all_ms for f in (m.flags or [])})
    methods = sorted({m.energy_method for m in all_ms if m.energy_method})
    uncertainties = [m.energy_uncertainty_rel for m in all_ms if finite(m.energy_uncertainty_rel)]
    options = audit.options or {}
    pue = options.get("pue") if finite(options.get("pue")) else 1.0
    grid = options.get("grid_intensity_g_per_kwh") if finite(options.get("grid_intensity_g_per_kwh")) else settings.DEFAULT_GRID_INTENSITY_G_PER_KWH
    price = settings.ELECTRICITY_PRICE_PER_KWH
    qpd = queries_per_day if finite(queries_per_day) and queries_per_day >= 0 else DEFAULT_QUERIES_PER_DAY

    measured = [r for r in rows if r.ref]
    savings_variants = [
        {"key": r.key, "j_per_query": r.ref.energy_j_per_sample, "recommended": r.is_recommended, "baseline": r.is_baseline}
        for r in measured if finite(r.ref.energy_j_per_sample)
    ]
    chosen = recommended if recommended and not recommended.is_baseline else baseline
    footprint = baseline_footprint = None
    if chosen and finite(chosen.ref.energy_j_per_sample):
        footprint = yearly_footprint(j_per_query=chosen.ref.energy_j_per_sample, queries_per_day=qpd, pue=pue,
                                     grid_g_per_kwh=grid, price_per_kwh=price)
    if baseline and finite(baseline.ref.energy_j_per_sample):
        baseline_footprint = yearly_footprint(j_per_query=baseline.ref.energy_j_per_sample, queries_per_day=qpd, pue=pue,
                                              grid_g_per_kwh=grid, price_per_kwh=price)

    figs = {}
    if rows:
        figs = {
            "chart-tradeoff": figures.tradeoff_figure(points, frontier, recommended=rec.key, estimated=estimated),
            "chart-batch": figures.batch_figure(
                [{"name": r.key, "batch_sizes": [m.batch_size for m in r.measurements],
                  "energy_j": [m.energy_j_per_inference for m in r.measurements],
                  "latency_ms": [m.latency_p50_ms for m in r.measurements]} for r in rows],
                estimated=estimated,
            ),
            "chart-power": figures.power_trace_figure(
                # The baseline and the recommended variant first; four traces at most stay readable.
                [{"name": f"{r.key} · batch {r.ref.batch_size}", "trace": r.ref.power_trace}
                 for r in sorted(measured, key=lambda r: (not r.is_baseline, not r.is_recommended))[:4]],
                idle_w=baseline.ref.idle_power_w if baseline else (measured[0].ref.idle_power_w if measured else None),
                estimated=estimated,
            ),
            "chart-layers": figures.layers_figure((baseline or (rows[0] if rows else None)).variant.layer_profile if rows else []),
            "chart-breakdown": figures.breakdown_figure(
                [{"name": r.key, "total_j": r.ref.energy_j_per_inference, "active_j": r.ref.energy_j_per_inference_active}
                 for r in measured],
                estimated=estimated,
            ),
        }
    rating = None
    if audit.status == Audit.Status.SUCCEEDED and baseline:
        rating = rating_for_version(
            audit.model_version_id, task=audit.model_version.asset.task, hw=hardware_class(audit.fingerprint, audit.device)
        )
    return {
        "rows": rows,
        "variants": variants,
        "batch_sizes": sorted({m.batch_size for m in all_ms}),
        "ref_batch": ref_batch,
        "baseline": baseline,
        "recommended": recommended,
        "recommendation": rec,
        "kpis": kpis(baseline, recommended),
        "estimated": estimated,
        "flags": flags,
        "methods": methods,
        "max_uncertainty": max(uncertainties) if uncertainties else None,
        "figures": figs,
        "rating": rating,
        "hardware_class": hardware_class(audit.fingerprint, audit.device),
        "savings": {
            "queries_per_day": qpd, "pue": pue, "grid": grid, "price": price,
            "currency": settings.ELECTRICITY_CURRENCY, "footprint": footprint, "baseline_footprint": baseline_footprint,
            "chosen": chosen.key if chosen else None,
            "saved_kwh": (baseline_footprint.kwh_per_year - footprint.kwh_per_year) if footprint and baseline_footprint else None,
            "data": {"variants": savings_variants, "pue": pue, "grid": grid, "price": price,
                     "currency": settings.ELECTRICITY_CURRENCY, "estimated": estimated},
        },
    }


# --- compare ------------------------------------------------------------------------


def audit_label(audit: Audit) -> str:
    return f"#{audit.pk} {audit.model_version.asset.name} {audit.model_version.label}"


def _audit_summaries(audits: list[Audit], *, fall_back_to_any_variant: bool = False) -> list[dict]:
    """Per audit: its variant rows at its reference batch size, its baseline row (or, when asked,
    its first measured variant if the baseline was not measured), hardware class and whether
    its energy is estimated. Three queries whatever the number of audits."""
    grouped = variants_with_results([a.pk for a in audits], light=True)
    summaries = []
    for audit in audits:
        variants = grouped.get(audit.pk, [])
        ref_batch = reference_batch(variants)
        rows = variant_rows(variants, ref_batch)
        base = next((r for r in rows if r.is_baseline and r.ref), None)
        if base is None and fall_back_to_any_variant:
            base = next((r for r in rows if r.ref), None)
        summaries.append({"audit": audit, "rows": rows, "base": base, "ref_batch": ref_batch,
                          "hardware": hardware_class(audit.fingerprint, audit.device), "estimated": _estimated(rows)})
    return summaries


def compare_context(audits: list[Audit]) -> dict:
    """Side by side: each audit's baseline (or its only measured variant) at each batch size,
    with deltas against the first audit. Four queries whatever the number of audits."""
    columns = []
    for summary in _audit_summaries(audits, fall_back_to_any_variant=True):
        base = summary["base"]
        columns.append({
            **summary, "label": audit_label(summary["audit"]),
            "by_batch": {m.batch_size: m for m in (base.measurements if base else [])},
        })
    first = columns[0] if columns else None
    batch_sizes = sorted({b for c in columns for b in c["by_batch"]})
    metrics = [
        ("Energy per inference", lambda m, r: m.energy_j_per_inference if m else None, units.joules),
        ("Wh per 1,000 inferences", lambda m, r: m.wh_per_1000_inferences if m else None, units.wh),
        ("Energy per sample", lambda m, r: m.energy_j_per_sample if m else None, units.joules),
        ("Latency p50", lambda m, r: m.latency_p50_ms if m else None, units.millis),
        ("Throughput (samples/s)", lambda m, r: m.throughput_samples_per_s if m else None, units.count),
        ("Average power", lambda m, r: m.avg_power_w if m else None, units.watts),
    ]
    table = []
    for b in batch_sizes:
        for name, get, fmt in metrics:
            cells = []
            ref_value = get(first["by_batch"].get(b), first["base"]) if first else None
            for i, c in enumerate(columns):
                value = get(c["by_batch"].get(b), c["base"])
                change = None if i == 0 else _fmt_change(relative_change(value, ref_value))
                cells.append({"value": fmt(value), "change": change,
                              "better": None if i == 0 or relative_change(value, ref_value) in (None, 0)
                              else (relative_change(value, ref_value) < 0) == (name != "Throughput (samples/s)")})
            table.append({"batch": b, "metric": name, "cells": cells})
    static_rows = []
    for name, get, fmt in [
        ("FLOPs per sample", lambda c: c["base"].variant.flops if c["base"] else None, units.flops),
        ("Parameters", lambda c: c["base"].variant.params if c["base"] else None, units.count),
        ("Accuracy", lambda c: c["base"].accuracy_pct if c["base"] else None,
         lambda v: units.DASH if not finite(v) else f"{v:.2f}%"),
    ]:
        static_rows.append({"metric": name, "cells": [fmt(get(c)) for c in columns]})
    estimated = any(c["estimated"] for c in columns)
    figs = {
        "chart-compare-energy": figures.compare_bars_figure(
            [{"name": c["label"], "x": list(c["by_batch"]), "y": [m.energy_j_per_inference for m in c["by_batch"].values()]}
             for c in columns],
            title="Energy per inference by batch size" + (" (estimated)" if estimated else ""), unit="J", log=True,
        ),
        "chart-compare-latency": figures.lines_figure(
            [{"name": c["label"], "x": list(c["by_batch"]), "y": [m.latency_p50_ms for m in c["by_batch"].values()]}
             for c in columns],
            title="Latency p50 vs batch size", x_title="Batch size", y_title="Latency p50 (ms)", x_type="log", y_type="log",
        ),
        "chart-compare-tradeoff": figures.lines_figure(
            [{"name": c["label"], "x": [r.ref.energy_j_per_inference for r in c["rows"] if r.ref],
              "y": [r.accuracy_pct if finite(r.accuracy_pct) else r.ref.latency_p50_ms for r in c["rows"] if r.ref],
              "text": [r.key for r in c["rows"] if r.ref]}
             for c in columns],
            title=("Accuracy vs energy per inference (variants)" if any(
                finite(r.accuracy_pct) for c in columns for r in c["rows"]) else "Latency vs energy per inference (accuracy unknown)"),
            x_title="Energy per inference (J)", y_title=("Accuracy (%)" if any(
                finite(r.accuracy_pct) for c in columns for r in c["rows"]) else "Latency p50 (ms)"), x_type="log",
            mode="markers+text", x_suffix="J",
        ),
    }
    return {"columns": columns, "table": table, "static_rows": static_rows, "figures": figs, "estimated": estimated,
            "same_model": len({c["audit"].model_version.asset_id for c in columns}) == 1,
            "same_hardware": len({c["hardware"] for c in columns}) == 1}


# --- model history --------------------------------------------------------------------


def model_history_context(asset: ModelAsset) -> dict:
    """Energy, latency and accuracy across the versions of a model: the latest succeeded
    audit of each version, one series per hardware class. Four queries."""
    later = Audit.objects.filter(
        model_version=OuterRef("model_version"), status=Audit.Status.SUCCEEDED, finished_at__gt=OuterRef("finished_at")
    )
    audits = list(
        Audit.objects.filter(model_version__asset=asset, status=Audit.Status.SUCCEEDED)
        .filter(~Exists(later))
        .select_related("model_version")
        .order_by("model_version__created_at", "model_version_id", "-id")
    )
    entries = [{**summary, "version": summary["audit"].model_version} for summary in _audit_summaries(audits)]
    series: dict[str, dict] = {}
    for e in entries:
        if not e["base"]:
            continue
        # One line per hardware class, batch size and kind of energy figure: a version audited
        # at batch 8 is not drawn as a regression of one audited at batch 1, and estimated
        # energy never shares a line with measured.
        name = f"{e['hardware']} · batch {e['ref_batch']}" + (" (estimated)" if e["estimated"] else "")
        s = series.setdefault(name, {"x": [], "energy": [], "latency": [], "accuracy": []})
        s["x"].append(e["version"].label)
        s["energy"].append(e["base"].ref.energy_j_per_inference)
        s["latency"].append(e["base"].ref.latency_p50_ms)
        s["accuracy"].append(e["base"].accuracy_pct)
    estimated = any(e["estimated"] for e in entries)
    figs = {
        "chart-history-energy": figures.lines_figure(
            [{"name": hw, "x": s["x"], "y": s["energy"]} for hw, s in series.items()],
            title="Energy per inference across versions" + (" (estimated)" if estimated else ""),
            x_title="Version", y_title="Energy per inference", x_type="category", y_type="log", y_suffix="J"),
        "chart-history-latency": figures.lines_figure(
            [{"name": hw, "x": s["x"], "y": s["latency"]} for hw, s in series.items()],
            title="Latency p50 across versions", x_title="Version", y_title="Latency p50 (ms)", x_type="category",
            y_type="log"),
        "chart-history-accuracy": figures.lines_figure(
            [{"name": hw, "x": s["x"], "y": s["accuracy"]} for hw, s in series.items()],
            title="Accuracy across versions", x_title="Version", y_title="Accuracy (%)", x_type="category",
            empty_message="Accuracy unknown: no version was evaluated on a dataset."),
    }
    return {"entries": entries, "figures": figs, "estimated": estimated}
