"""Issue 22, the printed report (the artefact that gets signed), in headless Chromium: reports,
the compare page and a model's history printed to A4 and Letter PDFs, read back with pdftotext
(poppler-utils). Every variant's name and every column heading of every table must be in the
PDF's text, every chart's title, axis titles and legend entries too, and no word may sit in the
page's margin (the sign of something running off the page: Chromium drops what falls beyond
the paper's edge and prints what falls short of it in the margin). Reports: every recipe of
the digits MLP (notes with long tokens), a paired one, a language model (20 columns of
measurements: a landscape page) and a serving one. Charts fit their boxes at A4's printable
width with and without beforeprint. On screen, at 1440 px, the variant and serving tables fit
the window, and the compare and history tables too.

Predicates are written as functions ("() => ..."): the pages' CSP refuses eval."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ..factories import make_version
from ..reports.helpers import stored_engine_audit
from .conftest import IN_CI, SCREENSHOTS
from .test_browser_reports import login

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(300)]

PAPERS = ("A4", "Letter")
MARGIN_PT = 12 / 25.4 * 72  # print.css: @page { margin: 14mm 12mm }
SLACK_PT = 1.5  # a glyph's box may reach a little past its advance
TABLES = ("variant-table", "report-table", "window-table", "drift-table", "serving-table", "compare-variants",
          "compare-table", "history-table")

# Every heading of the tables on the page (textContent: the source text, as print shows it,
# not innerText's screen upper case); a table without <thead> has its headings in the first row.
HEADINGS = """(ids) => {
  const out = {};
  for (const id of ids) {
    const t = document.getElementById(id);
    if (!t) continue;
    const row = t.tHead ? t.tHead.rows[0] : t.rows[0];
    out[id] = Array.from(row.cells).filter(c => c.tagName === 'TH').map(c => c.textContent.replace(/\\s+/g, ' ').trim())
      .filter(Boolean);
  }
  return out;
}"""

# The words a chart prints: its title, axis titles and legend entries.
CHART_LABELS = """() => {
  const out = {};
  document.querySelectorAll('.js-plotly-plot').forEach(el => {
    out[el.id] = Array.from(el.querySelectorAll('.gtitle, .xtitle, .ytitle, [class^="x"][class$="title"], [class^="y"][class$="title"], .legendtext, .annotation-text'))
      .flatMap(t => t.textContent.split('\\u200b'))  // plotly's line breaks
      .map(t => t.replace(/\\s+/g, ' ').trim()).filter(Boolean);
  });
  return out;
}"""

# Each chart's SVG and its box, as laid out now.
CHART_BOXES = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => {
  const box = el.closest('.chart-box').getBoundingClientRect();
  const svg = el.querySelector('.main-svg').getBoundingClientRect();
  return {id: el.id, drawn: el._fullLayout.width, svgLeft: svg.left, svgRight: svg.right, svgWidth: svg.width,
          boxLeft: box.left, boxRight: box.right, viewport: document.documentElement.clientWidth};
})"""


@pytest.fixture
def pdftotext():
    tool = shutil.which("pdftotext")
    if not tool:
        if IN_CI:
            pytest.fail("pdftotext not found; .ci/run installs poppler-utils")
        pytest.skip("pdftotext (poppler-utils) not installed")
    return tool


