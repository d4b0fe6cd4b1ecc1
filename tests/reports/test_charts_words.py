"""Issue 22, "Charts and words": what the home, report and history pages draw and say, read from the
page a person gets (the Django test client): the plotly figures each page embeds (tick format and
spacing, axis titles, legend entries, which traces are drawn) and the words beside them. What must be
measured in a browser (labels overlapping, a title cut off) is in
tests/integration/test_browser_charts_words.py."""
import copy
import html
import json
import re
from datetime import date, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import Audit, Measurement, Membership
from audit.reports import formatting
from audit.reports.figures import WEEK_MS
from audit.services import audits as services

from ..conftest import make_user
from ..factories import make_audit, make_version
from .helpers import n_variants, stored_audit, variant_doc
from .test_report_pages import figures_in
from .test_report_v2 import real_doc, store

pytestmark = pytest.mark.django_db
GPT2 = "engine_result_gpt2_generation_v2.json"
DIGITS = "engine_result_digits_v2.json"


def page_of(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def figures(page: str, script_id: str) -> dict:
    return json.loads(figures_in(page, script_id))


def text_of(fragment: str) -> str:
    """What a reader sees of some HTML: the tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def element(page: str, element_id: str, tag: str = "div") -> str:
    match = re.search(rf'<{tag}[^>]*id="{element_id}"[^>]*>(.*?)</{tag}>', page, re.S)
    assert match, element_id
    return match.group(1)


def element_row(page: str, variant: str) -> str:
    return re.search(rf'data-variant="{re.escape(variant)}">(.*?)</tr>', page, re.S).group(1)


def y_title(fig: dict, axis: str = "yaxis") -> str:
    return fig["layout"][axis]["title"]["text"]


# --- home: the per-week charts ---------------------------------------------------------------


def _ticks(xaxis: dict) -> list[date]:
    """The ticks plotly draws on a date axis with tick0 and dtick (in ms) over the axis's range."""
    start, end = (datetime.fromisoformat(v) for v in xaxis["range"])
    tick = datetime.fromisoformat(xaxis["tick0"])
    step = timedelta(milliseconds=xaxis["dtick"])
    while tick - step >= start:
        tick -= step
    ticks = []
    while tick <= end:
        if tick >= start:
            ticks.append(tick)
        tick += step
    return ticks


def _audit_at(team, version, when):
    audit = stored_audit(team, [variant_doc("baseline", energy=0.002)], model_version=version)
    Audit.objects.filter(pk=audit.pk).update(created_at=when, finished_at=when)


@pytest.mark.parametrize("days_back, max_ticks", [((1, 2), 2), ((1, 8, 15), 3), ((1, 40, 90, 170), 8)])
def test_the_week_charts_label_each_tick_once_on_a_monday(member_client, team, days_back, max_ticks):
    """Audits a day or two apart drew "29 Nov, 29 Nov, 30 Nov, 30 Nov" (plotly's 12-hour ticks under
    a day-month format): now one tick per week, or per k weeks over a long period, each a Monday
    and each label different; the range reaches half a week past the first and last weeks, so the
    first label sits clear of the y-axis and its lowest label ("0Wh")."""
    version = make_version(team, name="weekly")
    now = timezone.now()
    for days in days_back:
        _audit_at(team, version, now - timedelta(days=days))
    figs = figures(page_of(member_client, reverse("home")), "home-figures")
    for chart in ("chart-week-audits", "chart-week-energy", "chart-week-carbon"):
        fig = figs[chart]
        xaxis = fig["layout"]["xaxis"]
        # the year joins the label only when the period spans two years
        assert xaxis["type"] == "date" and xaxis["tickformat"] in ("%d %b", "%d %b %Y"), chart
        assert xaxis["dtick"] % WEEK_MS == 0 and xaxis["dtick"] >= WEEK_MS, chart
        ticks = _ticks(xaxis)
        labels = [t.strftime(xaxis["tickformat"]) for t in ticks]
        assert 1 <= len(ticks) <= max_ticks, (chart, labels)
        assert len(set(labels)) == len(labels), (chart, labels)
        assert all(t.weekday() == 0 for t in ticks), (chart, labels)
        weeks = sorted({datetime.fromisoformat(x) for trace in fig["data"] for x in trace["x"]})
        start, end = (datetime.fromisoformat(v) for v in xaxis["range"])
        # every point drawn, none on the y-axis: half a week of room each side
        assert start <= weeks[0] - timedelta(days=3) and weeks[-1] + timedelta(days=3) <= end, chart
        assert fig["layout"]["yaxis"].get("ticklabelstandoff", 0) > 0, chart
    # a week's bar is most of a week wide (plotly's own width for a lone bar is a hairline)
    assert all(w == 0.8 * WEEK_MS for t in figs["chart-week-audits"]["data"] for w in t["width"])


# --- the report's evidence charts ----------------------------------------------------------


def test_the_breakdown_and_layer_charts_title_every_axis_briefly(member_client, team):
    audit = stored_audit(team, n_variants(3))
    figs = figures(page_of(member_client, audit.get_absolute_url()), "report-figures")
    breakdown = figs["chart-breakdown"]
    # the old title, "Energy per inference: active + idle (J, est.)", ran past the plot's top
    # into the chart's title: the y title is short, what the parts are is said by the title
    assert y_title(breakdown) == "Active + idle energy (J, est.)"
    assert "active and idle" in breakdown["layout"]["title"]["text"]
    assert {t["name"] for t in breakdown["data"]} == {"active", "idle share"}
    layers = figs["chart-layers"]
    assert y_title(layers) == "Layer (type)"
    assert y_title(layers, "xaxis") == "FLOPs per sample, this layer"
    assert layers["data"][0]["y"] == ["layer0 (Linear)", "layer1 (Linear)", "layer2 (Linear)"]  # largest on top


def test_every_variant_is_in_the_power_legend_and_four_are_drawn(member_client, team):
    """The legend lacked a variant (prune-unstructured) because only four traces were built: now
    every measured variant is a legend entry, the baseline first; past four, one is drawn when its
    name is clicked (plotly's "legendonly"), and the title says so."""
    recipes = ["baseline", "fp16", "int8-dynamic", "prune-30", "prune-unstructured:0.5", "int4"]
    audit = stored_audit(team, [variant_doc(r, energy=0.002 * (1 - 0.05 * i)) for i, r in enumerate(recipes)])
    power = figures(page_of(member_client, audit.get_absolute_url()), "report-figures")["chart-power"]
    traces = [t for t in power["data"] if not t["name"].startswith("idle")]
    assert [t["name"] for t in traces][0] == "baseline · batch 1"
    assert sorted(t["name"] for t in traces) == sorted(f"{r} · batch 1" for r in recipes)
    assert all(t["showlegend"] for t in power["data"])
    assert [t["visible"] for t in traces] == [True] * 4 + ["legendonly"] * 2
    assert "4 of 6 variants drawn" in power["layout"]["title"]["text"]
    assert any(t["name"].startswith("idle") for t in power["data"])
    # a legend of 7 entries takes rows: the chart is taller than one with a single row
    assert power["layout"]["height"] > 340


def test_four_variants_or_fewer_are_all_drawn(member_client, team):
    audit = stored_audit(team, n_variants(3))
    power = figures(page_of(member_client, audit.get_absolute_url()), "report-figures")["chart-power"]
    assert [t["visible"] for t in power["data"] if "visible" in t] == [True] * 3
    assert "drawn" not in power["layout"]["title"]["text"]


# --- the model history ---------------------------------------------------------------------


def test_the_history_draws_energy_once(member_client, team):
    for label in ("v1", "v2"):
        stored_audit(team, [variant_doc("baseline", energy=0.004, accuracy=0.95)],
                     model_version=make_version(team, name="hist", label=label))
    asset = Audit.objects.first().model_version.asset
    url = reverse("model-history", args=[asset.pk])
    page = page_of(member_client, url)
    figs = figures(page, "history-figures")
    assert "chart-history-chosen" not in figs and 'id="chart-history-chosen"' not in page
    assert [y_title(f) for f in figs.values()].count("Energy per inference (J, est.)") == 1
    assert set(figs) == {"chart-history-energy", "chart-history-latency", "chart-history-accuracy"}
    # a figure already drawn is not drawn again when picked; another gets a chart of its own
    assert "chart-history-chosen" not in figures(page_of(member_client, url + "?figure=latency"), "history-figures")
    chosen = figures(page_of(member_client, url + "?figure=flops"), "history-figures")["chart-history-chosen"]
    assert y_title(chosen) == "FLOPs per sample (FLOPs)"


def test_a_language_models_history_speaks_of_tokens(member_client, team):
    """No empty accuracy panel for a model never evaluated on a labelled dataset; J per output
    token, TPOT and TTFT drawn; the table has J per output token and TTFT/TPOT p50 and p95."""
    for label in ("v1", "v2"):
        store(team, real_doc(GPT2), model_version=make_version(team, name="gpt2-hist", label=label))
    asset = Audit.objects.first().model_version.asset
    page = page_of(member_client, reverse("model-history", args=[asset.pk]))
    figs = figures(page, "history-figures")
    assert set(figs) == {"chart-history-energy", "chart-history-latency", "chart-history-ttft"}
    assert 'id="chart-history-accuracy"' not in page and "Accuracy unknown" not in page
    assert y_title(figs["chart-history-energy"]) == "Energy per output token (J, est.)"
    assert y_title(figs["chart-history-latency"]) == "Time per output token p95 (ms)"
    assert y_title(figs["chart-history-ttft"]) == "Time to first token p95 (ms)"
    table = re.search(r'<table id="history-table">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    header = [text_of(c) for c in re.findall(r"<th[^>]*>(.*?)</th>", rows[0], re.S)]
    for column in ("Energy / output token", "Energy / request", "TTFT p50", "TTFT p95", "TPOT p50", "TPOT p95"):
        assert column in header, header
    assert "Accuracy" not in header
    base = Measurement.objects.filter(variant__audit__model_version__label="v1", variant__recipe="baseline",
                                      batch_size=1).get()
    cells = dict(zip(header, [text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[1], re.S)]))
    assert cells["TTFT p50"] == formatting.millis(base.ttft_ms_p50)
    assert cells["TTFT p95"] == formatting.millis(base.ttft_ms_p95)
    assert cells["TPOT p50"] == formatting.millis(base.tpot_ms_p50)
    assert cells["TPOT p95"] == formatting.millis(base.tpot_ms_p95)
    assert cells["Energy / output token"].startswith(formatting.joules(base.energy_j_per_output_token))


# --- the generation report -----------------------------------------------------------------


def _kpi(page: str, key: str) -> str:
    return text_of(re.search(rf'id="kpi-{key}">(.*?)</div>\s*</div>', page, re.S).group(1))


@pytest.mark.parametrize("batch", [1, 4])
def test_a_generation_report_shows_ttft_tpot_p50_and_carbon_per_request(member_client, team, batch):
    audit = store(team, real_doc(GPT2))
    page = page_of(member_client, audit.get_absolute_url() + f"?batch={batch}")
    base = Measurement.objects.get(variant__audit=audit, variant__recipe="baseline", batch_size=batch)
    assert formatting.millis(base.ttft_ms_p50) in _kpi(page, "ttft-p50")
    assert formatting.millis(base.tpot_ms_p50) in _kpi(page, "tpot-p50")
    assert formatting.millis(base.ttft_ms_p95) in _kpi(page, "ttft-p95")
    # a generation "inference" is one generate call of the whole batch: carbon per 1,000 requests
    co2 = _kpi(page, "co2e-per-1000")
    assert "CO₂e per 1,000 requests" in co2 and formatting.grams(base.co2e_g_per_inference * 1000 / batch) in co2
    assert "per 1,000 inferences" not in text_of(element(page, "kpis", "section"))
    assert f"One query = one request served at batch size {batch} (energy per request" in text_of(page)
    # the table of every measurement has the p50s beside the p95s
    table = re.search(r'<table id="report-table">(.*?)</table>', page, re.S).group(1)
    header = [text_of(c) for c in re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)]
    for column in ("TTFT p50", "TTFT p95", "TPOT p50", "TPOT p95", "CO₂e / 1k requests"):
        assert column in header, header
    ms = Measurement.objects.filter(variant__audit=audit)
    shown = text_of(table)
    for m in ms:
        assert formatting.millis(m.ttft_ms_p50) in shown and formatting.millis(m.tpot_ms_p50) in shown


