"""The report of a serving audit (issue 20): the workload and the load levels, every figure per
variant and level with the paired ratio to the baseline at that level, the answer within the SLO
(or the nearest miss), and the charts: the frontier (J per output token against TPOT p95) and
TTFT, TPOT and ITL p95 per level, with the SLO's targets drawn as lines.

Every number is the engine's figure as stored (workers/result_schema.py ServingLevel); the
answer is the one the worker derived (workers/engine/serving/answer.py), so the page and the API
cannot disagree.
"""
from __future__ import annotations

from ..models import Audit
from . import figures
from .formatting import joules, millis
from .tradeoff import finite

LATENCY_CHARTS = (("chart-serving-ttft", "ttft", "Time to first token", "ttft_ms"),
                  ("chart-serving-tpot", "tpot", "Time per output token", "tpot_ms"),
                  ("chart-serving-itl", "itl", "Inter-token latency", "tpot_ms"))


def is_serving(audit: Audit) -> bool:
    return (audit.scenario or {}).get("kind") == "serving"


def level_text(f: dict) -> str:
    if f.get("concurrency") is not None:
        return f"concurrency {f['concurrency']}"
    return f"{f['request_rate']:g} requests/s"


def _level_sort(f: dict) -> tuple:
    return (0, f["concurrency"]) if f.get("concurrency") is not None else (1, f.get("request_rate") or 0)


def _pair(v, f: dict) -> dict | None:
    key = "concurrency" if f.get("concurrency") is not None else "request_rate"
    return next((c for c in (v.details or {}).get("serving_comparison") or [] if c.get(key) == f.get(key)), None)


def serving_context(audit: Audit, variants) -> dict:
    """What the page's serving section shows; ``variants`` in the page's order."""
    scenario = audit.scenario or {}
    slo = scenario.get("slo") or {}
    answer = (audit.tradeoff or {}).get("serving") or {}
    cheapest, nearest = answer.get("cheapest"), answer.get("nearest")

    def is_marked(row: dict, marked: dict | None) -> bool:
        return bool(marked) and marked["recipe"] == row["recipe"] and \
            marked.get("concurrency") == row["level"].get("concurrency") and \
            marked.get("request_rate") == row["level"].get("request_rate")

    rows, failed = [], []
    for v in variants:
        levels = sorted((v.details or {}).get("serving") or [], key=_level_sort)
        if not levels:
            failed.append({"recipe": v.recipe, "status": v.status, "error": v.error})
        else:  # the levels it could not be served at, each with why
            failed += [{"recipe": v.recipe, "status": f"failed at {level_text(f)}", "error": f.get("error")}
                       for f in (v.details or {}).get("serving_failed") or []]
        for f in levels:
            row = {"recipe": v.recipe, "level": f, "load": level_text(f), "pair": _pair(v, f)}
            row["is_cheapest"], row["is_nearest"] = is_marked(row, cheapest), is_marked(row, nearest)
            rows.append(row)
    figs = _figures(rows, slo, any(r["level"].get("energy_estimated") for r in rows))
    windows = [r["level"] for r in rows]
    return {
        "workload": scenario.get("workload") or {},
        "levels": [level_text(lv) for lv in scenario.get("load_levels") or []],
        "backend": scenario.get("backend"), "backend_version": scenario.get("backend_version"),
        "slo": slo, "answer": answer, "rows": rows, "failed": failed, "figures": figs,
        "window_s": sum(w.get("steady_window_s") or 0 for w in windows),
        "window_requests": sum(w.get("steady_requests") or 0 for w in windows),
        "window_tokens": sum(w.get("steady_output_tokens") or 0 for w in windows),
    }


def _series_by_variant(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["recipe"], []).append(r)
    return out


def _slo_line(value, *, horizontal: bool, label: str) -> tuple[dict, dict]:
    """A target drawn across the plot (a shape) with its label (an annotation)."""
    if horizontal:
        shape = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": value, "y1": value,
                 "line": {"color": "#b42318", "dash": "dash", "width": 1.5}}
        note = {"xref": "paper", "x": 1, "xanchor": "right", "yref": "y", "y": value, "yanchor": "bottom",
                "text": label, "showarrow": False, "font": {"color": "#b42318", "size": 11}}
    else:
        shape = {"type": "line", "yref": "paper", "y0": 0, "y1": 1, "xref": "x", "x0": value, "x1": value,
                 "line": {"color": "#b42318", "dash": "dash", "width": 1.5}}
        note = {"yref": "paper", "y": 1, "yanchor": "bottom", "xref": "x", "x": value, "xanchor": "left",
                "text": label, "showarrow": False, "font": {"color": "#b42318", "size": 11}}
    return shape, note


