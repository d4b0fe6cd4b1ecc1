"""Plotly figures as plain dicts, built on the server: results in, figure out. No database,
no plotly import at request time (the dict is what `Plotly.newPlot` takes); the page passes
each one through `json_script` and static/js/charts.js draws it."""
from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta

from . import formatting
from .formatting import lower_first
from .quantities import QUANTITIES, Quantity
from .tradeoff import finite

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
    """Linear unless the values span more than 50x; SI-prefixed ticks with a unit (2mJ, 350µJ),
    plain trimmed numbers without one. On a log axis, one labelled tick per decade (or 1-2-5
    when the data span only a decade or two), never a label on every minor tick."""
    vals = [v for v in values if finite(v) and v > 0]
    spread = max(vals) / min(vals) if vals else 1.0
    # SI-prefixed ticks only with a unit: "2m" alone would read as minutes or metres.
    ticks = {"tickformat": "~s", "ticksuffix": suffix} if suffix else {"tickformat": "~g"}
    forced = extra.pop("type", None)  # a stacked bar chart must stay linear
    if forced == "log" or (spread > 50 and forced != "linear"):
        return axis(title, type="log", dtick=1 if spread >= 1000 else "D2", **ticks, **extra)
    # A linear axis starts at 0 with the data's top plus a margin; plotly's own range for a
    # single small value is -1..1, which puts the point on the floor.
    linear = {"range": [0, max(vals) * 1.15]} if vals and "range" not in extra else {}
    return axis(title, type="linear", **ticks, **linear, **extra)


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


def title_for(q: Quantity, estimated: bool = False) -> str:
    """An axis title from the quantity itself; energy says when it is estimated."""
    if estimated and q.unit in ("J", "W"):
        return f"{q.label} ({q.unit}, est.)"
    return q.axis_title


def q_axis(q: Quantity, values, *, estimated: bool = False, **extra) -> dict:
    """A value axis for a quantity: log when the values span more than 50x and the quantity
    allows it, SI-prefixed ticks with the unit where it has one (2mJ), plain numbers otherwise."""
    if q.log:
        return value_axis(title_for(q, estimated), values, suffix=q.tick_suffix, **extra)
    if q.key == "accuracy":
        return axis(title_for(q, estimated), ticksuffix="%", **extra)
    return axis(title_for(q, estimated), **({"tickformat": "~s", "ticksuffix": q.tick_suffix} if q.tick_suffix else {}),
                **extra)


def _said(q: Quantity, value) -> str:
    """A hover line in the page's own units: "Energy per inference: 48.6 mJ", never plotly's
    "0.04862 J" (each point's text is written here, with the formatter the tables use)."""
    return f"{q.label}: {q.fmt(value)}"


def scatter_figure(series: list[dict], *, x: Quantity, y: Quantity, title: str, estimated: bool = False,
                   frontier: list[dict] | None = None, empty_message: str = "No variant has both figures.") -> dict:
    """One quantity against another; one trace per series (an audit, or the variants of one).
    `series`: [{"name", "points": [{"label", "x", "y", "show_label"?, "highlight"?}]}]. Labels sit on
    the points that matter (`show_label`); every name is in the hover."""
    drawn = []
    for s in series:
        pts = [p for p in s["points"] if finite(p.get("x")) and finite(p.get("y"))]
        if pts:
            drawn.append((s, pts))
    if not drawn:
        return empty_figure(title, empty_message)
    data = []
    for i, (s, pts) in enumerate(drawn):
        color = PALETTE[i % len(PALETTE)]
        data.append({
            "type": "scatter", "mode": "markers+text", "name": s["name"],
            "x": [float(p["x"]) for p in pts], "y": [float(p["y"]) for p in pts],
            "text": [p["label"] if p.get("show_label", True) else "" for p in pts], "textposition": "top center",
            "textfont": {"size": 11}, "customdata": [p["label"] for p in pts],
            "marker": {"size": [15 if p.get("highlight") else 10 for p in pts],
                       "color": [p.get("color") or color for p in pts], "line": {"width": 1, "color": "#ffffff"}},
            "hovertext": [f"{_said(x, p['x'])}<br>{_said(y, p['y'])}" for p in pts],
            "hovertemplate": f"%{{customdata}}<br>%{{hovertext}}<extra>{s['name']}</extra>",
            "cliponaxis": False, "meta": {"x": x.key, "y": y.key},
        })
    if frontier:
        data.append({"type": "scatter", "mode": "lines", "name": "Pareto frontier",
                     "line": {"dash": "dot", "color": "#5b6475", "shape": "hv"},
                     "x": [float(p["x"]) for p in frontier], "y": [float(p["y"]) for p in frontier],
                     "hoverinfo": "skip", "meta": {"x": x.key, "y": y.key}})
    xs = [p["x"] for _, pts in drawn for p in pts]
    ys = [p["y"] for _, pts in drawn for p in pts]
    yaxis = q_axis(y, ys, estimated=estimated)
    if not y.log and "range" not in yaxis:
        lo, hi = min(ys), max(ys)
        pad = max((hi - lo) * 0.25, abs(hi) * 0.01, 1e-9)
        yaxis["range"] = [lo - pad, hi + pad]
    return {"data": data, "layout": layout(title, xaxis=q_axis(x, xs, estimated=estimated), yaxis=yaxis,
                                           showlegend=len(drawn) > 1 or bool(frontier))}


