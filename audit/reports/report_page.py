"""The audit report page's reads, and the shaping of what they return into the rows, verdict,
KPIs, savings, evidence and figures the template draws, section by section. Queries are
bounded: a report is a fixed number of queries whatever the number of variants or batch sizes.
The compare and model history pages read through compare_page.py and history_page.py; the
rows all of them share are in rows.py."""
from __future__ import annotations

from django.conf import settings

from ..models import Audit
from . import figures
from .boundaries import host_ratio
from .quantities import QUANTITIES, Quantity
from .decision import Verdict, paired_verdict
from .kpis import kpis
from .ratings import hardware_class, rating_for_version
from .ratios import ratio_note
from .uncertainty import energy_uncertainty
from .release import release_summary
from .rows import VariantRow, _estimated, is_generation, latency_quantity, reference_batch, variant_rows, variants_with_results
from workers.engine import tradeoff as engine_tradeoff

from .tradeoff import Recommendation, finite, pareto_frontier, recommend, relative_change, yearly_footprint
from .serving import is_serving, serving_context

DEFAULT_QUERIES_PER_DAY = 1_000_000


# --- the audit report, section by section ---------------------------------------------------


def _rows_section(audit: Audit, batch: int | None) -> dict:
    variants = (
        variants_with_results([audit.pk])[audit.pk]
        if audit.status in (Audit.Status.SUCCEEDED, Audit.Status.FAILED) else []
    )
    ref_batch = reference_batch(variants, batch)
    rows = variant_rows(variants, ref_batch)
    baseline = next((r for r in rows if r.is_baseline and r.ref), None)
    for r in rows:
        if baseline and r.ref:
            r.energy_change = relative_change(r.ref.energy_j_per_inference, baseline.ref.energy_j_per_inference)
            if finite(r.accuracy_pct) and finite(baseline.accuracy_pct):
                r.accuracy_change_pts = r.accuracy_pct - baseline.accuracy_pct
    all_ms = [m for r in rows for m in r.measurements]
    generation = is_generation(audit, rows)
    latency_q = latency_quantity(rows)
    if baseline:
        _label_ratios(rows, baseline, generation, latency_q)
    return {
        "variants": variants, "rows": rows, "ref_batch": ref_batch, "baseline": baseline,
        "batch_sizes": sorted({m.batch_size for m in all_ms}), "generation": generation,
        "paired": audit.schema_version >= 2 and any(r.comparison for r in rows),
        "estimated": _estimated(rows), "latency_q": latency_q,
        "energy_q": QUANTITIES["j_per_token"] if generation else QUANTITIES["energy"],
        "flags": sorted({f for m in all_ms for f in (m.flags or [])}),
        "methods": sorted({m.energy_method for m in all_ms if m.energy_method}),
        "uncertainty": energy_uncertainty(all_ms),
        "ratio_notes": [
            {"key": r.key, "kind": kind, "paired": text, "figures": note["figures"], "why": note["why"]}
            for r in rows for kind, note, text in (("energy", r.energy_note, r.energy_ratio_text),
                                                   ("latency", r.latency_note, r.latency_ratio_text))
            if note and note["figures"]],
    }


def _label_ratios(rows: list[VariantRow], baseline: VariantRow, generation: bool, latency_q: Quantity) -> None:
    """Each paired ratio says what it divides; where the figures shown divide to something else,
    the row carries that ratio too, and why (ratios.py)."""
    b = baseline.ref
    energy_q = QUANTITIES["j_per_token"] if generation else QUANTITIES["energy"]
    lat_q = QUANTITIES["tpot"] if generation else latency_q
    shown = ("times per output token (p95)" if generation
             else "medians (p50) of single calls" if latency_q.key == "latency" else "mean")
    for r in rows:
        if r.is_baseline or not r.comparison or not r.ref:
            continue
        r.energy_note = ratio_note("energy", r.comparison, energy_q.value(r, r.ref), energy_q.value(baseline, b),
                                   r.ref, b, generation=generation)
        r.latency_note = ratio_note("latency", r.comparison, lat_q.value(r, r.ref), lat_q.value(baseline, b),
                                    r.ref, b, shown=shown, generation=generation)