def test_the_latency_target_sentence_uses_the_pages_units(member_client, team):
    """The engine writes "0.03376 J per output token"; the page writes energy as 33.8 mJ."""
    audit = store(team, real_doc(GPT2))
    page = page_of(member_client, audit.get_absolute_url())
    slo = text_of(element(page, "verdict-slo"))
    cheapest = audit.tradeoff["slo"]["cheapest"]
    assert f"{formatting.joules(cheapest['energy_j_per_output_token'])} per output token" in slo
    assert not re.search(r"\d\.\d{3,} J\b", slo), slo
    answer = text_of(element(page, "answer", "section"))
    assert not re.search(r"\d\.\d{3,} (J|ms)\b", answer), answer


# --- words -------------------------------------------------------------------------------


def test_fidelity_is_named_in_words_not_by_its_key(member_client, team):
    gpt2 = store(team, real_doc(GPT2))
    row = element_row(page_of(member_client, gpt2.get_absolute_url()), "prune-unstructured:0.5")
    assert "top-1 agreement 0.794" in text_of(row) and "top1_agreement" not in text_of(row)
    # an embedding model's cosine, as the issue saw it ("0.95 embedding_cosine")
    doc = copy.deepcopy(real_doc(DIGITS))
    for v in doc["variants"]:
        v["evaluation"]["fidelity_metric"] = "embedding_cosine"
        v["evaluation"]["fidelity_value"] = 0.95 if v["recipe"] == "int8-dynamic" else 1.0
    page = page_of(member_client, store(team, doc, model_version=make_version(team, name="embedder")).get_absolute_url())
    row = text_of(element_row(page, "int8-dynamic"))
    assert "cosine 0.95" in row and "embedding_cosine" not in row


