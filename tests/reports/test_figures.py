"""Figure builders: results in, a plotly figure dict out; JSON-safe, sensible when empty."""
import json

from audit.reports import figures
from audit.reports.quantities import QUANTITIES


def _json_safe(fig):
    json.dumps(fig, allow_nan=False)
    assert figures.is_finite_figure(fig)
    assert set(fig) == {"data", "layout"}


def test_tradeoff_with_accuracy_draws_points_and_frontier():
    points = [{"key": "baseline", "x": 1e-3, "y": 95.0, "is_baseline": True}, {"key": "int8", "x": 4e-4, "y": 94.5},
              {"key": "bad", "x": 2e-3, "y": 90.0}]
    fig = figures.tradeoff_figure(points, y=QUANTITIES["accuracy"], recommended="int8", estimated=True,
                                  frontier_keys=["int8", "baseline"])
    _json_safe(fig)
    assert fig["data"][0]["customdata"] == ["baseline", "int8", "bad"]
    assert fig["data"][0]["text"] == ["baseline", "int8", "bad"]  # a few points: every name fits
    many = points + [{"key": f"p{i}", "x": 3e-3 + i * 1e-4, "y": 80.0 - i} for i in range(4)]
    crowded = figures.tradeoff_figure(many, y=QUANTITIES["accuracy"], recommended="int8", estimated=True,
                                      frontier_keys=["int8", "baseline"])
    # labels on the frontier, the baseline and the recommended variant; the rest in the hover
    assert crowded["data"][0]["text"] == ["baseline", "int8", "", "", "", "", ""]
    assert crowded["data"][0]["customdata"][-1] == "p3"
    assert fig["data"][1]["name"] == "Pareto frontier" and fig["data"][1]["x"] == [4e-4, 1e-3]
    assert fig["layout"]["xaxis"]["title"]["text"] == "Energy per inference (J, est.)"
    assert fig["layout"]["yaxis"]["title"]["text"] == "Accuracy (%)"


def test_tradeoff_without_accuracy_says_so():
    fig = figures.tradeoff_figure([{"key": "baseline", "x": 1e-3, "y": 0.2, "is_baseline": True}],
                                  y=QUANTITIES["latency"], recommended=None, estimated=False)
    _json_safe(fig)
    assert "accuracy unknown" in fig["layout"]["title"]["text"]
    assert fig["layout"]["yaxis"]["title"]["text"] == "Latency p50 (ms)"
    empty = figures.tradeoff_figure([], y=QUANTITIES["accuracy"], recommended=None, estimated=False)
    _json_safe(empty)
    assert empty["data"] == [] and empty["layout"]["annotations"]


def test_log_axes_label_decades_not_every_minor_tick():
    """Values spanning orders of magnitude get a log axis with one label per decade and SI
    ticks with the unit (2mJ); a narrow range stays linear from zero."""
    wide = figures.q_axis(QUANTITIES["energy"], [1e-6, 3e-4, 2e-2])
    assert wide["type"] == "log" and wide["dtick"] == 1 and wide["tickformat"] == "~s" and wide["ticksuffix"] == "J"
    narrow = figures.q_axis(QUANTITIES["latency"], [2.0, 3.0])
    assert narrow["type"] == "linear" and narrow["range"][0] == 0 and narrow["tickformat"] == "~g"


def test_batch_power_breakdown_layers():
    batch = figures.batch_figure(
        [{"name": "baseline", "batch_sizes": [1, 8, 32], "energy_j": [1e-3, 3e-3, float("nan")], "latency_ms": [0.2, 0.9, 3.0]}],
        estimated=False,
    )
    _json_safe(batch)
    assert batch["data"][0]["y"][2] is None  # NaN becomes a gap, never "NaN" in the page
    assert batch["data"][1]["yaxis"] == "y2"

    power = figures.power_trace_figure([{"name": "baseline", "trace": [[0, 9.5], [0.5, 10.5], [1.0, 10.0]]}], idle_w=2.5, estimated=True)
    _json_safe(power)
    assert power["data"][-1]["y"] == [2.5, 2.5] and power["data"][-1]["x"] == [0, 1.0]
    _json_safe(figures.power_trace_figure([], idle_w=None, estimated=False))

    breakdown = figures.breakdown_figure([{"name": "baseline", "total_j": 2.0, "active_j": 1.5}], estimated=False)
    _json_safe(breakdown)
    assert breakdown["data"][0]["y"] == [1.5] and breakdown["data"][1]["y"] == [0.5]

    layers = figures.layers_figure([{"name": f"l{i}", "type": "Linear", "flops": i + 1, "share": 0.01} for i in range(40)])
    _json_safe(layers)
    assert len(layers["data"][0]["y"]) == 15 and layers["data"][0]["x"][-1] == 40  # largest at the top
    _json_safe(figures.layers_figure([]))


def test_compare_history_and_ratings_figures():
    bars = figures.compare_bars_figure([{"name": "#1", "x": [1, 8], "y": [1e-3, 2e-3]}, {"name": "#2", "x": [1], "y": [5e-4]}],
                                       title="Energy", quantity=QUANTITIES["energy"])
    _json_safe(bars)
    assert [t["name"] for t in bars["data"]] == ["#1", "#2"] and bars["data"][0]["x"] == ["1", "8"]
    _json_safe(figures.lines_figure([], title="t", x_title="x", y_title="y"))
    lines = figures.lines_figure([{"name": "cpu", "x": ["v1", "v2"], "y": [None, 1.0]}], title="t", x_title="x", y_title="y")
    _json_safe(lines)
    spread = figures.rating_spread_figure({1: 0, 2: 1, 3: 0, 4: 2, 5: 1})
    _json_safe(spread)
    assert spread["data"][0]["y"] == [0, 1, 0, 2, 1]
    _json_safe(figures.rating_spread_figure({r: 0 for r in range(1, 6)}))