def tradeoff_figure(points: list[dict], *, y: Quantity, recommended: str | None, estimated: bool,
                    frontier_keys: list[str] | None = None, x: Quantity = QUANTITIES["energy"]) -> dict:
    """The report's trade-off: `y` (accuracy, fidelity, or latency when neither is known) against
    energy, the Pareto frontier drawn through its points. `points`: [{"key", "x", "y", "is_baseline"}]."""
    frontier_keys = frontier_keys or []
    keep = set(frontier_keys) | {p["key"] for p in points if p.get("is_baseline")} | {recommended}
    if len(points) <= 5:  # a few names fit; a dozen pile up on one another (hover has them all)
        keep |= {p["key"] for p in points}
    pts = [{"label": p["key"], "x": p["x"], "y": p["y"], "show_label": p["key"] in keep,
            "highlight": p["key"] == recommended,
            "color": PALETTE[2] if p["key"] == recommended else (PALETTE[0] if p.get("is_baseline") else PALETTE[1])}
           for p in points]
    by_key = {p["key"]: p for p in points if finite(p.get("x")) and finite(p.get("y"))}
    frontier = sorted((by_key[k] for k in frontier_keys if k in by_key), key=lambda p: p["x"])
    if y.key in ("accuracy", "fidelity"):
        title = f"{y.label} vs {lower_first(x.label)}"
    else:
        title = f"{y.label} vs {lower_first(x.label)} (accuracy unknown: no evaluation)"
    if not any(finite(p.get("x")) for p in points):
        return empty_figure(title, "No variant was measured.")
    return scatter_figure([{"name": "variants", "points": pts}], x=x, y=y, title=title, estimated=estimated,
                          frontier=frontier)