def _v1_verdict(audit: Audit, rows: list[VariantRow], max_drop_pts) -> tuple[Verdict, Recommendation]:
    """A v1 result (no paired rounds): the absolute figures, with the baseline's drift as the noise floor."""
    points = [r.point for r in rows if r.ref]
    rec = recommend(points, min_saving_rel=engine_tradeoff.noise_floor(audit.drift),
                    **({"max_drop_pts": max_drop_pts} if max_drop_pts is not None else {}))
    kind = "recommended" if rec.key and rec.key != "baseline" else "none"
    headline = f"Recommended: {rec.key}" if rec.key else "No recommendation"
    return Verdict(kind, headline, rec.reason, key=rec.key), rec


def _verdict_section(audit: Audit, ctx: dict, max_drop_pts) -> dict:
    rows = ctx["rows"]
    if ctx["paired"] or (audit.schema_version >= 2 and audit.tradeoff):
        verdict = paired_verdict(audit, rows, ctx["ref_batch"], max_drop_pts)
        frontier_keys = list(verdict.frontier)
        accuracy_known = verdict.judged_by in ("labelled", "fidelity")
        rec = Recommendation(verdict.key, verdict.reason, accuracy_known=accuracy_known)
    else:
        verdict, rec = _v1_verdict(audit, rows, max_drop_pts)
        frontier_keys = [p.key for p in pareto_frontier([r.point for r in rows if r.ref])]
    for r in rows:
        if verdict.paired:
            r.is_recommended = verdict.kind == "recommended" and r.key == verdict.key
        else:  # v1: "Recommended: baseline" when nothing beats the noise, as before
            r.is_recommended = r.key == verdict.key
        r.on_frontier = r.key in frontier_keys
        # the verdict beside a paired ratio: by the rule the answer above applies, so the table
        # never says "no measurable difference" beside an answer that calls the same interval inconclusive
        r.verdict_word = verdict.variant_verdicts.get(r.key) or (r.comparison or {}).get("verdict") or ""
    recommended = next((r for r in rows if r.is_recommended), None)
    return {"verdict": verdict, "recommendation": rec, "recommended": recommended, "frontier_keys": frontier_keys}


def _kpi_section(ctx: dict) -> dict:
    chosen = ctx["recommended"]
    return {"kpis": kpis(ctx["baseline"], chosen, generation=ctx["generation"], latency=ctx["latency_q"])}


def _savings_section(audit: Audit, ctx: dict, queries_per_day) -> dict:
    rows, baseline, recommended = ctx["rows"], ctx["baseline"], ctx["recommended"]
    options = audit.options or {}
    pue = options.get("pue") if finite(options.get("pue")) else 1.0
    grid = (options.get("grid_intensity_g_per_kwh") if finite(options.get("grid_intensity_g_per_kwh"))
            else settings.DEFAULT_GRID_INTENSITY_G_PER_KWH)
    price = settings.ELECTRICITY_PRICE_PER_KWH
    qpd = queries_per_day if finite(queries_per_day) and queries_per_day >= 0 else DEFAULT_QUERIES_PER_DAY
    measured = [r for r in rows if r.ref]

    # Energy at the host boundary (device + its share of CPU and DRAM, issue 23) where every row
    # recorded it, so that x PUE is the facility figure the grams rest on; else the device's.
    on_host = bool(measured) and all(host_ratio(r.ref) is not None for r in measured)

    def j_per_query(r: VariantRow) -> float | None:
        # With paired rounds, a variant's energy is the baseline's times its paired ratio: the
        # ratio is robust to the drift that makes two absolute figures disagree.
        scale = host_ratio(r.ref) if on_host else 1.0
        if r.comparison and baseline and finite(r.comparison.get("energy_ratio")) and finite(baseline.ref.energy_j_per_sample):
            return baseline.ref.energy_j_per_sample * r.comparison["energy_ratio"] * scale
        return r.ref.energy_j_per_sample * scale if finite(r.ref.energy_j_per_sample) else None

    savings_variants = [
        {"key": r.key, "j_per_query": j_per_query(r), "recommended": r.is_recommended, "baseline": r.is_baseline}
        for r in measured if j_per_query(r) is not None
    ]
    chosen = recommended if recommended and not recommended.is_baseline else baseline

    def footprint(r):
        if r is None or j_per_query(r) is None:
            return None
        return yearly_footprint(j_per_query=j_per_query(r), queries_per_day=qpd, pue=pue, grid_g_per_kwh=grid,
                                price_per_kwh=price)

    fp, base_fp = footprint(chosen), footprint(baseline)
    return {"savings": {
        "queries_per_day": qpd, "pue": pue, "grid": grid, "price": price,
        "energy_basis": ("Host energy (device + its share of CPU and DRAM)" if on_host else "Device energy"),
        "currency": settings.ELECTRICITY_CURRENCY, "footprint": fp, "baseline_footprint": base_fp,
        "chosen": chosen.key if chosen else None,
        "saved_kwh": (base_fp.kwh_per_year - fp.kwh_per_year) if fp and base_fp else None,
        "data": {"variants": savings_variants, "pue": pue, "grid": grid, "price": price,
                 "currency": settings.ELECTRICITY_CURRENCY, "estimated": ctx["estimated"]},
    }}


