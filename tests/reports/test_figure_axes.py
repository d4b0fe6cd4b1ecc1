"""No chart plots one quantity under another's title (issue 11: the compare chart titled
"Accuracy vs energy" drew latency on its accuracy axis when a model had no accuracy).

Every figure of the report, compare and history pages is built from stored audits with known
values; for each trace, the values on each axis must come from the quantity that axis's title
names, read here straight from the database rows, independently of the page's own code."""
import json
import math
from pathlib import Path

import pytest

from audit.models import Evaluation, Measurement, Variant
from audit.reports.quantities import AXIS_CHOICES
from audit.reports.report_page import audit_report_context
from audit.reports.compare_page import compare_context
from audit.reports.history_page import model_history_context
from audit.services import audits as services

from ..factories import make_audit, make_version
from .helpers import stored_audit, variant_doc

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parent / "data"


def _accuracy_pct(ev: Evaluation):
    if ev.value is None or ev.metric.lower() not in ("accuracy", "top1", "acc"):
        return None
    return ev.value * 100 if 0 <= ev.value <= 1 else ev.value


def _m(field):
    return lambda ctx: {getattr(m, field) for m in ctx["measurements"]}


# Axis title (without ", estimated") -> the values that quantity has in the database.
SOURCES = {
    "Energy per inference (J)": _m("energy_j_per_inference"),
    "Energy per sample (J)": _m("energy_j_per_sample"),
    "Energy per output token (J)": _m("energy_j_per_output_token"),
    "Latency p50 (ms)": _m("latency_p50_ms"),
    "Latency mean (ms)": _m("latency_mean_ms"),
    "Latency p95 (ms)": _m("latency_p95_ms"),
    "Time to first token p95 (ms)": _m("ttft_ms_p95"),
    "Time per output token p95 (ms)": _m("tpot_ms_p95"),
    "Throughput (samples/s)": _m("throughput_samples_per_s"),
    "Output tokens per second (tok/s)": _m("output_tokens_per_s"),
    "Average power (W)": _m("avg_power_w"),
    "Batch size": _m("batch_size"),
    "Accuracy (%)": lambda ctx: {_accuracy_pct(e) for e in ctx["evaluations"]},
    "Fidelity to the baseline": lambda ctx: {e.fidelity_value for e in ctx["evaluations"]},
    "FLOPs per sample (FLOPs)": lambda ctx: {v.flops for v in ctx["variants"]},
    "Model size (bytes)": lambda ctx: {v.size_bytes for v in ctx["variants"]},
    "Parameters": lambda ctx: {v.params for v in ctx["variants"]},
    "FLOPs per sample, this layer": lambda ctx: {row.get("flops") for v in ctx["variants"] for row in v.layer_profile},
    "Time (s)": lambda ctx: {p[0] for m in ctx["measurements"] for p in m.power_trace},
    "Power (W)": lambda ctx: {p[1] for m in ctx["measurements"] for p in m.power_trace}
    | {m.idle_power_w for m in ctx["measurements"]},
    "Active + idle energy (J)": lambda ctx: {m.energy_j_per_inference_active for m in ctx["measurements"]}
    | {m.energy_j_per_inference - m.energy_j_per_inference_active for m in ctx["measurements"]},
    "Share of the request's energy (%)": lambda ctx: {100 * m.prefill_energy_share for m in ctx["measurements"]
                                                     if m.prefill_energy_share is not None}
    | {100 - 100 * m.prefill_energy_share for m in ctx["measurements"] if m.prefill_energy_share is not None},
    "Version": lambda ctx: set(ctx["versions"]),
}
# Axes that name things, not quantities (variant names, rating buckets, layer names).
CATEGORICAL = {"", "Rating", "Layer (type)"}


def _key(value):
    if isinstance(value, str):
        try:  # a category axis of batch sizes holds "1", "8"
            value = float(value)
        except ValueError:
            return value
    return None if value is None or not math.isfinite(value) else float(f"{float(value):.9g}")


def _db_context(audits, versions=()) -> dict:
    variants = list(Variant.objects.filter(audit__in=audits))
    return {"variants": variants, "measurements": list(Measurement.objects.filter(variant__in=variants)),
            "evaluations": list(Evaluation.objects.filter(variant__in=variants)), "versions": list(versions)}