def batch_lines_figure(series: list[dict], *, y: Quantity, title: str, estimated: bool = False) -> dict:
    """One quantity against batch size, one line per variant. `series`: [{"name", "points": [(batch, value)]}]."""
    series = [s for s in series if any(finite(v) for _, v in s["points"])]
    if not series:
        return empty_figure(title, "No measurement has this figure.")
    data = []
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        pts = sorted(s["points"])
        data.append({"type": "scatter", "mode": "lines+markers", "name": s["name"], "x": [b for b, _ in pts],
                     "y": [_clean(v) for _, v in pts], "line": {"color": color}, "marker": {"color": color, "size": 8},
                     "hovertext": [_said(y, v) for _, v in pts],
                     "hovertemplate": f"{s['name']}<br>batch %{{x}}<br>%{{hovertext}}<extra></extra>",
                     "meta": {"x": "batch_size", "y": y.key}})
    sizes = [b for s in series for b, _ in s["points"]]
    values = [v for s in series for _, v in s["points"]]
    return {"data": data, "layout": layout(title, height=340 + 22 * (len(series) // 4),
                                           xaxis=batch_axis("Batch size", sizes),
                                           yaxis=q_axis(y, values, estimated=estimated))}


def batch_figure(series: list[dict], *, estimated: bool, latency: Quantity = QUANTITIES["latency"],
                 energy: Quantity = QUANTITIES["energy"]) -> dict:
    """Energy per inference and latency against batch size, one line per variant.
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
                     "hovertext": [_said(energy, v) for v in s["energy_j"]],
                     "hovertemplate": f"{s['name']}<br>batch %{{x}}<br>%{{hovertext}}<extra></extra>",
                     "meta": {"x": "batch_size", "y": energy.key}})
        data.append({**common, "name": s["name"], "showlegend": False, "y": [_clean(v) for v in s["latency_ms"]],
                     "xaxis": "x2", "yaxis": "y2", "hovertext": [_said(latency, v) for v in s["latency_ms"]],
                     "hovertemplate": f"{s['name']}<br>batch %{{x}}<br>%{{hovertext}}<extra></extra>",
                     "meta": {"x": "batch_size", "y": latency.key}})
    return {
        "data": data,
        "layout": layout(
            f"{energy.label} and {latency.label.lower()} vs batch size",
            height=340 + 22 * (len(series) // 4),
            xaxis=batch_axis("Batch size", sizes, domain=[0, 0.42]),
            yaxis=q_axis(energy, energies, estimated=estimated),
            xaxis2=batch_axis("Batch size", sizes, domain=[0.58, 1]),
            yaxis2=q_axis(latency, latencies, anchor="x2"),
        ),
    }


def energy_share_figure(rows: list[dict], *, batch_size: int | None) -> dict:
    """Generation: the share of a request's energy spent in prefill and in decode, per variant.
    `rows`: [{"name", "prefill_share"}] (0-1)."""
    rows = [r for r in rows if finite(r.get("prefill_share"))]
    title = "Prefill vs decode energy share" + (f" at batch size {batch_size}" if batch_size else "")
    if not rows:
        return empty_figure(title, "No generation measurement.")
    names = [r["name"] for r in rows]
    prefill = [100 * r["prefill_share"] for r in rows]
    decode = [100 - p for p in prefill]
    return {
        "data": [
            {"type": "bar", "orientation": "h", "name": "prefill", "y": names, "x": prefill,
             "marker": {"color": PALETTE[1]}, "hovertemplate": "%{y}<br>prefill %{x:.1f}% of the energy<extra></extra>",
             "meta": {"x": "prefill_share_pct", "y": "variant"}},
            {"type": "bar", "orientation": "h", "name": "decode", "y": names, "x": decode,
             "marker": {"color": PALETTE[0]}, "hovertemplate": "%{y}<br>decode %{x:.1f}% of the energy<extra></extra>",
             "meta": {"x": "decode_share_pct", "y": "variant"}},
        ],
        "layout": layout(title, barmode="stack", height=max(220, 40 * len(rows) + 140),
                         xaxis=axis("Share of the request's energy (%)", range=[0, 100], ticksuffix="%"),
                         yaxis=axis("", automargin=True)),
    }


def legend_rows(names, width_px: int = 520) -> int:
    """How many rows a horizontal legend of these names takes in a chart about `width_px` wide
    (about 7 px a character at 12 px, 40 px for the swatch and the gap): the figure grows by a row's
    height for each row past the first, so the legend's last row is never cut off by the chart's
    fixed height."""
    rows, used = 1, 0
    for name in names:
        w = 40 + 7 * len(str(name))
        if used and used + w > width_px:
            rows, used = rows + 1, 0
        used += w
    return rows


POWER_TRACES_SHOWN = 4


def power_trace_figure(traces: list[dict], *, idle_w, estimated: bool) -> dict:
    """Power over the measurement with the idle baseline. `traces`: [{"name", "trace": [[s, W], ...]}],
    in the order they matter (the baseline and the recommended variant first). Every variant with a
    trace is in the legend; past the first four, a trace is drawn when its legend entry is clicked
    (plotly's "legendonly"), so four lines at most cross each other but none is left out."""
    traces = [t for t in traces if t.get("trace")]
    if not traces:
        return empty_figure("Power during measurement", "No power trace was recorded.")
    data = []
    t_max = 0.0
    for i, t in enumerate(traces):
        xs = [_clean(row[0]) for row in t["trace"] if len(row) >= 2]
        ys = [_clean(row[1]) for row in t["trace"] if len(row) >= 2]
        t_max = max([t_max] + [x for x in xs if x is not None])
        data.append({"type": "scatter", "mode": "lines", "name": t["name"], "x": xs, "y": ys, "showlegend": True,
                     "visible": True if i < POWER_TRACES_SHOWN else "legendonly",
                     "line": {"color": PALETTE[i % len(PALETTE)], "width": 1.5}, "meta": {"x": "time_s", "y": "power_w"},
                     "hovertemplate": "%{x:.2f} s<br>%{y:.3g} W<extra>%{fullData.name}</extra>"})
    if finite(idle_w):
        data.append({"type": "scatter", "mode": "lines", "name": f"idle {idle_w:.3g} W", "x": [0, t_max or 1],
                     "y": [idle_w, idle_w], "line": {"dash": "dash", "color": "#5b6475"}, "hoverinfo": "name",
                     "showlegend": True, "meta": {"x": "time_s", "y": "power_w"}})
    title = "Power during measurement" + (" (estimated)" if estimated else "")
    if len(traces) > POWER_TRACES_SHOWN:
        title += f"<br><sup>{POWER_TRACES_SHOWN} of {len(traces)} variants drawn: click a name to draw it</sup>"
    rows = legend_rows(d["name"] for d in data)
    return {"data": data, "layout": layout(title, height=340 + 22 * (rows - 1),
                                           margin={"l": 64, "r": 20, "t": 56 if len(traces) > POWER_TRACES_SHOWN else 44,
                                                   "b": 60},
                                           # both axes start at 0: the labels step back from the
                                           # corner, or the two zeros sit on one another
                                           xaxis=axis("Time (s)", ticklabelstandoff=4),
                                           yaxis=axis("Power (W)", rangemode="tozero", ticklabelstandoff=6))}


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
            "hovertext": [f"{formatting.flops(r['flops'])} ({100 * (r.get('share') or 0):.1f}% of the model)" for r in rows],
            "hovertemplate": "%{y}<br>%{hovertext}<extra></extra>",
            "meta": {"x": "flops_layer", "y": "layer"},
        }],
        "layout": layout(f"FLOPs per layer, one sample (top {min(top, len(rows))})",
                         xaxis=axis("FLOPs per sample, this layer", tickformat="~s"),
                         yaxis=axis("Layer (type)", automargin=True, ticklabelstandoff=4),
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
             "hovertext": [f"active {formatting.joules(v)}" for v in active],
             "hovertemplate": "%{x}<br>%{hovertext}<extra></extra>", "meta": {"x": "variant", "y": "energy_part"}},
            {"type": "bar", "name": "idle share", "x": names, "y": idle, "marker": {"color": "#b8c2d1"},
             "hovertext": [f"idle {formatting.joules(v)}" for v in idle],
             "hovertemplate": "%{x}<br>%{hovertext}<extra></extra>", "meta": {"x": "variant", "y": "energy_part"}},
        ],
        # The y title is short enough for the plot's height (a long one ran past the top of the
        # plot, over the chart's title): what the parts are is in the chart's title and legend.
        "layout": layout("Energy per inference: active and idle parts" + (" (estimated)" if estimated else ""),
                         barmode="stack", xaxis=axis(""),
                         yaxis=axis("Active + idle energy (J, est.)" if estimated else "Active + idle energy (J)",
                                    tickformat="~s", ticksuffix="J", rangemode="tozero", ticklabelstandoff=4)),
    }