def _figures(rows: list[dict], slo: dict, estimated: bool) -> dict:
    by_variant = _series_by_variant(rows)
    figs = {"chart-serving-frontier": _frontier_figure(by_variant, slo, estimated)}
    loads = [r["load"] for r in sorted(rows, key=lambda r: _level_sort(r["level"]))]
    loads = list(dict.fromkeys(loads))
    for chart, name, title, slo_key in LATENCY_CHARTS:
        data = []
        for i, (recipe, rs) in enumerate(by_variant.items()):
            color = figures.PALETTE[i % len(figures.PALETTE)]
            rs = sorted(rs, key=lambda r: _level_sort(r["level"]))
            data.append({"type": "scatter", "mode": "lines+markers", "name": recipe, "x": [r["load"] for r in rs],
                         "y": [figures._clean(r["level"].get(f"{name}_ms_p95")) for r in rs],
                         "line": {"color": color}, "marker": {"color": color, "size": 8},
                         # each point's words in the page's units (formatting.millis), not plotly's
                         "hovertext": [f"{recipe} · {r['load']}<br>{name.upper()} p95 "
                                       f"{millis(r['level'].get(f'{name}_ms_p95'))}" for r in rs],
                         "hovertemplate": "%{hovertext}<extra></extra>"})
        values = [y for t in data for y in t["y"] if finite(y)]
        target = slo.get(slo_key)
        shapes, notes = [], []
        if target is not None:
            label = f"{'TPOT' if slo_key == 'tpot_ms' else 'TTFT'} target {target:g} ms"
            if name == "itl":
                label += " (for comparison: ITL is not judged)"
            shape, note = _slo_line(target, horizontal=True, label=label)
            shapes.append(shape)
            notes.append(note)
            values.append(target)
        fig_title = f"{title} p95 per load level"
        if not values:
            figs[chart] = figures.empty_figure(fig_title, "No level has this figure.")
            continue
        figs[chart] = {"data": data, "layout": figures.layout(
            fig_title, shapes=shapes, annotations=notes,
            xaxis=figures.axis("Load level", type="category", categoryorder="array", categoryarray=loads),
            yaxis=figures.value_axis(f"{name.upper()} p95 (ms)", values))}
    return figs


def _frontier_figure(by_variant: dict, slo: dict, estimated: bool) -> dict:
    title = "Energy per output token vs TPOT p95 (each point a variant at a load level)"
    data, xs, ys = [], [], []
    for i, (recipe, rs) in enumerate(by_variant.items()):
        color = figures.PALETTE[i % len(figures.PALETTE)]
        pts = [(r["level"].get("tpot_ms_p95"), r["level"].get("energy_j_per_output_token"), r["load"]) for r in rs]
        pts = [p for p in pts if finite(p[0]) and finite(p[1])]
        if not pts:
            continue
        xs += [p[0] for p in pts]
        ys += [p[1] for p in pts]
        data.append({"type": "scatter", "mode": "markers+text", "name": recipe, "x": [p[0] for p in pts],
                     "y": [p[1] for p in pts], "text": [p[2].replace("concurrency ", "c=") for p in pts],
                     "textposition": "top center", "cliponaxis": False,
                     "marker": {"color": color, "size": 10},
                     "hovertext": [f"{recipe} · {p[2]}<br>TPOT p95 {millis(p[0])}<br>{joules(p[1])} per output token"
                                   for p in pts],
                     "hovertemplate": "%{hovertext}<extra></extra>"})
    if not data:
        return figures.empty_figure(title, "No level has both figures.")
    shapes, notes = [], []
    if slo.get("tpot_ms") is not None:
        shape, note = _slo_line(slo["tpot_ms"], horizontal=False, label=f"TPOT target {slo['tpot_ms']:g} ms")
        shapes.append(shape)
        notes.append(note)
        xs.append(slo["tpot_ms"])
    y_title = "J per output token" + (" (estimated)" if estimated else "")
    return {"data": data, "layout": figures.layout(
        title, shapes=shapes, annotations=notes, height=380,
        xaxis=figures.value_axis("TPOT p95 (ms)", xs), yaxis=figures.value_axis(y_title, ys, suffix="J"))}
