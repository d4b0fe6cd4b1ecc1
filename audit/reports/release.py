"""Issue 21, "did this release cost more?": the report's lead and the history's chain.

When an audit carries a comparison with its reference version (the result's "reference"
section, stored in Audit.reference), the report leads with it, one line per batch size:
"v7 vs v6 (approved): energy ×1.12 [1.05, 1.19], latency ×1.03 [0.98, 1.08]: costs more",
the grade beside, the basis and the inputs below, and the reason when the two were not compared.
The history marks the versions whose audits carried one and draws the chain of paired ratios,
each version against its own reference, measured in the same rounds (not absolute figures from
different days)."""
from __future__ import annotations

from . import figures
from .formatting import fidelity_label, ratio
from .tradeoff import finite

# The regression verdict of an audit: its worst energy verdict over the batch sizes compared.
COSTS_MORE, COSTS_LESS, SAME, INCONCLUSIVE = "costs more", "costs less", "no measurable difference", "inconclusive"
NOT_COMPARED = "not compared"
SEVERITY = [COSTS_MORE, NOT_COMPARED, INCONCLUSIVE, SAME, COSTS_LESS]
# the badge colours of the stylesheet, and a class of its own for each outcome
CSS = {COSTS_MORE: "failed release-worse", COSTS_LESS: "succeeded release-better", SAME: "succeeded release-same",
       INCONCLUSIVE: "queued release-inconclusive", NOT_COMPARED: "queued release-inconclusive"}


def reference_label(audit) -> str:
    """"v6 (approved)": as the engine echoed it, else as the audit was asked."""
    stored = (audit.reference or {}).get("label")
    if stored:
        return stored
    options = audit.options or {}
    if options.get("reference_label"):
        return options["reference_label"]
    return audit.reference_version.label if audit.reference_version_id else "the reference"


def regression_verdict(audit) -> str | None:
    """None without a reference; "not compared" when it was asked for but not compared (refused,
    failed, dropped as malformed); else the worst energy verdict over the batch sizes."""
    reference = audit.reference
    if reference is None:
        return NOT_COMPARED if audit.reference_version_id and audit.is_finished else None
    if reference.get("status") != "compared":
        return NOT_COMPARED
    verdicts = [r.get("verdict") or INCONCLUSIVE for r in reference.get("per_batch_size") or []]
    if not verdicts:
        return NOT_COMPARED
    return min(verdicts, key=lambda v: SEVERITY.index(v) if v in SEVERITY else SEVERITY.index(INCONCLUSIVE))


def _row(title: str, row: dict) -> dict:
    energy = ratio(row.get("energy_ratio"), row.get("energy_ratio_ci95"))
    latency = ratio(row.get("latency_ratio"), row.get("latency_ratio_ci95"))
    verdict = row.get("verdict") or INCONCLUSIVE
    return {
        "batch_size": row.get("batch_size"),
        "line": f"{title}: energy {energy}, latency {latency}: {verdict}",
        "energy": energy, "latency": latency, "verdict": verdict, "css": CSS.get(verdict, CSS[INCONCLUSIVE]),
        "latency_verdict": row.get("latency_verdict") or "",
        "grade": row.get("quality_grade") or "", "grade_reasons": row.get("quality_reasons") or [],
        "veto_reasons": row.get("veto_reasons") or [], "rounds": row.get("rounds"),
        "stopped_because": row.get("stopped_because") or "",
    }


def _fidelity(reference: dict) -> str:
    f = reference.get("fidelity") or {}
    if not f or not finite(f.get("value")):
        return ""
    better = "higher is better" if f.get("higher_is_better", True) else "lower is better"
    return f"{fidelity_label(f.get('metric'))} {f['value']:.4g} against the reference ({better}; reported, not judged)"


