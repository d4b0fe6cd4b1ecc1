"""Plotly figures as plain dicts, built on the server: results in, figure out. No database,
no plotly import at request time (the dict is what `Plotly.newPlot` takes); the page passes
each one through `json_script` and static/js/charts.js draws it."""
from __future__ import annotations

import math

from .tradeoff import Point, finite

PALETTE = ["#0b6e4f", "#1849a9", "#a15c00", "#b42318", "#6941c6", "#0e7090", "#c11574", "#4e5ba6"]
FONT = {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12, "color": "#1d2330"}


def _clean(value):
    """NaN and infinity have no JSON spelling; a missing value is a gap (null)."""
    return float(value) if finite(value) else None


def layout(title: str, **extra) -> dict:
    base = {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        "font": FONT,
        "margin": {"l": 64, "r": 20, "t": 44, "b": 60},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "legend": {"orientation": "h", "y": -0.3, "yanchor": "top"},
        "hovermode": "closest",
        "height": 340,
    }
    base.update(extra)
    return base


def axis(title: str, **extra) -> dict:
    return {"title": {"text": title}, "gridcolor": "#e6eaf0", "zeroline": False, "automargin": True, **extra}


def value_axis(title: str, values, *, suffix: str = "", **extra) -> dict:
    """Linear unless the values span more than 50x; SI-prefixed ticks (2m J, 350µ J)."""
    vals = [v for v in values if finite(v) and v > 0]
    spread = max(vals) / min(vals) if vals else 1.0
    # SI-prefixed ticks only with a unit: "2m" alone would read as minutes or metres.
    ticks = {"tickformat": "~s", "ticksuffix": suffix} if suffix else {}
    # A linear axis starts at 0 with the data's top plus a margin; plotly's own range for a
    # single small value is -1..1, which puts the point on the floor.
    linear = {"range": [0, max(vals) * 1.15]} if vals and "range" not in extra else {}
    return axis(title, type="log" if spread > 50 else "linear", **ticks, **(linear if spread <= 50 else {}), **extra)


def batch_axis(title: str, sizes, **extra) -> dict:
    sizes = sorted({s for s in sizes if finite(s)})
    return axis(title, type="log", tickvals=sizes, ticktext=[str(int(s)) for s in sizes], **extra)


def empty_figure(title: str, message: str) -> dict:
    return {
        "data": [],
        "layout": layout(
            title,
            xaxis={"visible": False},
            yaxis={"visible": False},
            annotations=[{"text": message, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
                          "font": {"color": "#5b6475"}}],
        ),
    }


def _energy_title(estimated: bool) -> str:
    return "J per inference (estimated)" if estimated else "J per inference"