def test_a_cancelled_audit_says_so_once(member_client, team):
    audit = make_audit(team)
    services.audit_cancel(audit=audit)
    page = page_of(member_client, Audit.objects.get(pk=audit.pk).get_absolute_url())
    status_line = text_of(re.search(r'<div id="audit-progress"[^>]*>\s*<p>(.*?)</p>', page, re.S).group(1))
    assert status_line.lower().count("cancelled") == 1, status_line


def test_a_decision_is_recorded_in_words(client, team):
    lead = make_user("lena", team, Membership.Role.LEAD)
    audit = stored_audit(team)
    client.force_login(lead)
    page = client.post(reverse("audit-review", args=[audit.pk]), {"decision": "approved", "comment": ""},
                       follow=True).content.decode()
    assert "Approval recorded." in page and "Approved recorded." not in page


def test_money_below_a_cent_is_not_zero(member_client, team):
    assert formatting.money(0.0028, "USD") == "< 0.01 USD"
    assert formatting.money(0.0, "USD") == "0.00 USD"
    assert formatting.money(6.061, "USD") == "6.06 USD"
    # 0.002 J a query, 100,000 queries a day: 0.02 kWh a year, 0.003 USD at 0.15 USD/kWh
    audit = stored_audit(team, [variant_doc("baseline", energy=0.002)])
    page = page_of(member_client, audit.get_absolute_url() + "?queries_per_day=100000")
    cost = text_of(re.search(r'<dd data-out="cost">(.*?)</dd>', page, re.S).group(1))
    assert cost.startswith("< 0.01 ") and "0.00" not in cost


