"""The report pages in headless Chromium (Debian's package, driven by Playwright) against a
live server: the full flow with a real worker (upload, request, progress, report with every
chart drawn), then comparing two audits, the model history, the overview and the badge.
Screenshots go to var/screenshots/."""
import pytest

from audit.models import Audit

from ..models import MLP_CONFIG, mlp_safetensors_bytes
from ..reports.helpers import stored_audit, stored_engine_audit, variant_doc
from ..factories import make_version
from .conftest import SCREENSHOTS

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(300)]
REPORT_CHARTS = ("chart-tradeoff", "chart-batch", "chart-power", "chart-layers", "chart-breakdown")


def login(page, live_server, user):
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-" + user.username)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def assert_charts_drawn(page, ids):
    for chart in ids:
        page.wait_for_selector(f"#{chart} .main-svg", state="attached", timeout=15_000)
        assert page.locator(f"#{chart} .main-svg").count() >= 1, chart


def test_full_report_flow_in_the_browser(browser_page, live_server, member, start_worker, tmp_path):
    start_worker()
    page = browser_page
    missing = []
    page.on("response", lambda r: r.status >= 400 and missing.append(f"{r.status} {r.url}"))
    login(page, live_server, member)
    model_file = tmp_path / "digits.safetensors"
    model_file.write_bytes(mlp_safetensors_bytes(config=MLP_CONFIG))
    page.goto(f"{live_server.url}/models/upload/")
    page.fill("#id_name", "report-mlp")
    page.set_input_files("#id_file", str(model_file))
    page.click("#model-upload-form button[type=submit]")
    page.wait_for_selector("text=Request an audit")

    page.fill("input[name=batch_sizes]", "1,8")
    page.click("text=Request audit")
    page.wait_for_selector("#audit-progress [data-status]")
    page.screenshot(path=str(SCREENSHOTS / "report-progress.png"), full_page=True)
    page.wait_for_selector("#report-table", timeout=180_000)
    audit = Audit.objects.get()
    assert audit.status == Audit.Status.SUCCEEDED

    assert_charts_drawn(page, REPORT_CHARTS)
    for selector in ("#kpis", "#variant-table", "#recommendation", "#savings-form", "#fingerprint", "#energy-rating"):
        assert page.locator(selector).count() == 1, selector
    body = page.inner_text("main")
    for bad in ("None", "NaN", "Traceback"):
        assert bad not in body
    # The savings calculator answers as one types.
    before = page.inner_text("[data-out=kwh]")
    page.fill("#savings-form [name=queries_per_day]", "100000000")
    page.wait_for_function("document.querySelector('[data-out=kwh]').textContent !== %r" % before)
    # Sorting the variant table by a heading marks it.
    page.click("#variant-table thead th:nth-child(3)")
    assert page.get_attribute("#variant-table thead th:nth-child(3)", "aria-sort") == "ascending"
    page.screenshot(path=str(SCREENSHOTS / "report.png"), full_page=True)
    page.emulate_media(media="print")
    page.screenshot(path=str(SCREENSHOTS / "report-print.png"), full_page=True)
    page.pdf(path=str(SCREENSHOTS / "report.pdf")) if hasattr(page, "pdf") else None
    page.emulate_media(media="screen")

    page.goto(f"{live_server.url}/")
    assert_charts_drawn(page, ["chart-ratings"])
    assert "report-mlp" in page.inner_text("#hungry")
    page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)
    page.goto(f"{live_server.url}/models/{audit.model_version.asset_id}/history/")
    assert_charts_drawn(page, ["chart-history-energy", "chart-history-latency", "chart-history-accuracy"])
    page.screenshot(path=str(SCREENSHOTS / "history.png"), full_page=True)
    assert page.console_errors == [], missing
    # The badge, embedded as a README would embed it.
    page.set_content(f'<p>digits <img id="badge" src="{live_server.url}/badges/{audit.model_version_id}.svg"></p>')
    page.wait_for_function("document.getElementById('badge').complete && document.getElementById('badge').naturalWidth > 0")
    page.screenshot(path=str(SCREENSHOTS / "badge.png"))


def test_compare_two_audits_in_the_browser(browser_page, live_server, member, team, transactional_db):
    page = browser_page
    a = stored_audit(team, [variant_doc("baseline", energy=0.004, accuracy=0.95, batch_sizes=(1, 8, 32)),
                            variant_doc("fp16", energy=0.002, accuracy=0.948, batch_sizes=(1, 8, 32))],
                     model_version=make_version(team, name="cmp-mlp", label="v1"))
    b = stored_audit(team, [variant_doc("baseline", energy=0.003, accuracy=0.955, batch_sizes=(1, 8, 32))],
                     model_version=make_version(team, name="cmp-mlp", label="v2"))
    login(page, live_server, member)
    page.goto(f"{live_server.url}/compare/")
    page.check(f"#pick-{a.pk}")
    page.check(f"#pick-{b.pk}")
    page.click("#compare-form button[type=submit]")
    page.wait_for_selector("#compare-table")
    assert_charts_drawn(page, ["chart-compare-energy", "chart-compare-latency", "chart-compare-tradeoff"])
    text = page.inner_text("#compare-table")
    assert "−25%" in text and "batch size 32" in text.lower()
    page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)
    # A real engine result with every recipe and an evaluation: a recommendation, the
    # Pareto frontier drawn, skipped variants with their reasons.
    real = stored_engine_audit(team, model_version=make_version(team, name="digits-mlp", label="v1"))
    page.goto(f"{live_server.url}/audits/{real.pk}/")
    assert_charts_drawn(page, REPORT_CHARTS)
    # that run's baseline drifted by 95% on a busy machine: no saving beats the noise
    assert "Recommended: baseline" in page.inner_text("#recommendation")
    assert "measurement noise" in page.inner_text("#recommendation")
    page.screenshot(path=str(SCREENSHOTS / "report-with-accuracy.png"), full_page=True)
    page.locator("#kpis").screenshot(path=str(SCREENSHOTS / "report-with-accuracy-summary.png"))
    page.locator("#variant-table").screenshot(path=str(SCREENSHOTS / "report-with-accuracy-variants.png"))
    page.locator(".charts").screenshot(path=str(SCREENSHOTS / "report-with-accuracy-charts.png"))
    assert page.console_errors == []