def _evidence_section(audit: Audit, ctx: dict) -> dict:
    """What the answer rests on: the grade and its reasons, the budgets, the warnings (drift
    included) for the first screen; the windows and an estimate's assumptions for the details."""
    warnings = list(audit.warnings or [])
    drift = (audit.drift or {}).get("max_abs_rel_change")
    if finite(drift) and drift > engine_tradeoff.MIN_NOISE_FLOOR and not any("moved by" in w for w in warnings):
        warnings.append(f"The baseline moved by {drift:.0%} between its first and last measurement "
                        "(thermal state or other load): absolute figures are uncertain by about that much.")
    if (audit.options or {}).get("carbon_warning"):
        warnings.append(audit.options["carbon_warning"])
    results = list(audit.budget_results or [])
    budgets = {
        "verdict": audit.budget_verdict,
        "failed": [r for r in results if r.get("passed") is False],
        "inconclusive": [r for r in results if r.get("passed") is None and r.get("inconclusive")],
        "n": len(results),
    }
    windows, assumptions = [], []
    for r in ctx["rows"]:
        for m in r.measurements:
            if m.window_means_ms:
                windows.append({"variant": r.key, "batch_size": m.batch_size, "means_ms": m.window_means_ms,
                                "energy_j": m.window_energy_j, "window_cv": m.window_cv, "grade": m.quality_grade,
                                "reasons": m.quality_reasons, "ci_rel": m.latency_ci95_rel, "timing": m.timing_mode})
            if m.energy_assumptions:
                assumptions.append({"variant": r.key, "batch_size": m.batch_size,
                                    "items": sorted(m.energy_assumptions.items())})
    return {"warnings": warnings, "budgets": budgets, "windows": windows, "assumptions": assumptions[:1],
            "n_assumptions": len(assumptions), "quality": {"grade": audit.quality_grade,
                                                           "reasons": list(audit.quality_reasons or [])}}


def _quality_quantity(rows: list[VariantRow], latency: Quantity) -> Quantity:
    if any(finite(r.accuracy_pct) for r in rows if r.ref):
        return QUANTITIES["accuracy"]
    if any(finite(r.fidelity) for r in rows if r.ref):
        return QUANTITIES["fidelity"]
    return latency


