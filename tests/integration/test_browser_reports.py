"""The report pages in headless Chromium (Debian's package, driven by Playwright) against a
live server: the full flow with a real worker (upload, request, progress, report with every
chart drawn), then comparing two audits, the model history, the overview and the badge.
Screenshots go to var/screenshots/. Predicates for wait_for_function are written as functions
("() => ..."): Playwright evaluates a bare expression with eval, which the pages' CSP refuses."""
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
    page.wait_for_selector("#recommendation", timeout=180_000)  # the answer first; the tables fold away
    audit = Audit.objects.get()
    assert audit.status == Audit.Status.SUCCEEDED

    assert_charts_drawn(page, REPORT_CHARTS)
    for selector in ("#kpis", "#variant-table", "#recommendation", "#quality-grade", "#savings-form", "#fingerprint",
                     "#energy-rating", "#report-table"):
        assert page.locator(selector).count() == 1, selector
    body = page.inner_text("main")
    for bad in ("None", "NaN", "Traceback"):
        assert bad not in body
    # The savings calculator answers as one types.
    before = page.inner_text("[data-out=kwh]")
    page.fill("#savings-form [name=queries_per_day]", "100000000")
    page.wait_for_function("() => document.querySelector('[data-out=kwh]').textContent !== %r" % before)
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
    page.wait_for_function("() => document.getElementById('badge').complete && document.getElementById('badge').naturalWidth > 0")
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
    assert_charts_drawn(page, ["chart-compare-energy", "chart-compare-latency", "chart-compare-xy"])
    text = page.inner_text("#compare-table")
    assert "×0.75" in text and "batch size 32" in text.lower() and "%" not in text.replace("±", "").split("Quality")[1]
    page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)
    # A real engine result with every recipe and an evaluation: a recommendation, the
    # Pareto frontier drawn, skipped variants with their reasons.
    real = stored_engine_audit(team, model_version=make_version(team, name="digits-mlp", label="v1"))
    page.goto(f"{live_server.url}/audits/{real.pk}/")
    assert_charts_drawn(page, REPORT_CHARTS)
    # that run's baseline drifted by 95% on a busy machine: no saving beats the noise
    assert "Recommended: baseline" in page.inner_text("#recommendation")
    assert "measurement noise" in page.inner_text("#recommendation")
    # the folded evidence opens, and its charts take the width they are given
    page.click("#details-power summary")
    page.wait_for_function("() => document.querySelector('#chart-power .main-svg').getBoundingClientRect().width > 300")
    page.screenshot(path=str(SCREENSHOTS / "report-with-accuracy.png"), full_page=True)
    page.locator("#kpis").screenshot(path=str(SCREENSHOTS / "report-with-accuracy-summary.png"))
    page.locator("#variant-table").screenshot(path=str(SCREENSHOTS / "report-with-accuracy-variants.png"))
    page.locator(".charts").first.screenshot(path=str(SCREENSHOTS / "report-with-accuracy-charts.png"))
    assert page.console_errors == []