def release_summary(audit) -> dict | None:
    """The report's lead, or None for an audit with no reference."""
    if audit.reference is None and not audit.reference_version_id:
        return None
    title = f"{audit.model_version.label} vs {reference_label(audit)}"
    reference = audit.reference or {}
    summary = {"title": title, "status": reference.get("status") or "", "verdict": regression_verdict(audit),
               "basis": reference.get("basis") or "", "inputs": reference.get("inputs") or "",
               "fidelity": _fidelity(reference), "rows": [], "reason": reference.get("reason") or ""}
    summary["css"] = CSS.get(summary["verdict"], CSS[INCONCLUSIVE])
    if not audit.is_finished:
        summary["reason"] = f"{title}: measured in the same rounds once the audit runs."
    elif not reference:
        summary["reason"] = (f"{title}: the comparison's result was not stored (see the warnings)."
                             if audit.status == "succeeded" else f"{title}: not compared, the audit did not succeed.")
    elif summary["status"] != "compared":
        summary["reason"] = f"{title}: {summary['status']}: {summary['reason'] or 'no reason given'}"
    else:
        summary["rows"] = [_row(title, r) for r in sorted(reference.get("per_batch_size") or [],
                                                           key=lambda r: r.get("batch_size") or 0)]
    return summary


def _chain_figure(entries: list[dict], key: str, interval_key: str, what: str) -> dict:
    """One marker per version that carried a paired comparison, its interval as error bars and
    its reference beside it; one trace per batch size (shown in the legend even when alone); the
    dashed line at ×1 is "costs the same as its reference"."""
    by_batch: dict[int, dict] = {}
    for e in entries:
        release = e.get("release")
        if not release or not release["rows"]:
            continue
        for row in (e["audit"].reference or {}).get("per_batch_size") or []:
            value, ci = row.get(key), row.get(interval_key) or [None, None]
            if not finite(value):
                continue
            s = by_batch.setdefault(row.get("batch_size"), {"x": [], "y": [], "plus": [], "minus": [], "text": []})
            s["x"].append(e["version"].label)
            s["y"].append(value)
            s["plus"].append(ci[1] - value if finite(ci[1]) else 0.0)
            s["minus"].append(value - ci[0] if finite(ci[0]) else 0.0)
            s["text"].append(f"vs {reference_label(e['audit'])}")
    title = f"{what.capitalize()} ratio against each version's reference (paired, same rounds)"
    if not by_batch:
        return figures.empty_figure(title, "No version was audited against a reference version yet.")
    data = []
    for i, (batch, s) in enumerate(sorted(by_batch.items(), key=lambda kv: kv[0] or 0)):
        color = figures.PALETTE[i % len(figures.PALETTE)]
        # markers, not a line: each ratio is against its own reference, not a series of one quantity
        error_bars = {"type": "data", "symmetric": False, "array": s["plus"], "arrayminus": s["minus"], "color": color}
        data.append({"type": "scatter", "mode": "markers", "name": f"batch {batch}", "x": s["x"], "y": s["y"],
                     "text": s["text"], "error_y": error_bars,
                     "marker": {"color": color, "size": 9}, "cliponaxis": False,
                     "hovertemplate": f"%{{x}} %{{text}}<br>{what} ×%{{y:.3g}}<extra>batch {batch}</extra>"})
    # each version's tick names its reference: "v7 / vs v6 (approved)"
    ticks = {x: text for s in by_batch.values() for x, text in zip(s["x"], s["text"])}
    order = [e["version"].label for e in entries if e["version"].label in ticks]
    line_at_one = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 1, "y1": 1,
                   "line": {"color": "#5b6475", "dash": "dash", "width": 1}}
    return {"data": data, "layout": figures.layout(
        title, xaxis=figures.axis("Version", type="category", tickvals=order,
                                  ticktext=[f"{x}<br>{ticks[x]}" for x in order]),
        yaxis=figures.axis(f"{what.capitalize()} ratio (new / reference)"), shapes=[line_at_one], showlegend=True)}


def release_history(entries: list[dict]) -> dict:
    """Marks each history entry whose audit carried a paired comparison (``entry["release"]``)
    and draws the chain of paired ratios."""
    for e in entries:
        summary = release_summary(e["audit"])
        e["release"] = summary if summary and summary["rows"] else None
    return {
        "release_versions": [e["version"].label for e in entries if e["release"]],
        "release_figures": {
            "chart-release-energy": _chain_figure(entries, "energy_ratio", "energy_ratio_ci95", "energy"),
            "chart-release-latency": _chain_figure(entries, "latency_ratio", "latency_ratio_ci95", "latency"),
        },
    }