def tradeoff_figure(points: list[Point], frontier: list[Point], *, recommended: str | None, estimated: bool) -> dict:
    """Accuracy against energy per inference, the Pareto frontier drawn through its points.
    Without any accuracy, energy against latency, saying that accuracy is unknown."""
    measured = [p for p in points if finite(p.energy_j)]
    if not measured:
        return empty_figure("Accuracy vs energy", "No variant was measured.")
    with_accuracy = [p for p in measured if finite(p.accuracy_pct)]
    if not with_accuracy:
        fig = {
            "data": [{
                "type": "scatter", "mode": "markers+text", "name": "variants",
                "x": [p.energy_j for p in measured], "y": [_clean(p.latency_ms) for p in measured],
                "text": [p.key for p in measured], "textposition": "top center",
                "marker": {"size": 11, "color": [PALETTE[0] if p.is_baseline else PALETTE[1] for p in measured]},
                "hovertemplate": "%{text}<br>%{x:.3g} J<br>%{y:.3g} ms<extra></extra>", "cliponaxis": False,
            }],
            "layout": layout(
                "Energy vs latency (accuracy unknown: no evaluation)",
                xaxis=value_axis(_energy_title(estimated), [p.energy_j for p in measured], suffix="J"),
                yaxis=value_axis("Latency p50 (ms)", [p.latency_ms for p in measured]),
                showlegend=False,
            ),
        }
        return fig
    # Labels on the points that matter (frontier, baseline, recommended); the rest on hover,
    # or a dozen variants' names pile up on one another.
    keep = {p.key for p in frontier} | {p.key for p in with_accuracy if p.is_baseline} | {recommended}
    data = [{
        "type": "scatter", "mode": "markers+text", "name": "variants",
        "x": [p.energy_j for p in with_accuracy], "y": [p.accuracy_pct for p in with_accuracy],
        "text": [p.key if p.key in keep else "" for p in with_accuracy], "textposition": "top center",
        "customdata": [p.key for p in with_accuracy],
        "marker": {"size": [16 if p.key == recommended else 11 for p in with_accuracy],
                   "color": [PALETTE[2] if p.key == recommended else (PALETTE[0] if p.is_baseline else PALETTE[1])
                             for p in with_accuracy],
                   "line": {"width": 1, "color": "#ffffff"}},
        "hovertemplate": "%{customdata}<br>%{x:.3g} J<br>%{y:.2f}%<extra></extra>", "cliponaxis": False,
    }]
    if frontier:
        data.append({
            "type": "scatter", "mode": "lines", "name": "Pareto frontier", "line": {"dash": "dot", "color": "#5b6475", "shape": "hv"},
            "x": [p.energy_j for p in frontier], "y": [p.accuracy_pct for p in frontier], "hoverinfo": "skip",
        })
    accs = [p.accuracy_pct for p in with_accuracy]
    pad = max(0.5, (max(accs) - min(accs)) * 0.25)
    return {"data": data, "layout": layout(
        "Accuracy vs energy per inference",
        xaxis=value_axis(_energy_title(estimated), [p.energy_j for p in with_accuracy], suffix="J"),
        yaxis=axis("Accuracy (%)", range=[min(accs) - pad, max(accs) + pad]))}