def compare_bars_figure(groups: list[dict], *, title: str, quantity: Quantity) -> dict:
    """Grouped bars: one group per batch size, one series per audit.
    `groups`: [{"name": audit label, "x": [batch sizes], "y": [values of `quantity`]}]."""
    groups = [g for g in groups if g.get("x")]
    if not groups:
        return empty_figure(title, "Nothing to compare.")
    data = [{"type": "bar", "name": g["name"], "x": [str(x) for x in g["x"]], "y": [_clean(v) for v in g["y"]],
             "marker": {"color": PALETTE[i % len(PALETTE)]},
             "hovertext": [_said(quantity, v) for v in g["y"]],
             "hovertemplate": f"{g['name']}<br>batch %{{x}}<br>%{{hovertext}}<extra></extra>",
             "meta": {"x": "batch_size", "y": quantity.key}} for i, g in enumerate(groups)]
    values = [v for g in groups for v in g["y"]]
    categories = sorted({x for g in groups for x in g["x"]}, key=lambda x: (float(x) if finite(x) else 0, str(x)))
    return {"data": data, "layout": layout(title, barmode="group",
                                           xaxis=axis("Batch size", type="category", categoryorder="array",
                                                      categoryarray=[str(x) for x in categories]),
                                           yaxis=q_axis(quantity, values))}


def versions_figure(series: list[dict], *, y: Quantity, title: str, estimated: bool = False,
                    empty_message: str = "No version has this figure.") -> dict:
    """A quantity across model versions (category axis), one line per hardware class and batch size.
    `series`: [{"name", "x": [version labels], "y": [values]}]."""
    series = [s for s in series if s.get("x") and any(finite(v) for v in s.get("y", []))]
    if not series:
        return empty_figure(title, empty_message)
    data = [{"type": "scatter", "mode": "lines+markers", "name": s["name"], "x": s["x"], "y": [_clean(v) for v in s["y"]],
             "line": {"color": PALETTE[i % len(PALETTE)]}, "marker": {"color": PALETTE[i % len(PALETTE)], "size": 9},
             "connectgaps": True, "hovertext": [_said(y, v) for v in s["y"]],
             "hovertemplate": f"%{{x}}<br>%{{hovertext}}<extra>{s['name']}</extra>",
             "meta": {"x": "version", "y": y.key}} for i, s in enumerate(series)]
    values = [v for s in series for v in s["y"]]
    return {"data": data, "layout": layout(title, xaxis=axis("Version", type="category"),
                                           yaxis=q_axis(y, values, estimated=estimated))}


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


