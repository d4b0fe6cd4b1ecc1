"""Issue 22, "Charts and words", where only a browser can tell: labels and titles that overlap or
run out of the chart. Headless Chromium measures the boxes plotly drew (tick labels, axis titles,
the chart's title, legend entries); the figure JSON itself is checked in
tests/reports/test_charts_words.py."""
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import Audit

from ..factories import make_version
from ..reports.helpers import stored_audit, variant_doc
from .conftest import SCREENSHOTS
from .test_browser_reports import assert_charts_drawn, login

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(300)]
WEEK_CHARTS = ("chart-week-audits", "chart-week-energy", "chart-week-carbon")
BOXES = """els => els.map(e => { const r = e.getBoundingClientRect();
  return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, text: e.textContent}; })"""


def boxes(page, selector: str) -> list[dict]:
    return page.eval_on_selector_all(selector, BOXES)


def overlap(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def inside(inner: dict, outer: dict) -> bool:
    return (inner["left"] >= outer["left"] - 0.5 and inner["right"] <= outer["right"] + 0.5
            and inner["top"] >= outer["top"] - 0.5 and inner["bottom"] <= outer["bottom"] + 0.5)


def assert_titles_clear(page, chart: str) -> None:
    """The y title lies within the chart and crosses neither the chart's title nor a tick label;
    no y tick label touches an x tick label (the "0Wh" on the first date)."""
    svg = boxes(page, f"#{chart} svg.main-svg")[0]
    title = boxes(page, f"#{chart} .gtitle")
    ytitle = boxes(page, f"#{chart} .ytitle")
    yticks = [b for b in boxes(page, f"#{chart} .ytick text") if b["text"]]
    xticks = [b for b in boxes(page, f"#{chart} .xtick text") if b["text"]]
    for t in ytitle:
        assert inside(t, svg), (chart, "y title cut off", t, svg)
        assert not any(overlap(t, g) for g in title), (chart, "y title over the chart's title", t["text"])
        assert not any(overlap(t, y) for y in yticks), (chart, "y title over a tick label", t["text"])
    for y in yticks:
        hit = [x["text"] for x in xticks if overlap(x, y)]
        assert not hit, (chart, f"y label {y['text']!r} overlaps x label(s) {hit}")


def test_the_week_charts_label_each_week_once_clear_of_the_y_axis(browser_page, live_server, member, team,
                                                                   transactional_db):
    """Two audits a day apart, one model, the same energy: a linear energy axis from "0Wh" (the
    case that drew "29 Nov, 29 Nov, 30 Nov, 30 Nov" with "0Wh" on the first date)."""
    page = browser_page
    version = make_version(team, name="weekly-mlp")
    now = timezone.now()
    for days in (1, 2):
        audit = stored_audit(team, [variant_doc("baseline", energy=0.002)], model_version=version)
        Audit.objects.filter(pk=audit.pk).update(created_at=now - timedelta(days=days),
                                                 finished_at=now - timedelta(days=days))
    login(page, live_server, member)
    assert_charts_drawn(page, WEEK_CHARTS)
    for chart in WEEK_CHARTS:
        labels = [b["text"] for b in boxes(page, f"#{chart} .xtick text") if b["text"]]
        assert labels and len(labels) == len(set(labels)), (chart, labels)
        assert_titles_clear(page, chart)
    assert any(b["text"] == "0Wh" for b in boxes(page, "#chart-week-energy .ytick text"))  # the case of the issue
    # one week's bar is a bar, not a hairline: most of a week's width on the axis
    bar = boxes(page, "#chart-week-audits .bars path")[0]
    assert bar["right"] - bar["left"] >= 20, bar
    page.locator("#team-over-time").screenshot(path=str(SCREENSHOTS / "home-week-charts.png"))
    assert page.console_errors == []


def test_the_evidence_charts_keep_titles_and_legends_whole(browser_page, live_server, member, team,
                                                           transactional_db):
    page = browser_page
    recipes = ["baseline", "fp16", "int8-dynamic", "prune-30", "prune-unstructured:0.5", "int4"]
    audit = stored_audit(team, [variant_doc(r, energy=0.002 * (1 - 0.05 * i)) for i, r in enumerate(recipes)],
                         model_version=make_version(team, name="evidence-mlp"))
    login(page, live_server, member)
    page.goto(f"{live_server.url}{audit.get_absolute_url()}?queries_per_day=100000")
    page.click("#details-power summary")
    page.wait_for_function("() => document.querySelector('#chart-breakdown .main-svg').getBoundingClientRect().width > 300")
    page.wait_for_timeout(300)
    for chart in ("chart-breakdown", "chart-layers", "chart-power"):
        assert_titles_clear(page, chart)
    assert page.locator("#chart-layers .ytitle").text_content() == "Layer (type)"
    # every variant is a legend entry (and the idle line), none cut off by the chart's height
    svg = boxes(page, "#chart-power svg.main-svg")[0]
    entries = boxes(page, "#chart-power .legend .traces")
    assert sorted(e["text"] for e in entries if not e["text"].startswith("idle")) == sorted(f"{r} · batch 1" for r in recipes)
    assert len(entries) == len(recipes) + 1
    for e in entries:
        assert inside(e, svg), ("legend entry cut off", e["text"])
    # a hover writes energy as the page does (1.4 mJ), not as plotly would (0.0014 J)
    bar = boxes(page, "#chart-breakdown .trace.bars .point path")[0]  # the baseline's active part
    page.mouse.move((bar["left"] + bar["right"]) / 2, (bar["top"] + bar["bottom"]) / 2)
    page.wait_for_selector("#chart-breakdown .hoverlayer .hovertext", timeout=5_000)
    assert "active 1.4 mJ" in page.locator("#chart-breakdown .hoverlayer").text_content()
    # the savings calculator, redrawn by the script, says "< 0.01" rather than "0.00"
    assert page.inner_text("[data-out=cost]").startswith("< 0.01 ")
    page.locator("#details-power").screenshot(path=str(SCREENSHOTS / "report-evidence-charts.png"))
    assert page.console_errors == []