def _in_first_screen(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    viewport = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"]


def test_the_report_answers_on_its_first_screen(browser_page, live_server, member, team, transactional_db):
    """Without scrolling: the verdict with its paired ratio, the quality grade, the budgets and
    the warnings (drift included) of a real schema-2 engine result."""
    from ..reports.test_report_v2 import real_doc, store, with_paired

    page = browser_page
    login(page, live_server, member)
    graded_d = store(team, real_doc("engine_result_digits_v2.json"), model_version=make_version(team, name="first-d"))
    recommended = store(team, with_paired(real_doc("engine_result_digits_v2.json"), "prune-unstructured:0.5",
                                          ratio=0.64, ci=(0.61, 0.68), verdict="lower"),
                        model_version=make_version(team, name="first-b"))
    # graded D, yet not vetoed by the grade: its interval straddles the saving threshold
    for audit, headline in ((graded_d, "Inconclusive. prune-unstructured:0.5 x1.10 [0.87, 1.40]"),
                            (recommended, "Recommended: prune-unstructured:0.5 — energy ×0.64 [0.61, 0.68]")):
        page.goto(f"{live_server.url}/audits/{audit.pk}/")
        page.wait_for_selector("#chart-tradeoff .main-svg", state="attached", timeout=15_000)
        assert headline in page.inner_text("#recommendation")
        for selector in ("#recommendation", "#quality-grade", "#budget-summary"):
            assert _in_first_screen(page, selector), selector
        page.screenshot(path=str(SCREENSHOTS / f"report-first-screen-{audit.quality_grade}.png"))
    # the D audit's drift warning is on the first screen too
    page.goto(f"{live_server.url}/audits/{graded_d.pk}/")
    assert "moved by" in page.inner_text("#report-warnings") and _in_first_screen(page, "#report-warnings")
    page.click("#quality-grade summary")
    assert "D:" in page.inner_text("#quality-grade")
    # Printed: no navigation or controls, the folded evidence open (by the print stylesheet alone:
    # emulating print media fires no beforeprint), a PDF out.
    assert not page.locator("#report-table").is_visible()
    page.emulate_media(media="print")
    assert not page.locator("header.top").is_visible() and not page.locator("#savings-form button").is_visible()
    assert page.locator("#report-table").is_visible() and page.locator("#estimate-assumptions").is_visible()
    pdf = page.pdf(path=str(SCREENSHOTS / "report-graded-d.pdf"), format="A4")
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 2
    page.emulate_media(media="screen")
    assert page.console_errors == []


def test_compare_with_two_chosen_figures(browser_page, live_server, member, team, transactional_db):
    from ..reports.test_report_v2 import real_doc, store

    page = browser_page
    a = stored_audit(team, [variant_doc("baseline", energy=0.004, accuracy=0.95),
                            variant_doc("fp16", energy=0.002, accuracy=0.948)],
                     model_version=make_version(team, name="pick-mlp", label="v1"))
    b = store(team, real_doc("engine_result_gpt2_generation_v2.json"), model_version=make_version(team, name="pick-gpt2"))
    login(page, live_server, member)
    page.goto(f"{live_server.url}/compare/?a={a.pk}&a={b.pk}")
    assert_charts_drawn(page, ["chart-compare-xy"])
    assert "different" in page.inner_text("#compare-differences")  # generation vs forward, hardware
    page.select_option("#pick-x", "flops")
    page.wait_for_url("**x=flops**")
    page.select_option("#pick-y", "fidelity")
    page.wait_for_url("**y=fidelity**")
    assert_charts_drawn(page, ["chart-compare-xy"])
    assert page.locator("#chart-compare-xy text.xtitle").text_content() == "FLOPs per sample (FLOPs)"
    assert page.locator("#chart-compare-xy text.ytitle").text_content() == "Fidelity to the baseline"
    # every variant of both audits is a row of the table
    assert page.locator("#compare-variants tbody tr").count() == 2 + 3
    page.screenshot(path=str(SCREENSHOTS / "compare-two-figures.png"), full_page=True)
    # the generation audit's own report draws its token charts
    page.goto(f"{live_server.url}/audits/{b.pk}/")
    assert_charts_drawn(page, ["chart-tradeoff", "chart-tokens", "chart-ttft", "chart-tpot", "chart-share"])
    assert page.locator("#chart-tokens text.ytitle").text_content() == "Energy per output token (J, est.)"
    page.locator(".charts").first.screenshot(path=str(SCREENSHOTS / "report-generation-charts.png"))
    assert page.console_errors == []


def test_progress_counts_up_and_names_variant_batch_phase_and_hardware(browser_page, live_server, member, team,
                                                                      transactional_db):
    from django.utils import timezone

    from audit.models import WorkerNode
    from audit.services import audits as services
    from workers.runner import stage_text

    from ..factories import make_audit

    page = browser_page
    WorkerNode.objects.create(hostname="w-h200", queue="cpu", fingerprint={"gpu": {"name": "NVIDIA H200"}},
                              started_at=timezone.now(), last_seen=timezone.now())
    audit = make_audit(team)
    login(page, live_server, member)
    page.goto(f"{live_server.url}/audits/{audit.pk}/")
    assert "waiting for a worker" in page.inner_text("#audit-progress")
    claim = services.audit_claim(audit_id=audit.pk, hostname="w-h200")
    seen = []
    steps = [("idle-baseline", None, None, None, 12.0),
             ("measuring", 0, 1, "prefill", 30.0), ("measuring", 2, 1, "decode", 45.0), ("measuring", 1, 8, "decode", 70.0)]
    for stage, variant, batch, phase, percent in steps:
        event = {"stage": stage, "variant": variant or 0, "n_variants": 3 if variant is not None else None,
                 "batch_size": batch, "phase": phase, "round": None, "n_rounds": None}
        services.audit_progress(audit_id=audit.pk, attempt=claim.attempt, stage=stage_text(event), percent=percent)
        page.wait_for_function("() => document.querySelector('#progress-percent') && "
                               f"document.querySelector('#progress-percent').textContent.trim() === '{percent:.0f}%'",
                               timeout=10_000)
        seen.append((page.inner_text("#progress-percent"), page.inner_text("#audit-progress")))
    percents = [int(p.rstrip("%")) for p, _ in seen]
    assert percents == sorted(percents)
    assert "variant 1 of 3 · batch size 1 · prefill" in seen[1][1]
    assert "variant 3 of 3 · batch size 1 · decode" in seen[2][1]
    assert "variant 2 of 3 · batch size 8 · decode" in seen[3][1]
    assert "NVIDIA H200" in page.inner_text("#progress-hardware")
    page.screenshot(path=str(SCREENSHOTS / "progress.png"), full_page=True)
    assert page.console_errors == []