class Printed:
    """A PDF's text in content-stream order (a table cell's lines stay together) and its words
    with their boxes, page by page."""

    def __init__(self, tool: str, path: Path):
        self.path = path
        raw = subprocess.run([tool, "-raw", str(path), "-"], check=True, capture_output=True, text=True).stdout
        self.text = " ".join(raw.split())
        bbox = subprocess.run([tool, "-bbox", str(path), "-"], check=True, capture_output=True, text=True).stdout
        self.pages = []
        for page in re.finditer(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', bbox, re.S):
            words = [(float(a), float(b), w) for a, b, w in
                     re.findall(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>',
                                page.group(3))]
            self.pages.append((float(page.group(1)), float(page.group(2)), words))

    def missing(self, phrases) -> list[str]:
        return [p for p in phrases if " ".join(p.split()) not in self.text]

    def in_margins(self) -> list[str]:
        """Words printed in the left or right margin: something ran past the printable width."""
        out = []
        for n, (width, _, words) in enumerate(self.pages, 1):
            out += [f"page {n}: {w!r} at {x0:.0f}-{x1:.0f} of {width:.0f} pt" for x0, x1, w in words
                    if x0 < MARGIN_PT - SLACK_PT or x1 > width - MARGIN_PT + SLACK_PT]
        return out

    def landscape_pages(self) -> int:
        return sum(1 for w, h, _ in self.pages if w > h)


def print_to(page, tool, name: str, paper: str) -> Printed:
    path = SCREENSHOTS / f"{name}-{paper.lower()}.pdf"
    page.pdf(path=str(path), format=paper)
    return Printed(tool, path)


def record_chart_labels_when_printing(page):
    """Chart labels as charts.js draws them for paper: a beforeprint listener added after
    charts.js's own runs after its redraw."""
    page.evaluate("() => { window.addEventListener('beforeprint', () => { window.__printedLabels = (%s)(); }); }"
                  % CHART_LABELS)


def assert_whole_on_paper(printed: Printed, headings: dict, names, charts: dict):
    assert printed.in_margins() == [], printed.path
    for table, cells in headings.items():
        assert cells, table
        assert printed.missing(cells) == [], (table, printed.path)
    assert printed.missing(names) == [], printed.path
    for chart, labels in charts.items():
        assert labels, chart
        assert printed.missing(labels) == [], (chart, printed.path)


def _reports(team):
    from ..reports.test_report_v2 import real_doc, store
    from ..reports.test_serving_report import stored_serving_audit

    return {
        # every recipe of the day, notes with long tokens, accuracy and fidelity
        "digits-all-recipes": stored_engine_audit(team, model_version=make_version(team, name="print-digits", label="v1")),
        # paired rounds: two ratio columns with their intervals
        "digits-paired": store(team, real_doc("engine_result_digits_v2.json"),
                               model_version=make_version(team, name="print-digits", label="v2")),
        # a language model: token columns, 20 columns of measurements
        "gpt2-generation": store(team, real_doc("engine_result_gpt2_generation_v2.json"),
                                 model_version=make_version(team, name="print-gpt2", label="v1")),
        # served at load levels: the serving table (14 columns of latencies, rates and energy)
        "gpt2-serving": stored_serving_audit(team, {"slo_tpot_ms_p95": 1000.0, "slo_ttft_ms_p95": 1000.0}),
    }


def test_a_printed_report_holds_every_column_variant_and_chart(browser_page, live_server, member, team,
                                                               transactional_db, pdftotext):
    page = browser_page
    login(page, live_server, member)
    for name, audit in _reports(team).items():
        page.goto(f"{live_server.url}/audits/{audit.pk}/")
        page.wait_for_selector(".chart .main-svg", state="attached", timeout=15_000)
        headings = page.evaluate(HEADINGS, list(TABLES))
        assert ("variant-table" in headings and "report-table" in headings) or "serving-table" in headings, name
        names = [r.recipe for r in audit.variants.all()]
        assert len(names) >= 3
        # the savings calculator's chosen variant, whole ("baseline (recommended)")
        if page.locator("#savings-form select").count():
            names.append(page.eval_on_selector("#savings-form select", "s => s.options[s.selectedIndex].text"))
        for paper in PAPERS:
            record_chart_labels_when_printing(page)
            printed = print_to(page, pdftotext, f"print-{name}", paper)
            charts = page.evaluate("() => window.__printedLabels")
            assert len(charts) >= 4, name
            assert_whole_on_paper(printed, headings, names, charts)
            # only a table of 17 columns or more (the language model's measurements) turns the page
            assert (printed.landscape_pages() > 0) == any(len(h) >= 17 for h in headings.values()), (name, paper)
        # after printing, the charts take the screen's width again
        page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot')).every("
                               "el => el._fullLayout.width !== 640)")
    assert page.console_errors == []


