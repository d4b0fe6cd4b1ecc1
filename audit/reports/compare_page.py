"""The compare page's reads: every variant of up to MAX_COMPARE audits side by side, changes
as ratios against a reference row, and what makes the audits' figures not comparable."""
from __future__ import annotations

from ..models import Audit
from . import figures, formatting as units, ratios
from .quantities import AXIS_CHOICES, QUANTITIES
from .rows import _audit_summaries, _better_from_interval
from .boundaries import compare_boundary_differences
from .tradeoff import finite
from .uncertainty import audit_energy_uncertainty

MAX_COMPARE = 6
# The quantities a same-audit paired ratio divides (at one batch size, per sample and per
# inference are the same ratio; latency p50 and mean are both read from the ratio of means and
# labelled so).
PAIRED_KIND = {"energy": "energy", "energy_per_sample": "energy", "j_per_token": "energy",
               "latency": "latency", "latency_mean": "latency"}


def audit_label(audit: Audit) -> str:
    return f"#{audit.pk} {audit.model_version.asset.name} {audit.model_version.label}"


def _ratio_cell(value, ref_value, *, lower_is_better: bool, paired: tuple | None = None, kind: str = "energy",
                comparison: dict | None = None) -> dict:
    """A change as a ratio (×0.42), never a percentage (+513744%); with the paired 95% interval
    when the two rows were measured in the same audit's interleaved rounds. Each says what it
    divides (``title``); a paired one that parts from the ratio of the figures shown carries
    that too (``figures``), as on the report (ratios.py)."""
    figures = value / ref_value if finite(value) and finite(ref_value) and ref_value else None
    if paired is not None:
        parted = not ratios.agree(paired[0], figures)
        return {"text": units.ratio(paired[0], paired[1]), "better": _better_from_interval(paired[1], lower_is_better),
                "paired": True, "title": ratios.paired_title(kind, comparison),
                "figures": units.ratio(figures) if parted and figures is not None else None}
    if figures is None:
        return {"text": None, "better": None, "paired": False, "title": "", "figures": None}
    return {"text": units.ratio(figures), "better": None if abs(figures - 1) < 1e-9 else (figures < 1) == lower_is_better,
            "paired": False, "title": ratios.FIGURES_TITLE, "figures": None}


def _differences(summaries: list[dict]) -> list[str]:
    """What makes the audits' figures not comparable one for one."""
    out = []
    tasks = {s["audit"].model_version.asset.get_task_display() for s in summaries}
    if len(tasks) > 1:
        out.append(f"The audits are of different tasks ({', '.join(sorted(tasks))}): their accuracy and fidelity "
                   "figures measure different things.")
    hardware = {s["hardware"] for s in summaries}
    if len(hardware) > 1:
        out.append(f"The audits ran on different hardware ({', '.join(sorted(hardware))}): energy and latency "
                   "differences include the hardware's.")
    batches = {s["ref_batch"] for s in summaries if s["ref_batch"]}
    if len(batches) > 1:
        out.append(f"The variants are compared at different batch sizes ({', '.join(str(b) for b in sorted(batches))}): "
                   "energy per inference grows with the batch.")
    scenarios = {"generation" if s["generation"] else "forward pass" for s in summaries}
    if len(scenarios) > 1:
        out.append("Some audits measured generation and others single forward passes: their energy figures are "
                   "not the same quantity.")
    if len({bool(s["estimated"]) for s in summaries}) > 1:
        out.append("Some energy figures are estimated and others measured by a hardware counter.")
    out += compare_boundary_differences(summaries)  # figures of different boundaries on one axis (issue 23)
    return out