def test_engine_sentences_are_rewritten_in_the_pages_units():
    text = ("cheapest meeting TPOT p95 <= 50 ms within top-1 agreement ≥ 0.95: baseline at batch size 1, "
            "0.03376 J per output token; the fastest measured: TTFT p95 2500 ms; energy x0.87 [0.80, 0.95]")
    assert formatting.page_units(text) == (
        "cheapest meeting TPOT p95 <= 50 ms within top-1 agreement ≥ 0.95: baseline at batch size 1, "
        "33.8 mJ per output token; the fastest measured: TTFT p95 2.5 s; energy x0.87 [0.80, 0.95]")
    assert formatting.fidelity(0.95, "embedding_cosine") == "cosine 0.95"
    assert formatting.fidelity(None, "embedding_cosine") == formatting.DASH
    assert formatting.fidelity_label("some_new_metric") == "some new metric"


def test_the_tables_verdict_words_follow_the_answers_rule(member_client, team):
    """The real digits result was stored under an older rule that called any interval holding 1
    "no measurable difference": the table said so under ×1.10 [0.87, 1.40] while the answer above
    called the same interval inconclusive. The table now says what the answer's rule says."""
    audit = store(team, real_doc(DIGITS))
    page = page_of(member_client, audit.get_absolute_url())
    stored = next(c for c in audit.variants.get(recipe="prune-unstructured:0.5").comparison if c["batch_size"] == 1)
    assert stored["verdict"] == "no measurable difference" and stored["energy_ratio_ci95"][1] > 1.05
    assert "Inconclusive." in text_of(element(page, "answer", "section"))
    row = text_of(element_row(page, "prune-unstructured:0.5"))
    assert "inconclusive" in row and "no measurable difference" not in row.split("×", 1)[1].split("×", 1)[0]
    assert "holds 1 is no measurable difference" not in page