def test_charts_fit_the_printable_width(browser_page, live_server, member, team, transactional_db):
    """Laid out for print at the printable width of A4 (186 mm = 703 CSS px): on beforeprint
    charts.js redraws every chart to fit its box; without it (a browser that prints without
    the event) the print stylesheet shrinks each SVG into its box. Either way no chart is wider
    than its box or the page. After printing, the screen's widths come back."""
    page = browser_page
    login(page, live_server, member)
    audit = _reports(team)["gpt2-generation"]
    page.goto(f"{live_server.url}/audits/{audit.pk}/")
    page.wait_for_selector("#chart-share .main-svg", state="attached", timeout=15_000)
    screen = {c["id"]: c["drawn"] for c in page.evaluate(CHART_BOXES)}
    assert max(screen.values()) > 703  # the wide charts are wider on screen than the paper
    page.set_viewport_size({"width": 703, "height": 1000})
    page.emulate_media(media="print")
    for when in ("without beforeprint", "after beforeprint"):
        if when == "after beforeprint":
            page.evaluate("() => window.dispatchEvent(new Event('beforeprint'))")
        charts = page.evaluate(CHART_BOXES)
        assert len(charts) >= 6
        for c in charts:
            assert c["svgLeft"] >= c["boxLeft"] - 0.5 and c["svgRight"] <= c["boxRight"] + 0.5, (when, c)
            assert c["svgRight"] <= c["viewport"] + 0.5, (when, c)
        if when == "after beforeprint":
            # drawn for paper, not shrunk: its text keeps its size
            assert all(c["drawn"] == 640 and abs(c["svgWidth"] - 640) < 1 for c in charts), charts
    page.screenshot(path=str(SCREENSHOTS / "print-charts-a4-width.png"), full_page=True)
    page.evaluate("() => window.dispatchEvent(new Event('afterprint'))")
    page.emulate_media(media="no-override")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_function("(screen) => Array.from(document.querySelectorAll('.js-plotly-plot')).every("
                           "el => Math.abs(el._fullLayout.width - screen[el.id]) < 1)", arg=screen)
    assert page.console_errors == []


def _fits(page, table_id: str) -> dict:
    return page.evaluate("""(id) => {
      const t = document.getElementById(id), r = t.getBoundingClientRect(), holder = t.parentElement;
      return {right: r.right, viewport: document.documentElement.clientWidth,
              scrolls: holder.scrollWidth > holder.clientWidth + 1};
    }""", table_id)


def test_the_variant_and_serving_tables_fit_a_1440_px_screen(browser_page, live_server, member, team, transactional_db):
    page = browser_page
    page.set_viewport_size({"width": 1440, "height": 900})
    login(page, live_server, member)
    for name, audit in _reports(team).items():
        page.goto(f"{live_server.url}/audits/{audit.pk}/")
        page.wait_for_selector("main table")
        tables = [t for t in ("variant-table", "serving-table") if page.locator(f"#{t}").count()]
        assert tables, name
        for table in tables:
            fit = _fits(page, table)
            assert fit["right"] <= fit["viewport"] and not fit["scrolls"], (name, table, fit)
            # the last column (the variant table's Size, Fidelity before it) is in view
            last = page.locator(f"#{table} thead th").last.bounding_box()
            assert last["x"] + last["width"] <= 1440, (name, table)
            page.locator(f"#{table}").screenshot(path=str(SCREENSHOTS / f"{table}-1440-{name}.png"))
    assert page.console_errors == []


def test_compare_and_history_print_whole_and_fit_the_screen(browser_page, live_server, member, team,
                                                            transactional_db, pdftotext):
    page = browser_page
    page.set_viewport_size({"width": 1440, "height": 900})
    login(page, live_server, member)
    audits = _reports(team)
    pages = {
        "compare": (f"/compare/?{'&'.join(f'a={a.pk}' for a in audits.values())}", "#chart-compare-xy",
                    ("compare-variants", "compare-table"), "#compare-variants tbody td:first-child a"),
        "history": (f"/models/{audits['digits-paired'].model_version.asset_id}/history/", "#chart-history-energy",
                    ("history-table",), "#history-table td:first-child"),
    }
    for name, (url, chart, tables, rows) in pages.items():
        page.goto(live_server.url + url)
        page.wait_for_selector(f"{chart} .main-svg", state="attached", timeout=15_000)
        for table in tables:
            fit = _fits(page, table)
            assert fit["right"] <= fit["viewport"], (name, table, fit)
        headings = page.evaluate(HEADINGS, list(tables))
        labels = [" ".join(t.split()) for t in page.locator(rows).all_text_contents()]
        assert len(labels) >= 2, name
        for paper in PAPERS:
            record_chart_labels_when_printing(page)
            printed = print_to(page, pdftotext, f"print-{name}", paper)
            assert_whole_on_paper(printed, headings, labels, page.evaluate("() => window.__printedLabels"))
    assert page.console_errors == []