WEEK_MS = 7 * 24 * 3600 * 1000


def week_axis(weeks, **extra) -> dict:
    """A date axis for points that are weeks (x: the Monday of each ISO week): one tick per week,
    or per 2, 3... weeks when there are many, each on a Monday and labelled once ("24 Nov"), never
    plotly's own day or 12-hour ticks that repeat a date ("29 Nov, 29 Nov, 30 Nov"). The range
    reaches half a week past the first and last week, so no point (nor bar) sits on the y-axis
    and the first date label keeps clear of the y-axis's lowest label."""
    days = sorted({date.fromisoformat(str(w)[:10]) for w in weeks})
    first, last = days[0], days[-1]
    n_weeks = (last - first).days // 7 + 1
    step = max(1, math.ceil(n_weeks / 8))  # eight labels at most
    half = timedelta(days=3, hours=12)
    fmt = "%d %b" if first.year == last.year else "%d %b %Y"
    return axis("Week", type="date", tick0=first.isoformat(), dtick=step * WEEK_MS, tickformat=fmt,
                range=[(datetime.combine(first, time()) - half).isoformat(sep=" "),
                       (datetime.combine(last, time()) + half).isoformat(sep=" ")],
                ticklabelstandoff=4, **extra)


def weekly_bars_figure(series: list[dict], *, title: str) -> dict:
    """Counts per week (x: the Monday of each ISO week), stacked, one colour per model."""
    series = [s for s in series if s.get("x")]
    if not series:
        return empty_figure(title, "No audit in this period.")
    # a bar is most of a week wide: on a date axis plotly sizes bars from the gaps between them,
    # and a single week's bar came out a hairline
    data = [{"type": "bar", "name": s["name"], "x": s["x"], "y": s["y"], "marker": {"color": PALETTE[i % len(PALETTE)]},
             "width": [0.8 * WEEK_MS] * len(s["x"]),
             "hovertemplate": f"{s['name']}<br>week of %{{x|%d %b %Y}}<br>%{{y}} audit(s)<extra></extra>",
             "meta": {"x": "week", "y": "audits"}} for i, s in enumerate(series)]
    top = max(sum(s["y"][s["x"].index(w)] for s in series if w in s["x"]) for w in {w for s in series for w in s["x"]})
    return {"data": data, "layout": layout(title, barmode="stack", xaxis=week_axis([w for s in series for w in s["x"]]),
                                           yaxis=axis("Audits", rangemode="tozero", ticklabelstandoff=6,
                                                      **({"dtick": 1} if top < 10 else {})))}


_WEEKLY_FORMAT = {"Wh": formatting.wh, "g": formatting.grams}


def weekly_lines_figure(series: list[dict], *, title: str, y_title: str, suffix: str) -> dict:
    """A figure per week and model; each point's hover names the grid intensity it used."""
    series = [s for s in series if s.get("x") and any(finite(v) for v in s["y"])]
    if not series:
        return empty_figure(title, "No succeeded audit in this period.")
    data = [{"type": "scatter", "mode": "lines+markers", "name": s["name"], "x": s["x"], "y": [_clean(v) for v in s["y"]],
             "text": s.get("text"), "line": {"color": PALETTE[i % len(PALETTE)]},
             "marker": {"color": PALETTE[i % len(PALETTE)], "size": 8}, "connectgaps": True,
             "hovertext": [_WEEKLY_FORMAT.get(suffix, formatting.sig)(v) for v in s["y"]],
             "hovertemplate": f"{s['name']}<br>week of %{{x|%d %b %Y}}<br>%{{hovertext}}<br>%{{text}}<extra></extra>",
             "meta": {"x": "week", "y": suffix}} for i, s in enumerate(series)]
    values = [v for s in series for v in s["y"]]
    return {"data": data, "layout": layout(title, xaxis=week_axis([w for s in series for w in s["x"]]),
                                           yaxis=value_axis(y_title, values, suffix=suffix, ticklabelstandoff=6))}


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