def test_chart_hovers_write_figures_in_the_pages_units(member_client, team):
    """A hover said "Energy per output token: 0.04862 J" (plotly's .4g) where the page writes
    48.6 mJ: every hover is now written by the page's own formatters."""
    audit = store(team, real_doc(GPT2))
    page = page_of(member_client, audit.get_absolute_url())
    figs = figures(page, "report-figures")
    base = Measurement.objects.get(variant__audit=audit, variant__recipe="baseline", batch_size=1)
    tokens = next(t for t in figs["chart-tokens"]["data"] if t["name"] == "baseline")
    assert f"Energy per output token: {formatting.joules(base.energy_j_per_output_token)}" in tokens["hovertext"]
    tradeoff = figs["chart-tradeoff"]["data"][0]
    assert any(formatting.joules(base.energy_j_per_output_token) in h for h in tradeoff["hovertext"])
    for chart, fig in figs.items():
        for trace in fig["data"]:
            template = trace.get("hovertemplate", "")
            assert not re.search(r":\.\dg}(J| J)", template), (chart, template)
            for text in trace.get("hovertext") or []:
                assert not re.search(r"\d\.\d{4,}", text), (chart, text)


def test_a_period_across_new_year_labels_its_weeks_with_the_year():
    from audit.reports.figures import week_axis

    xaxis = week_axis(["2026-12-21", "2026-12-28", "2027-01-04"])
    assert xaxis["tickformat"] == "%d %b %Y" and xaxis["dtick"] == WEEK_MS
    labels = [t.strftime(xaxis["tickformat"]) for t in _ticks(xaxis)]
    assert labels == ["21 Dec 2026", "28 Dec 2026", "04 Jan 2027"]