def _axis_title(layout: dict, name: str) -> str:
    return ((layout.get(name) or {}).get("title") or {}).get("text", "").replace(", est.)", ")")


def check_axes(figure_name: str, fig: dict, db: dict) -> int:
    """Asserts every trace's data belongs to the quantity its axes' titles name; returns how many
    (trace, axis) pairs were checked."""
    checked = 0
    for trace in fig["data"]:
        for axis_letter in ("x", "y"):
            ref = trace.get(f"{axis_letter}axis", axis_letter)  # "x2" -> "xaxis2"
            title = _axis_title(fig["layout"], f"{axis_letter}axis{ref[1:]}")
            if title in CATEGORICAL:
                continue
            assert title in SOURCES, f"{figure_name}: axis title {title!r} names no known quantity"
            expected = {_key(v) for v in SOURCES[title](db)} - {None}
            values = {_key(v) for v in trace.get(axis_letter) or []} - {None}
            stray = values - expected
            assert not stray, (f"{figure_name}: trace {trace.get('name')!r} plots {sorted(stray)[:3]} on the axis "
                               f"titled {title!r}, whose values are {sorted(expected)[:6]}")
            checked += bool(values)
    return checked


def _stored_doc(team, path: str, **fields):
    doc = json.loads((DATA / path).read_text())
    audit = make_audit(team, device="cpu", **fields)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    audit.refresh_from_db()
    return audit


@pytest.fixture
def audits(team):
    with_accuracy = stored_audit(team, [variant_doc("baseline", energy=0.010, accuracy=0.95),
                                        variant_doc("fp16", energy=0.006, accuracy=0.947)],
                                 model_version=make_version(team, name="axes", label="v1"))
    without = stored_audit(team, [variant_doc("baseline", energy=0.004), variant_doc("int8", energy=0.003)],
                           model_version=make_version(team, name="axes", label="v2"))
    digits = _stored_doc(team, "engine_result_digits_v2.json", model_version=make_version(team, name="axes", label="v3"))
    gpt2 = _stored_doc(team, "engine_result_gpt2_generation_v2.json", model_version=make_version(team, name="gen"))
    return {"with_accuracy": with_accuracy, "without": without, "digits": digits, "gpt2": gpt2}


def test_every_report_figure_plots_what_its_axes_say(audits):
    checked = 0
    for name, audit in audits.items():
        figs = audit_report_context(audit)["figures"]
        if name == "gpt2":
            assert {"chart-tokens", "chart-ttft", "chart-tpot", "chart-share"} <= set(figs)
        for chart, fig in figs.items():
            checked += check_axes(f"{name}/{chart}", fig, _db_context([audit]))
    assert checked > 40


def test_compare_with_any_two_figures_plots_what_its_axes_say(audits):
    """Every pair of axis choices, over audits with and without accuracy, forward and generation."""
    group = [audits["with_accuracy"], audits["without"], audits["digits"], audits["gpt2"]]
    db = _db_context(group)
    checked = 0
    for x in AXIS_CHOICES:
        for y in AXIS_CHOICES:
            if x == y:
                continue
            figs = compare_context(group, x=x, y=y)["figures"]
            for chart, fig in figs.items():
                checked += check_axes(f"compare {x}/{y} {chart}", fig, db)
    assert checked > 500


def test_history_of_any_figure_plots_what_its_axes_say(audits, team):
    asset = audits["with_accuracy"].model_version.asset
    db = _db_context(list(asset.versions.all().values_list("audits", flat=True)), versions=["v1", "v2", "v3"])
    for figure in AXIS_CHOICES:
        for chart, fig in model_history_context(asset, figure=figure)["figures"].items():
            check_axes(f"history {figure} {chart}", fig, db)


def test_the_check_catches_latency_drawn_on_an_accuracy_axis(audits):
    """The test above can fail: the old compare chart's mistake, rebuilt, is caught."""
    fig = compare_context([audits["without"], audits["with_accuracy"]], x="energy", y="latency")["figures"]["chart-compare-xy"]
    fig["layout"]["yaxis"]["title"]["text"] = "Accuracy (%)"
    with pytest.raises(AssertionError, match="Accuracy"):
        check_axes("mislabelled", fig, _db_context([audits["without"], audits["with_accuracy"]]))