def _report_figures(ctx: dict) -> dict:
    rows, baseline, estimated = ctx["rows"], ctx["baseline"], ctx["estimated"]
    if not rows:
        return {}
    measured = [r for r in rows if r.ref]
    recommended = ctx["recommended"]
    energy_q, latency_q = ctx["energy_q"], ctx["latency_q"]
    y = _quality_quantity(rows, latency_q)
    points = [{"key": r.key, "x": energy_q.value(r, r.ref), "y": y.value(r, r.ref), "is_baseline": r.is_baseline}
              for r in measured]
    figs = {
        "chart-tradeoff": figures.tradeoff_figure(
            points, y=y, x=energy_q, recommended=recommended.key if recommended else None, estimated=estimated,
            frontier_keys=ctx["frontier_keys"] if y.key == "accuracy" or ctx["paired"] else []),
    }
    if ctx["generation"]:
        def lines(q: Quantity):
            return [{"name": r.key, "points": [(m.batch_size, q.value(r, m)) for m in r.measurements]} for r in rows]

        figs["chart-tokens"] = figures.batch_lines_figure(
            lines(QUANTITIES["j_per_token"]), y=QUANTITIES["j_per_token"], estimated=estimated,
            title="Energy per output token vs batch size")
        figs["chart-ttft"] = figures.batch_lines_figure(lines(QUANTITIES["ttft"]), y=QUANTITIES["ttft"],
                                                        title="Time to first token p95 vs batch size")
        figs["chart-tpot"] = figures.batch_lines_figure(lines(QUANTITIES["tpot"]), y=QUANTITIES["tpot"],
                                                        title="Time per output token p95 vs batch size")
        figs["chart-share"] = figures.energy_share_figure(
            [{"name": r.key, "prefill_share": r.ref.prefill_energy_share} for r in measured], batch_size=ctx["ref_batch"])
    else:
        figs["chart-batch"] = figures.batch_figure(
            [{"name": r.key, "batch_sizes": [m.batch_size for m in r.measurements],
              "energy_j": [m.energy_j_per_inference for m in r.measurements],
              "latency_ms": [latency_q.value(r, m) for m in r.measurements]} for r in rows],
            estimated=estimated, latency=latency_q)
    figs["chart-power"] = figures.power_trace_figure(
        # The baseline and the recommended variant first: the first four are drawn, every one is
        # in the legend (figures.power_trace_figure).
        [{"name": f"{r.key} · batch {r.ref.batch_size}", "trace": r.ref.power_trace}
         for r in sorted(measured, key=lambda r: (not r.is_baseline, not r.is_recommended))],
        idle_w=baseline.ref.idle_power_w if baseline else (measured[0].ref.idle_power_w if measured else None),
        estimated=estimated)
    figs["chart-layers"] = figures.layers_figure((baseline or rows[0]).variant.layer_profile)
    figs["chart-breakdown"] = figures.breakdown_figure(
        [{"name": r.key, "total_j": r.ref.energy_j_per_inference, "active_j": r.ref.energy_j_per_inference_active}
         for r in measured], estimated=estimated)
    return figs


def audit_report_context(audit: Audit, *, batch: int | None = None, max_drop_pts: float | None = None,
                         queries_per_day: float | None = None) -> dict:
    """Everything the report page shows about an audit, in the order the page reads: the rows,
    the verdict, the KPIs, the savings, the evidence, the figures."""
    ctx = _rows_section(audit, batch)
    ctx.update(_verdict_section(audit, ctx, max_drop_pts))
    ctx.update(_kpi_section(ctx))
    ctx.update(_savings_section(audit, ctx, queries_per_day))
    ctx.update(_evidence_section(audit, ctx))
    ctx["figures"] = _report_figures(ctx)
    ctx["serving"] = None
    if is_serving(audit):  # issue 20: the serving section replaces the batch-size tables and charts
        ctx["serving"] = serving_context(audit, [r.variant for r in ctx["rows"]] or audit.variants.all())
        ctx["figures"] = ctx["serving"]["figures"]
    ctx["rating"] = None
    if audit.status == Audit.Status.SUCCEEDED and ctx["baseline"]:
        ctx["rating"] = rating_for_version(audit.model_version_id, task=audit.model_version.asset.task,
                                           hw=hardware_class(audit.fingerprint, audit.device))
    ctx["hardware_class"] = hardware_class(audit.fingerprint, audit.device)
    ctx["release"] = release_summary(audit)  # issue 21: the comparison with the reference leads
    return ctx