def batch_figure(series: list[dict], *, estimated: bool) -> dict:
    """Energy per inference and latency p50 against batch size, one line per variant.
    `series`: [{"name", "batch_sizes", "energy_j", "latency_ms"}]."""
    series = [s for s in series if s.get("batch_sizes")]
    if not series:
        return empty_figure("Energy and latency vs batch size", "No measurement.")
    sizes = [b for s in series for b in s["batch_sizes"]]
    energies = [v for s in series for v in s["energy_j"]]
    latencies = [v for s in series for v in s["latency_ms"]]
    data = []
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        common = {"type": "scatter", "mode": "lines+markers", "x": s["batch_sizes"], "legendgroup": s["name"],
                  "line": {"color": color}, "marker": {"color": color}}
        data.append({**common, "name": s["name"], "y": [_clean(v) for v in s["energy_j"]], "xaxis": "x", "yaxis": "y",
                     "hovertemplate": f"{s['name']}<br>batch %{{x}}<br>%{{y:.3g}} J<extra></extra>"})
        data.append({**common, "name": s["name"], "showlegend": False, "y": [_clean(v) for v in s["latency_ms"]],
                     "xaxis": "x2", "yaxis": "y2",
                     "hovertemplate": f"{s['name']}<br>batch %{{x}}<br>%{{y:.3g}} ms<extra></extra>"})
    return {
        "data": data,
        "layout": layout(
            "Energy and latency vs batch size",
            height=340 + 22 * (len(series) // 4),
            xaxis=batch_axis("Batch size", sizes, domain=[0, 0.44]),
            yaxis=value_axis(_energy_title(estimated), energies, suffix="J"),
            xaxis2=batch_axis("Batch size", sizes, domain=[0.56, 1]),
            yaxis2=value_axis("Latency p50 (ms)", latencies, anchor="x2"),
        ),
    }


def power_trace_figure(traces: list[dict], *, idle_w, estimated: bool) -> dict:
    """Power over the measurement with the idle baseline. `traces`: [{"name", "trace": [[s, W], ...]}]."""
    traces = [t for t in traces if t.get("trace")]
    if not traces:
        return empty_figure("Power during measurement", "No power trace was recorded.")
    data = []
    t_max = 0.0
    for i, t in enumerate(traces):
        xs = [_clean(row[0]) for row in t["trace"] if len(row) >= 2]
        ys = [_clean(row[1]) for row in t["trace"] if len(row) >= 2]
        t_max = max([t_max] + [x for x in xs if x is not None])
        data.append({"type": "scatter", "mode": "lines", "name": t["name"], "x": xs, "y": ys,
                     "line": {"color": PALETTE[i % len(PALETTE)], "width": 1.5}})
    if finite(idle_w):
        data.append({"type": "scatter", "mode": "lines", "name": f"idle {idle_w:.3g} W", "x": [0, t_max or 1],
                     "y": [idle_w, idle_w], "line": {"dash": "dash", "color": "#5b6475"}, "hoverinfo": "name"})
    title = "Power during measurement" + (" (estimated)" if estimated else "")
    return {"data": data, "layout": layout(title, xaxis=axis("Time (s)"), yaxis=axis("Power (W)", rangemode="tozero"))}


def layers_figure(layer_profile: list[dict], *, top: int = 15) -> dict:
    """The `top` layers by FLOPs per sample, largest at the top."""
    rows = [r for r in (layer_profile or []) if finite(r.get("flops"))]
    if not rows:
        return empty_figure("FLOPs per layer", "No per-layer profile for this model.")
    rows = sorted(rows, key=lambda r: r["flops"], reverse=True)[:top]
    rows.reverse()
    labels = [f"{r.get('name') or '?'} ({r.get('type') or '?'})" for r in rows]
    return {
        "data": [{
            "type": "bar", "orientation": "h", "x": [r["flops"] for r in rows], "y": labels,
            "marker": {"color": PALETTE[1]},
            "customdata": [round(100 * (r.get("share") or 0), 1) for r in rows],
            "hovertemplate": "%{y}<br>%{x:.3s} FLOPs (%{customdata}%)<extra></extra>",
        }],
        "layout": layout(f"FLOPs per layer, one sample (top {min(top, len(rows))})",
                         xaxis=axis("FLOPs per sample", tickformat="~s"), yaxis=axis("", automargin=True),
                         height=max(260, 26 * len(rows) + 90), showlegend=False),
    }


def breakdown_figure(rows: list[dict], *, estimated: bool) -> dict:
    """Energy per inference split into idle (baseline power over the call) and active.
    `rows`: [{"name", "total_j", "active_j"}]."""
    rows = [r for r in rows if finite(r.get("total_j"))]
    if not rows:
        return empty_figure("Energy breakdown", "No measurement.")
    names = [r["name"] for r in rows]
    active = [max(0.0, r["active_j"]) if finite(r.get("active_j")) else None for r in rows]
    idle = [max(0.0, r["total_j"] - a) if a is not None else None for r, a in zip(rows, active)]
    return {
        "data": [
            {"type": "bar", "name": "active", "x": names, "y": active, "marker": {"color": PALETTE[0]},
             "hovertemplate": "%{x}<br>active %{y:.3g} J<extra></extra>"},
            {"type": "bar", "name": "idle share", "x": names, "y": idle, "marker": {"color": "#b8c2d1"},
             "hovertemplate": "%{x}<br>idle %{y:.3g} J<extra></extra>"},
        ],
        "layout": layout("Energy breakdown per inference" + (" (estimated)" if estimated else ""), barmode="stack",
                         xaxis=axis(""), yaxis=axis(_energy_title(estimated))),
    }


def compare_bars_figure(groups: list[dict], *, title: str, unit: str, log: bool = False) -> dict:
    """Overlaid bars: one bar group per category, one series per audit.
    `groups`: [{"name": audit label, "x": [categories], "y": [values]}]."""
    groups = [g for g in groups if g.get("x")]
    if not groups:
        return empty_figure(title, "Nothing to compare.")
    data = [{"type": "bar", "name": g["name"], "x": [str(x) for x in g["x"]], "y": [_clean(v) for v in g["y"]],
             "marker": {"color": PALETTE[i % len(PALETTE)]},
             "hovertemplate": f"{g['name']}<br>%{{x}}<br>%{{y:.3g}} {unit}<extra></extra>"} for i, g in enumerate(groups)]
    values = [v for g in groups for v in g["y"]]
    return {"data": data, "layout": layout(title, barmode="group", xaxis=axis("Batch size", type="category"),
                                           yaxis=value_axis(unit, values, suffix=unit if unit == "J" else ""))}


def lines_figure(series: list[dict], *, title: str, x_title: str, y_title: str, x_type: str = "linear",
                 y_type: str = "linear", mode: str = "lines+markers", x_suffix: str = "", y_suffix: str = "",
                 empty_message: str = "No data yet.") -> dict:
    """Generic lines (or labelled markers): `series`: [{"name", "x", "y", "text"?}]. A "log"
    value axis becomes linear when the values span less than 50x."""
    series = [s for s in series if s.get("x") and any(finite(v) for v in s.get("y", []))]
    if not series:
        return empty_figure(title, empty_message)
    data = []
    for i, s in enumerate(series):
        trace = {"type": "scatter", "mode": mode, "name": s["name"], "x": s["x"], "y": [_clean(v) for v in s["y"]],
                 "line": {"color": PALETTE[i % len(PALETTE)]}, "marker": {"color": PALETTE[i % len(PALETTE)], "size": 9},
                 "connectgaps": True, "cliponaxis": False}
        if s.get("text"):
            trace["text"], trace["textposition"] = s["text"], "top center"
        data.append(trace)
    xs = [x for s in series for x in s["x"]]
    ys = [y for s in series for y in s["y"]]
    if x_type == "log":
        xaxis = batch_axis(x_title, xs) if all(isinstance(x, int) for x in xs) else value_axis(x_title, xs, suffix=x_suffix)
    else:
        xaxis = axis(x_title, type=x_type)
    yaxis = value_axis(y_title, ys, suffix=y_suffix) if y_type == "log" else axis(y_title, type=y_type)
    return {"data": data, "layout": layout(title, xaxis=xaxis, yaxis=yaxis)}


def rating_spread_figure(spread: dict[int, int]) -> dict:
    if not any(spread.values()):
        return empty_figure("Energy ratings", "No rated model version yet.")
    colors = {1: "#b42318", 2: "#dc6803", 3: "#eaaa08", 4: "#66c61c", 5: "#0b6e4f"}
    ratings = sorted(spread)
    return {
        "data": [{"type": "bar", "x": [f"{r}/5" for r in ratings], "y": [spread[r] for r in ratings],
                  "marker": {"color": [colors[r] for r in ratings]},
                  "hovertemplate": "rating %{x}: %{y} version(s)<extra></extra>"}],
        "layout": layout("Spread of energy ratings (5 = most efficient fifth)", xaxis=axis("Rating", type="category"),
                         yaxis=axis("Model versions", rangemode="tozero", **({"dtick": 1} if max(spread.values()) < 10 else {})),
                         showlegend=False, height=280),
    }


def log_safe(values) -> bool:
    """A log axis needs positive values."""
    return all(finite(v) and v > 0 for v in values if v is not None) and any(v is not None for v in values)


def is_finite_figure(fig: dict) -> bool:
    """True when no number in the figure is NaN or infinite (json_script would write NaN)."""
    def walk(value) -> bool:
        if isinstance(value, float):
            return math.isfinite(value)
        if isinstance(value, dict):
            return all(walk(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return all(walk(v) for v in value)
        return True

    return walk(fig)