def compare_context(audits: list[Audit], *, x: str | None = None, y: str | None = None, ref: str | None = None) -> dict:
    """Side by side: every variant of every audit at its reference batch size, on two figures
    chosen for the axes, with changes as ratios against a reference row (the first audit's
    baseline unless another is chosen); and each audit's baseline at each batch size. Four
    queries whatever the number of audits."""
    xq, yq = QUANTITIES.get(x or "", QUANTITIES["energy"]), QUANTITIES.get(y or "", QUANTITIES["accuracy"])
    summaries = _audit_summaries(audits, fall_back_to_any_variant=True)
    columns = []
    for summary in summaries:
        base = summary["base"]
        columns.append({
            **summary, "label": audit_label(summary["audit"]),
            "by_batch": {m.batch_size: m for m in (base.measurements if base else [])},
            "uncertainty": audit_energy_uncertainty(summary["rows"]),
        })
    # Every variant of every audit, one row each.
    entries = [{"id": f"{c['audit'].pk}:{r.key}", "label": f"#{c['audit'].pk} {r.key}", "column": c, "row": r}
               for c in columns for r in c["rows"] if r.ref]
    reference = next((e for e in entries if e["id"] == ref), None) or next(
        (e for e in entries if e["row"] is (columns[0]["base"] if columns else None)), entries[0] if entries else None)
    table_qs = [QUANTITIES[k] for k in dict.fromkeys([xq.key, yq.key, "energy", "latency", "accuracy", "fidelity"])]
    variant_table = []
    for e in entries:
        r, cells = e["row"], []
        for q in table_qs:
            value = q.value(r, r.ref)
            cell = {"value": q.fmt(value), "change": None, "better": None, "paired": False, "title": "", "figures": None}
            if reference is not None and e is not reference and q.key not in ("accuracy", "fidelity"):
                ref_row = reference["row"]
                paired = None
                same_audit = reference["column"] is e["column"] and ref_row.is_baseline and r.comparison
                # One pair of rows, one paired ratio: energy per sample at the same batch size
                # divides exactly as energy per inference does (it was ×0.63 beside ×0.85).
                kind = PAIRED_KIND.get(q.key)
                if same_audit and kind:
                    paired = (r.comparison.get(f"{kind}_ratio"), r.comparison.get(f"{kind}_ratio_ci95"))
                cell.update(_ratio_cell(value, q.value(ref_row, ref_row.ref), lower_is_better=q.lower_is_better,
                                        paired=paired if paired and finite(paired[0]) else None, kind=kind or "energy",
                                        comparison=r.comparison))
            elif reference is not None and e is not reference and q.key == "accuracy":
                ref_acc = reference["row"].accuracy_pct
                if finite(value) and finite(ref_acc):
                    cell.update(change=units.points(value - ref_acc), better=value >= ref_acc)
            if cell.get("text"):
                cell["change"] = cell["text"]
            cells.append(cell)
        variant_table.append({"id": e["id"], "label": e["label"], "audit": e["column"]["audit"], "grade": r.grade,
                              "batch": r.ref.batch_size, "is_reference": e is reference, "cells": cells})

    first = columns[0] if columns else None
    batch_sizes = sorted({b for c in columns for b in c["by_batch"]})
    metrics = [
        (QUANTITIES["energy"], "Energy per inference", lambda m: m.energy_j_per_inference if m else None),
        (None, "Wh per 1,000 inferences", lambda m: m.wh_per_1000_inferences if m else None),
        (QUANTITIES["energy_per_sample"], "Energy per sample", lambda m: m.energy_j_per_sample if m else None),
        (QUANTITIES["latency"], "Latency p50", lambda m: m.latency_p50_ms if m else None),
        (QUANTITIES["throughput"], "Throughput (samples/s)", lambda m: m.throughput_samples_per_s if m else None),
        (QUANTITIES["power"], "Average power", lambda m: m.avg_power_w if m else None),
    ]
    table = []
    for b in batch_sizes:
        for q, name, get in metrics:
            fmt = q.fmt if q else units.wh
            lower = q.lower_is_better if q else True
            ref_value = get(first["by_batch"].get(b)) if first else None
            cells = []
            for i, c in enumerate(columns):
                value = get(c["by_batch"].get(b))
                change = _ratio_cell(value, ref_value, lower_is_better=lower) if i else {"text": None, "better": None}
                cells.append({"value": fmt(value), "change": change["text"], "better": change["better"]})
            table.append({"batch": b, "metric": name, "cells": cells})
    static_rows = []
    for name, get, fmt in [
        ("FLOPs per sample", lambda c: c["base"].variant.flops if c["base"] else None, units.flops),
        ("Parameters", lambda c: c["base"].variant.params if c["base"] else None, units.count),
        ("Accuracy", lambda c: c["base"].accuracy_pct if c["base"] else None, units.accuracy),
        ("Quality grade", lambda c: c["audit"].quality_grade or None, units.plain),
    ]:
        static_rows.append({"metric": name, "cells": [fmt(get(c)) for c in columns]})
    estimated = any(c["estimated"] for c in columns)
    xy_series = [{"name": c["label"], "points": [
        {"label": f"#{c['audit'].pk} {r.key}", "x": xq.value(r, r.ref), "y": yq.value(r, r.ref),
         "show_label": r.is_baseline or len(c["rows"]) <= 4} for r in c["rows"] if r.ref]} for c in columns]
    missing = [q.label.lower() for q in (xq, yq)
               if not any(finite(p[axis]) for s in xy_series for p in s["points"] for axis in ("x", "y"))]
    figs = {
        "chart-compare-xy": figures.scatter_figure(
            xy_series, x=xq, y=yq, title=f"{yq.label} vs {units.lower_first(xq.label)} (every variant)", estimated=estimated,
            empty_message=f"No variant has both figures{': ' + ', '.join(missing) + ' unknown' if missing else ''}."),
        "chart-compare-energy": figures.compare_bars_figure(
            [{"name": c["label"], "x": list(c["by_batch"]), "y": [m.energy_j_per_inference for m in c["by_batch"].values()]}
             for c in columns],
            title="Baseline energy per inference by batch size" + (" (estimated)" if estimated else ""),
            quantity=QUANTITIES["energy"]),
        "chart-compare-latency": figures.batch_lines_figure(
            [{"name": c["label"], "points": [(b, m.latency_p50_ms) for b, m in c["by_batch"].items()]} for c in columns],
            y=QUANTITIES["latency"], title="Baseline latency p50 vs batch size"),
    }
    return {"columns": columns, "table": table, "static_rows": static_rows, "figures": figs, "estimated": estimated,
            "variant_table": variant_table, "table_quantities": table_qs, "reference": reference,
            "x": xq, "y": yq, "axis_choices": [QUANTITIES[k] for k in AXIS_CHOICES],
            "differences": _differences(summaries),
            "same_model": len({c["audit"].model_version.asset_id for c in columns}) == 1,
            "same_hardware": len({c["hardware"] for c in columns}) == 1}
